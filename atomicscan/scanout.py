"""Reading what a scanner left in /scanout, which is untrusted: no symlinks, bounded sizes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The per-target JSON document a scanner writes, as in atomic scan.
RESULT_FILE = "json"


@dataclass(frozen=True)
class OutputLimits:
    json_bytes: int = 32 * 1024 * 1024
    """Largest ``/scanout/<key>/json`` accepted."""
    total_bytes: int = 256 * 1024 * 1024
    """Most bytes copied from one target's output directory into the results directory."""
    max_files: int = 10_000
    max_depth: int = 8


@dataclass
class TargetOutput:
    """A target's checked scanner document, or why it was refused."""

    document: dict[str, Any] | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


class _Refused(Exception):
    pass


def _read_regular(path: Path, limit: int) -> bytes:
    """Read a regular file without following a symlink at its last component."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symlink
            raise _Refused(f"{path.name} is a symlink") from None
        if exc.errno == errno.ENOENT:
            raise _Refused(f"{path.name} is missing") from None
        raise _Refused(f"cannot open {path.name}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _Refused(f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise _Refused(f"{path.name} is {info.st_size} bytes, over the {limit}-byte limit")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise _Refused(f"{path.name} is over the {limit}-byte limit")
    return data


def read_target_output(out_root: Path, key: str, dest: Path | None,
                       limits: OutputLimits | None = None) -> TargetOutput:
    """Check ``out_root/key/json`` and copy the target's other plain files into ``dest``."""
    limits = limits or OutputLimits()
    output = TargetOutput()
    target_dir = out_root / key
    try:
        info = target_dir.lstat()
    except FileNotFoundError:
        output.error = f"the scanner wrote no output for this target (/scanout/{key}/json)"
        return output
    if not stat.S_ISDIR(info.st_mode):
        output.error = f"/scanout/{key} is not a directory (symlinks are refused)"
        return output
    try:
        raw = _read_regular(target_dir / RESULT_FILE, limits.json_bytes)
    except _Refused as exc:
        output.error = f"scanner output /scanout/{key}/json refused: {exc}"
        raw = b""
    if dest is not None:
        # A refused document is not kept: it may be a flood or point at host files.
        skip = {RESULT_FILE} if output.error else set()
        _copy_tree(target_dir, dest, limits, output.notes, skip)
    if output.error:
        return output
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        output.error = f"scanner output /scanout/{key}/json is not valid JSON: {exc}"
        return output
    if not isinstance(document, dict):
        output.error = f"scanner output /scanout/{key}/json is not a JSON object"
        return output
    output.document = document
    return output


def _copy_tree(source: Path, dest: Path, limits: OutputLimits, notes: list[str],
               skip_top: set[str]) -> None:
    """Copy regular files and directories only; everything else is skipped with a note."""
    budget = {"bytes": limits.total_bytes, "files": limits.max_files}

    def walk(directory: Path, target: Path, depth: int) -> None:
        if depth > limits.max_depth:
            notes.append(f"skipped {directory.name}/: deeper than {limits.max_depth} levels")
            return
        target.mkdir(parents=True, exist_ok=True, mode=0o755)
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                relative = Path(entry.path).relative_to(source)
                if depth == 0 and entry.name in skip_top:
                    continue
                if entry.is_symlink():
                    notes.append(f"skipped symlink {relative} in scanner output")
                elif entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), target / entry.name, depth + 1)
                elif entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    if budget["files"] <= 0 or size > budget["bytes"]:
                        notes.append(f"skipped {relative}: output size limit reached")
                        continue
                    try:
                        data = _read_regular(Path(entry.path), budget["bytes"])
                    except _Refused as exc:
                        notes.append(f"skipped {relative}: {exc}")
                        continue
                    budget["bytes"] -= len(data)
                    budget["files"] -= 1
                    out = target / entry.name
                    with contextlib.suppress(FileNotFoundError):
                        out.unlink()
                    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(data)
                else:
                    notes.append(f"skipped {relative}: not a regular file")

    walk(source, dest, 0)
