"""Scanners declared by definition files: the built-in ones and the host's config directory."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

from atomicscan.errors import AtomicscanError
from atomicscan.hookspecs import hookimpl
from atomicscan.safetext import printable
from atomicscan.scanners import (
    Scanner,
    ScannerRegistry,
    definition_files,
    load_definition,
)

log = logging.getLogger(__name__)

DEFAULT_CONFIG_DIR = Path("/etc/atomicscan.d")


def builtin_scanners_dir() -> Path:
    """The checkout's ``scanners/`` folder: one folder per built-in scanner."""
    override = os.environ.get("ATOMICSCAN_BUILTIN_SCANNERS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "scanners"


def config_dir() -> Path:
    return Path(os.environ.get("ATOMICSCAN_CONFIG_DIR", str(DEFAULT_CONFIG_DIR)))


def _load_each(files: list[Path]) -> list[Scanner]:
    loaded: list[Scanner] = []
    for path in files:
        try:
            loaded.append(load_definition(path))
        except AtomicscanError as exc:
            # One bad file must not hide every other scanner; the message names the file.
            log.warning("skipping scanner definition: %s", exc)
        except Exception as exc:  # noqa: BLE001 - a parser's surprise is this file's alone
            log.warning("skipping scanner definition: %s: cannot be read as a definition "
                        "(%s: %s)", printable(str(path)), type(exc).__name__, printable(exc))
    return loaded


def _add_from(registry: ScannerRegistry, files: list[Path], *, unique: bool) -> None:
    """Add the scanners of ``files``. With ``unique``, a name two files claim is refused in
    both: otherwise whichever sorts first would win, and --trust-scanner NAME could end up
    trusting a file dropped in to squat the name."""
    scanners = _load_each(files)
    claims = Counter(scanner.name for scanner in scanners)
    for scanner in scanners:
        if unique and claims[scanner.name] > 1:
            log.warning("skipping scanner definition: %s: scanner %r is also defined by "
                        "another file; rename one", printable(scanner.origin), scanner.name)
            continue
        try:
            registry.add(scanner)
        except AtomicscanError as exc:
            log.warning("skipping scanner definition: %s", exc)


@hookimpl
def atomicscan_add_scanners(registry: ScannerRegistry) -> None:
    builtin = builtin_scanners_dir()
    if builtin.is_dir():
        _add_from(registry, sorted(builtin.glob("*/scanner.toml")), unique=False)
    host = config_dir()
    if host.is_dir():
        _add_from(registry, list(definition_files(host)), unique=True)
