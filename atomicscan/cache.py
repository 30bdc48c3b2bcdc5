"""Result reuse: an image already scanned by the same scanner image, type and args is skipped."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atomicscan import rootless
from atomicscan.boundedread import read_at_most
from atomicscan.results import ScanResult
from atomicscan.runtime import Target
from atomicscan.safejson import JSONRefused, loads_strict

log = logging.getLogger(__name__)

# 2: entries hold what the scanner said, before plugins shaped it.
VERSION = 2
#: A cache entry is one target's result; anything bigger was not written by us.
MAX_ENTRY_BYTES = 64 * 1024 * 1024


def cache_dir(results_root: Path) -> Path:
    """``$ATOMICSCAN_CACHE_DIR``, else ``cache`` in root's results directory, else a
    user's ``$XDG_CACHE_HOME/atomicscan``."""
    if os.environ.get("ATOMICSCAN_CACHE_DIR"):
        return Path(os.environ["ATOMICSCAN_CACHE_DIR"])
    return rootless.cache_home() if rootless.rootless() else results_root / "cache"


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


def _trusted(info: os.stat_result) -> bool:
    """Written by this user and changeable by nobody else: in a shared --output-dir another
    user could otherwise plant a "successful" result for any image."""
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read_trusted(path: Path) -> str | None:
    try:
        if not _trusted(path.parent.lstat()) or not stat.S_ISDIR(path.parent.lstat().st_mode):
            log.info("cache %s ignored: not a private directory of this user", path.parent)
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or not _trusted(info):
            log.info("cache entry %s ignored: not written by this user alone", path.name)
            return None
        return read_at_most(handle, MAX_ENTRY_BYTES).decode("utf-8", errors="replace")


def load(directory: Path, key: str, target: Target) -> ScanResult | None:
    text = _read_trusted(directory / f"{key}.json")
    if text is None or len(text) > MAX_ENTRY_BYTES:
        return None
    try:
        doc = loads_strict(text)
    except JSONRefused:
        return None
    if not isinstance(doc, dict) or doc.get("successful") is not True:
        return None
    try:
        result = ScanResult.from_json(doc)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    raw_dir = result.raw_dir if result.raw_dir and result.raw_dir.is_dir() else None
    # The content is the same; what the target is called now is today's.
    meta = {**result.target_meta, "names": list(target.names)}
    return result.replace(target=target.ref, cached=True, raw_dir=raw_dir, target_meta=meta)


def store(directory: Path, key: str, result: ScanResult) -> None:
    """Keep a successful result; written to a temp file and renamed, so readers never see half."""
    if not result.successful:
        return
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not _trusted(directory.lstat()):
        return  # someone else's directory: what we'd write there could not be trusted later
    doc: dict[str, Any] = result.to_json()
    doc.pop("cached", None)
    scratch = directory / f".{key}.{os.getpid()}.tmp"
    scratch.unlink(missing_ok=True)
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(doc))
        scratch.replace(directory / f"{key}.json")
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


def clear_stale_temp(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        for leftover in directory.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
