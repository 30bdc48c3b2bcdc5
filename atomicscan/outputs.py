"""``-o FORMAT[=PATH]``: which documents a run writes, and where.

``json`` (the report as ``--json`` prints it) and ``table`` (the human summary and findings)
are the core's own; every other format is a plugin's (:mod:`atomicscan.formats`). A format
given without a path goes to stdout, and only one may. A per-target format (an SBOM) with
several targets writes one file per target: into ``PATH/`` when a path is given, else under
each target's folder in the run's results directory.

Files are written next to their destination and renamed over it, so a symlink planted at
the path is replaced, never followed, and a reader never sees half a document. Nothing
here prints: the caller gets the documents meant for stdout back.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atomicscan.errors import AtomicscanError, UsageError
from atomicscan.formats import FormatError, FormatRegistry, OutputFormat
from atomicscan.results import Report, ScanResult
from atomicscan.safetext import printable

#: The core's own formats, which need no plugin.
CORE_FORMATS = {
    "json": "the report as --json prints it (atomicscan's own JSON)",
    "table": "each target's summary and its findings, as printed on a terminal",
}

_FD_PATH = re.compile(r"/(?:proc/(?P<pid>self|thread-self|\d+)|dev)/fd/(?P<fd>\d{1,9})")
_MAX_HOPS = 40
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class OutputError(AtomicscanError):
    """A document could not be written where it was asked for (the report is whole)."""


@dataclass(frozen=True)
class OutputRequest:
    """One ``-o`` option: a format name and where it goes (``None``: stdout)."""

    format: str
    path: Path | None = None

    @classmethod
    def parse(cls, spec: str) -> OutputRequest:
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not name or (sep and not path):
            raise UsageError(f"-o {printable(spec)!r}: give FORMAT or FORMAT=PATH")
        return cls(name, Path(path) if sep else None)


@dataclass(frozen=True)
class Written:
    """Where one format's documents went: files, or the bytes meant for stdout."""

    format: str
    files: tuple[Path, ...] = ()
    stdout: bytes | Iterable[bytes] | None = None
    """The document, or its parts in order (a big JSON report is not built in one piece)."""
    errors: tuple[str, ...] = ()


def format_names(registry: FormatRegistry) -> list[str]:
    return sorted({*CORE_FORMATS, *registry.names()})


def check_requests(requests: Sequence[OutputRequest], registry: FormatRegistry) -> None:
    """Refuse unknown formats and two documents on stdout before the scan starts."""
    known = format_names(registry)
    for request in requests:
        if request.format not in known:
            raise UsageError(f"-o {printable(request.format)}: unknown format; known: "
                             f"{', '.join(known)}")
    seen: dict[str, str] = {}
    for request in requests:
        if request.path is None:
            continue
        # Compared after resolving: "out.sarif", "./out.sarif" and a link to it are one file.
        resolved = os.path.realpath(request.path)
        if resolved in seen and not _is_stream(resolved):
            raise UsageError(f"-o {seen[resolved]} and -o {request.format} both write "
                             f"{printable(request.path)}")
        seen[resolved] = request.format
    to_stdout = [r.format for r in requests if r.path is None]
    if len(to_stdout) > 1:
        raise UsageError(f"-o {' and -o '.join(to_stdout)} would both print on stdout; give "
                         "all but one a path (-o FORMAT=PATH)")


def _is_stream(path: str) -> bool:
    """A character device (``/dev/null``): several documents may go there."""
    try:
        return stat.S_ISCHR(Path(path).stat().st_mode)
    except OSError:
        return False


