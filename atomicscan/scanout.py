"""Reading what a scanner left in /scanout, which is untrusted: no symlinks, bounded sizes."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomicscan.boundedread import read_at_most
from atomicscan.safejson import JSONRefused, loads_strict

#: The per-target JSON document a scanner writes, as in atomic scan.
RESULT_FILE = "json"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SHOWN_CHARS = 200


@dataclass(frozen=True)
class OutputLimits:
    json_bytes: int = 32 * 1024 * 1024
    """Largest ``/scanout/<key>/json`` accepted."""
    total_bytes: int = 256 * 1024 * 1024
    """Most bytes copied from one target's output directory into the results directory."""
    max_entries: int = 10_000
    """Most entries of every kind (files, directories, symlinks, FIFOs, ..., ``json``
    included) under ``/scanout/<key>``; more fails the target and nothing of it is kept."""
    max_depth: int = 8
    """Directories deeper than this under ``/scanout/<key>`` are skipped with a note."""
    max_notes: int = 20
    """Notes about skipped entries kept per target; the rest are counted in one last note."""


@dataclass
class TargetOutput:
    """A target's checked scanner document, or why it was refused."""

    document: dict[str, Any] | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    missing: bool = False
    """The scanner left no ``json`` for this target (as opposed to one that was refused)."""


class _Refused(Exception):
    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class _OverBudget(Exception):
    pass


class _Notes:
    """At most ``limit`` notes, then a count of the rest: a flood of odd entries stays small."""

    def __init__(self, out: list[str], limit: int) -> None:
        self.out = out
        self.limit = limit
        self.dropped = 0

    def add(self, text: str) -> None:
        if len(self.out) < self.limit:
            self.out.append(text)
        else:
            self.dropped += 1

    def close(self) -> None:
        if self.dropped:
            self.out.append(f"{self.dropped} more entries skipped in scanner output "
                            f"(at most {self.limit} are listed)")


def _shown(path: Path) -> str:
    """A scanner-chosen name as printable text: undecodable bytes and control characters
    escaped, and shortened, so a note stays one short line."""
    text = os.fsencode(path).decode("utf-8", errors="backslashreplace")
    text = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _read_regular(path: Path, limit: int) -> bytes:
    """Read a regular file without following a symlink at its last component."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symlink
            raise _Refused(f"{path.name} is a symlink") from None
        if exc.errno == errno.ENOENT:
            raise _Refused(f"{path.name} is missing", missing=True) from None
        raise _Refused(f"cannot open {path.name}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _Refused(f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise _Refused(f"{path.name} is {info.st_size} bytes, over the {limit}-byte limit")
        data = read_at_most(handle, limit)
    if len(data) > limit:
        raise _Refused(f"{path.name} is over the {limit}-byte limit")
    return data


def read_target_output(out_root: Path, key: str, dest: Path | None,
                       limits: OutputLimits | None = None) -> TargetOutput:
    """Check ``out_root/key/json`` and copy the target's other plain files into ``dest``.

    Every failure is this target's alone, as ``error`` in one line; nothing raises for what
    the scanner wrote.
    """
    limits = limits or OutputLimits()
    output = TargetOutput()
    target_dir = out_root / key
    try:
        info = target_dir.lstat()
    except FileNotFoundError:
        output.error = f"the scanner wrote no output for this target (/scanout/{key}/json)"
        output.missing = True
        return output
    if not stat.S_ISDIR(info.st_mode):
        output.error = f"/scanout/{key} is not a directory (symlinks are refused)"
        return output
    try:
        raw = _read_regular(target_dir / RESULT_FILE, limits.json_bytes)
    except _Refused as exc:
        output.error = f"scanner output /scanout/{key}/json refused: {exc}"
        output.missing = exc.missing
        raw = b""
    _copy_outputs(target_dir, dest, limits, output)
    if output.error is None:
        output.document, output.error = _parse_document(raw, key)
    return output


def _copy_outputs(target_dir: Path, dest: Path | None, limits: OutputLimits,
                  output: TargetOutput) -> None:
    """Copy (or, without ``dest``, only count) the target's entries; too many fail it."""
    created = dest is not None and not dest.exists()
    notes = _Notes(output.notes, limits.max_notes)
    try:
        # A refused document is not kept: it may be a flood or point at host files.
        _copy_tree(target_dir, dest, limits, notes, {RESULT_FILE} if output.error else set())
    except _OverBudget:
        output.notes.clear()
        output.error = (f"scanner output /scanout/{target_dir.name} refused: more than "
                        f"{limits.max_entries} entries (files, directories, links and others)")
        if dest is not None and created:
            # Whatever was copied before the count ran out goes too: the target failed.
            shutil.rmtree(dest, ignore_errors=True)
        return
    notes.close()


def _parse_document(raw: bytes, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """The scanner's document, or why it is refused, in one line."""
    try:
        document = loads_strict(raw)
    except JSONRefused as exc:
        return None, f"scanner output /scanout/{key}/json is not valid JSON: {exc}"
    if not isinstance(document, dict):
        return None, f"scanner output /scanout/{key}/json is not a JSON object"
    return document, None


def _listing(directory: Path, budget: dict[str, int]) -> Iterator[os.DirEntry[str]]:
    """The entries of ``directory``, each one counted; stops reading once the count runs out,
    so a directory of a million entries is never listed whole."""
    with os.scandir(directory) as entries:
        for entry in entries:
            budget["entries"] -= 1
            if budget["entries"] < 0:
                raise _OverBudget
            yield entry


def _copy_tree(source: Path, dest: Path | None, limits: OutputLimits, notes: _Notes,
               skip_top: set[str]) -> None:
    """Copy regular files and directories only; everything else is skipped with a note.

    Every entry counts against ``limits.max_entries`` (``_OverBudget`` when exceeded), even
    without ``dest``, where entries are only counted.
    """
    budget = {"bytes": limits.total_bytes, "entries": limits.max_entries}

    def walk(directory: Path, target: Path | None, depth: int) -> None:
        relative_dir = directory.relative_to(source)
        if depth > limits.max_depth:
            notes.add(f"skipped {_shown(relative_dir)}/: deeper than {limits.max_depth} levels")
            return
        if target is not None:
            target.mkdir(parents=True, exist_ok=True, mode=0o755)
        try:
            listed = sorted(_listing(directory, budget), key=lambda e: e.name)
        except OSError as exc:
            notes.add(f"skipped {_shown(relative_dir)}/: {exc.strerror}")
            return
        for entry in listed:
            relative = Path(entry.path).relative_to(source)
            if depth == 0 and entry.name in skip_top:
                continue
            if entry.is_symlink():
                notes.add(f"skipped symlink {_shown(relative)} in scanner output")
            elif entry.is_dir(follow_symlinks=False):
                walk(Path(entry.path), None if target is None else target / entry.name,
                     depth + 1)
            elif not entry.is_file(follow_symlinks=False):
                notes.add(f"skipped {_shown(relative)}: not a regular file")
            elif target is not None:
                copy_file(Path(entry.path), relative, target / entry.name)

    def copy_file(path: Path, relative: Path, out: Path) -> None:
        if path.lstat().st_size > budget["bytes"]:
            notes.add(f"skipped {_shown(relative)}: output size limit reached")
            return
        try:
            data = _read_regular(path, budget["bytes"])
        except _Refused as exc:
            notes.add(f"skipped {_shown(relative)}: {exc}")
            return
        budget["bytes"] -= len(data)
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    walk(source, dest, 0)
