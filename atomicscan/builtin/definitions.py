"""Scanners declared by definition files: the built-in ones and the host's config directory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from atomicscan.errors import AtomicscanError
from atomicscan.hookspecs import hookimpl
from atomicscan.scanners import (
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


def _add_from(registry: ScannerRegistry, files: list[Path]) -> None:
    for path in files:
        try:
            registry.add(load_definition(path))
        except AtomicscanError as exc:
            # One bad file must not hide every other scanner; the message names the file.
            log.warning("skipping scanner definition: %s", exc)


@hookimpl
def atomicscan_add_scanners(registry: ScannerRegistry) -> None:
    builtin = builtin_scanners_dir()
    if builtin.is_dir():
        _add_from(registry, sorted(builtin.glob("*/scanner.toml")))
    host = config_dir()
    if host.is_dir():
        _add_from(registry, list(definition_files(host)))
