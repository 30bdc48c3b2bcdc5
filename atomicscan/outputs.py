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

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from atomicscan.errors import AtomicscanError, UsageError
from atomicscan.formats import FormatError, FormatRegistry, OutputFormat
from atomicscan.results import Report, ScanResult
from atomicscan.safetext import printable

#: The core's own formats, which need no plugin.
CORE_FORMATS = {
    "json": "the report as --json prints it (atomicscan's own JSON)",
    "table": "each target's summary and its findings, as printed on a terminal",
}

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
    stdout: bytes | None = None
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
    to_stdout = [r.format for r in requests if r.path is None]
    if len(to_stdout) > 1:
        raise UsageError(f"-o {' and -o '.join(to_stdout)} would both print on stdout; give "
                         "all but one a path (-o FORMAT=PATH)")


def safe_file_name(result: ScanResult) -> str:
    """A file name for a target's document that no target name can turn into a path."""
    name = result.target.rsplit("/", 1)[-1].replace(":", "_").replace("@", "_")
    ident = result.target_id.removeprefix("sha256:")[:12]
    if not _SAFE_NAME.fullmatch(name) or name in {".", ".."}:
        name = hashlib.sha256(result.target.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{name}-{ident}" if _SAFE_NAME.fullmatch(ident) else name


def write_file(path: Path, data: bytes) -> None:
    """``data`` into ``path``, through a new file in the same folder renamed over it."""
    folder = path.parent if str(path.parent) else Path()
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name[:50]}.", suffix=".tmp",
                                         dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o666 & ~_umask())
            out.write(data)
        Path(temporary).replace(path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


Renderer = Callable[[Report], bytes]


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
        for result in results:
            if len(results) == 1 and request.path is not None:
                destination = request.path
            elif request.path is not None:
                request.path.mkdir(parents=True, exist_ok=True)
                destination = request.path / (safe_file_name(result) + found.extension)
            elif report.results_dir is not None:
                folder = report.results_dir / safe_file_name(result)
                folder.mkdir(mode=0o700, exist_ok=True)
                destination = folder / (found.name + found.extension)
            else:
                errors.append(f"-o {found.name}: no results directory to write into")
                break
            try:
                write_file(destination, found.write_target(result, report))
            except (FormatError, OutputError) as exc:
                errors.append(f"-o {found.name}: {printable(result.target)}: {exc}")
                continue
            files.append(destination)
        return Written(request.format, files=tuple(files), errors=tuple(errors))
