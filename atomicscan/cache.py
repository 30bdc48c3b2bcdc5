"""Result reuse: an image already scanned by the same scanner image, type and args is skipped."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atomicscan.results import ScanResult
from atomicscan.runtime import Target

# 2: entries hold what the scanner said, before plugins shaped it.
VERSION = 2


def cache_dir(results_root: Path) -> Path:
    return Path(os.environ.get("ATOMICSCAN_CACHE_DIR", str(results_root / "cache")))


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:  # noqa: PTH123 - streamed in chunks
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return "unreadable"
    return digest.hexdigest()


def cache_key(target: Target, scanner_name: str, scanner_image_id: str, scan_type: str,
              scanner_args: Mapping[str, str], host_files: tuple[str, ...]) -> str | None:
    """The key of a result, or ``None`` when the target can't be cached.

    Only images are cached: their content is fixed by their ID. A container's filesystem can
    change at any time without its ID changing, so containers are always rescanned. Host
    files the scan reads (a feed, a datastream) enter the key by content, not by path.
    """
    if target.type != "image":
        return None
    files = {name: _file_digest(scanner_args[name]) for name in host_files
             if name in scanner_args}
    material = json.dumps([VERSION, target.runtime, target.id, scanner_name, scanner_image_id,
                           scan_type, sorted(scanner_args.items()), sorted(files.items())])
    return hashlib.sha256(material.encode()).hexdigest()


def load(directory: Path, key: str, target: Target) -> ScanResult | None:
    path = directory / f"{key}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("successful") is not True:
        return None
    result = ScanResult.from_json(doc)
    raw_dir = result.raw_dir if result.raw_dir and result.raw_dir.is_dir() else None
    return result.replace(target=target.ref, cached=True, raw_dir=raw_dir)


def store(directory: Path, key: str, result: ScanResult) -> None:
    """Keep a successful result; written to a temp file and renamed, so readers never see half."""
    if not result.successful:
        return
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc: dict[str, Any] = result.to_json()
    doc.pop("cached", None)
    scratch = directory / f".{key}.{os.getpid()}.tmp"
    scratch.write_text(json.dumps(doc), encoding="utf-8")
    scratch.replace(directory / f"{key}.json")


def clear_stale_temp(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        for leftover in directory.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