def safe_file_name(result: ScanResult) -> str:
    """A file name for a target's document that no target name can turn into a path."""
    name = result.target.rsplit("/", 1)[-1].replace(":", "_").replace("@", "_")
    ident = result.target_id.removeprefix("sha256:")[:12]
    if not _SAFE_NAME.fullmatch(name) or name in {".", ".."}:
        name = hashlib.sha256(result.target.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{name}-{ident}" if _SAFE_NAME.fullmatch(ident) else name


def write_file(path: Path, data: bytes) -> None:
    """``data`` into ``path``: through a new file in the same folder renamed over it, or, when
    ``path`` is (a link to) a character device or FIFO (``/dev/stdout``, ``/dev/null``, a
    named pipe with a reader), written into it. Nothing else is ever replaced: a rename
    over ``/dev/null`` as root would leave a regular file there for every process."""
    _check_folders(path)
    own = _own_fd(path)
    if own is not None:
        _write_fd(path, own, data)
        return
    try:
        info = path.lstat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    if info is not None and stat.S_ISLNK(info.st_mode):
        _check_link(path, info)
        try:
            info = path.stat()
        except FileNotFoundError:
            info = None  # a dangling link of the user's own: replaced, as a missing file
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    if info is None or stat.S_ISREG(info.st_mode):
        _replace(path, data, None if info is None else stat.S_IMODE(info.st_mode))
    elif stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
        _stream(path, data)
    elif stat.S_ISDIR(info.st_mode):
        raise OutputError(f"cannot write {path}: it is a directory")
    else:
        raise OutputError(f"cannot write {path}: not a regular file, character device or FIFO")


def _replace(path: Path, data: bytes, mode: int | None) -> None:
    folder = path.parent if str(path.parent) else Path()
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name[:50]}.", suffix=".tmp",
                                         dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            # A file that was there keeps its permissions (a 0600 report stays private).
            os.fchmod(out.fileno(), 0o666 & ~_umask() if mode is None else mode)
            out.write(data)
        Path(temporary).replace(path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def is_stdout(path: Path) -> bool:
    """Whether ``path`` names this process's stdout (``/dev/stdout``, ``/proc/self/fd/1``)."""
    return _own_fd(path) == 1


def _own_fd(path: Path) -> int | None:
    """The descriptor ``path`` names when it leads to this process's own (``/dev/stdout``,
    ``/dev/fd/3``, ``/proc/self/fd/1``): written as the shell opened it, never reopened or
    replaced (a rename over /dev/stdout would leave a file there for every process)."""
    try:
        current = posixpath.normpath(path.absolute())
    except OSError:  # the working directory is gone: not a descriptor's name either
        return None
    for _ in range(_MAX_HOPS):
        found = _FD_PATH.fullmatch(current)
        if found is not None and found.group("pid") in ("self", "thread-self", str(os.getpid()),
                                                         None):
            return int(found.group("fd"))
        try:
            link = Path(current).readlink()
        except OSError:
            return None
        current = posixpath.normpath(posixpath.join(posixpath.dirname(current), link))
    return None


def _write_fd(path: Path, fd: int, data: bytes) -> None:
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            out.write(data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _stream(path: Path, data: bytes) -> None:
    """Write into a device or FIFO: never created, never truncated, and a FIFO nobody reads
    fails at once (O_NONBLOCK makes open() say ENXIO) instead of hanging the run."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        why = "no process reads that FIFO" if exc.errno == errno.ENXIO else exc.strerror
        raise OutputError(f"cannot write {path}: {why or exc}") from None
    try:
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _check_link(link: Path, info: os.stat_result) -> None:
    """Refuse what fs.protected_symlinks refuses, whether or not the host turned it on: a
    link in a sticky world-writable folder (/tmp) owned by neither us nor that folder's
    owner was planted by someone else to steer root's write."""
    try:
        folder = (link.parent if str(link.parent) else Path()).stat()
    except OSError as exc:
        raise OutputError(f"cannot write {link}: {exc.strerror or exc}") from None
    shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
    if shared and info.st_uid not in (os.geteuid(), folder.st_uid):
        raise OutputError(f"cannot write {link}: a symbolic link in a world-writable folder "
                          f"owned by uid {info.st_uid}, not followed")


def _check_folders(path: Path) -> None:
    """Every symbolic link on the way to ``path``'s folder, checked as :func:`_check_link`."""
    current = Path(path.anchor) if path.is_absolute() else Path()
    for part in path.parent.parts[1 if path.is_absolute() else 0:]:
        current = current / part
        try:
            info = current.lstat()
        except OSError:
            return  # missing: mkstemp or mkdir says why, as one line
        if stat.S_ISLNK(info.st_mode):
            _check_link(current, info)


def make_folder(folder: Path, mode: int = 0o777) -> None:
    """``folder`` and its parents, as :func:`write_file` checks them; OutputError if not."""
    _check_folders(folder / "x")
    try:
        folder.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as exc:
        why = "it is not a directory" if isinstance(exc, FileExistsError) else exc.strerror
        raise OutputError(f"cannot write into {folder}: {why or exc}") from None


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


Renderer = Callable[[Report], bytes]

#: Bytes gathered before a part of a streamed JSON document is handed on.
JSON_PART_BYTES = 1 << 16


def json_parts(document: Any) -> Iterator[bytes]:
    """``document`` as indented JSON (the bytes of ``-o json``), in parts of about 64 KiB: a
    report of a thousand targets is never one string in memory."""
    pending: list[str] = []
    size = 0
    for piece in json.JSONEncoder(indent=2, allow_nan=False).iterencode(document):
        pending.append(piece)
        size += len(piece)
        if size >= JSON_PART_BYTES:
            yield "".join(pending).encode()
            pending, size = [], 0
    pending.append("\n")
    yield "".join(pending).encode()


class OutputWriter:
    """Writes a report in the requested formats; ``table`` is rendered by the caller's
    function, which knows the plugins' phrases."""

    def __init__(self, registry: FormatRegistry, render_table: Renderer) -> None:
        self.registry = registry
        self.render_table = render_table

    def write(self, report: Report, requests: Sequence[OutputRequest]) -> list[Written]:
        return [self._one(report, request) for request in requests]

    def _run_document(self, report: Report, name: str) -> bytes:
        if name == "json":
            return (json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n").encode()
        if name == "table":
            return self.render_table(report)
        found = self.registry.get(name)
        if found is None or found.write_run is None:
            raise FormatError(f"{name} is not a format of the whole run")
        return found.write_run(report)

    def _one(self, report: Report, request: OutputRequest) -> Written:
        found = self.registry.get(request.format)
        try:
            if request.format == "json" and request.path is None:
                return Written("json", stdout=json_parts(report.to_json()))
            if found is None or found.write_run is not None:
                data = self._run_document(report, request.format)
                if request.path is None:
                    return Written(request.format, stdout=data)
                write_file(request.path, data)
                return Written(request.format, files=(request.path,))
            return self._per_target(report, request, found)
        except (FormatError, OutputError) as exc:
            return Written(request.format, errors=(f"-o {request.format}: {exc}",))

    def _per_target(self, report: Report, request: OutputRequest,
                    found: OutputFormat) -> Written:
        if found.write_target is None:
            raise FormatError(f"{found.name} is not a per-target format")
        results = report.results
        if len(results) == 1 and request.path is None:
            return Written(request.format, stdout=found.write_target(results[0], report))
        files: list[Path] = []
        errors: list[str] = []
        if len(results) > 1 and request.path is None and report.results_dir is None:
            raise FormatError("no results directory to write into")
        if len(results) > 1 and request.path is not None:
            make_folder(request.path)  # once: a PATH that can't be a folder is one line
        for result in results:
            try:
                destination = self._destination(report, request, found, result)
                write_file(destination, found.write_target(result, report))
            except (FormatError, OutputError) as exc:
                errors.append(f"-o {found.name}: {printable(result.target)}: {exc}")
                continue
            files.append(destination)
        return Written(request.format, files=tuple(files), errors=tuple(errors))

    @staticmethod
    def _destination(report: Report, request: OutputRequest, found: OutputFormat,
                     result: ScanResult) -> Path:
        """Where one target's document goes: PATH itself for a single target, else a file
        per target in PATH/ or in the target's folder of the results directory."""
        if len(report.results) == 1 and request.path is not None:
            return request.path
        if request.path is not None:
            return request.path / (safe_file_name(result) + found.extension)
        if report.results_dir is None:
            raise FormatError("no results directory to write into")
        folder = report.results_dir / safe_file_name(result)
        make_folder(folder, 0o700)
        return folder / (found.name + found.extension)
