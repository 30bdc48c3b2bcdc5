"""Output formats: how a run's report is written for other tools (SARIF, SBOMs, HTML).

A format is a plugin, added in the ``atomicscan_add_formats`` hook with
``registry.add(OutputFormat(...))``. A *run* format writes one document for the whole run
(SARIF, HTML); a *target* format writes one document per target (an SBOM describes one
image). Formats never print and never exit: they return the document's bytes, and the caller
decides where they go (``-o FORMAT[=PATH]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from atomicscan.errors import AtomicscanError
from atomicscan.results import Report, ScanResult

FormatScope = Literal["run", "target"]

RunWriter = Callable[[Report], bytes]
TargetWriter = Callable[[ScanResult, Report], bytes]

_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")


class FormatError(AtomicscanError):
    """A format could not write its document (the report itself is whole)."""


class DuplicateFormatError(AtomicscanError):
    """Two plugins added a format with the same name."""


@dataclass(frozen=True)
class OutputFormat:
    """One way to write a report.

    ``write_run`` is set for a run format, ``write_target`` for a target format; exactly one
    of them. ``extension`` is the file name suffix a document gets when no path is given
    (``".sarif"``, ``".cdx.json"``).
    """

    name: str
    description: str
    extension: str
    write_run: RunWriter | None = None
    write_target: TargetWriter | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"format name {self.name!r}: lower-case letters, digits and '-'")
        if (self.write_run is None) == (self.write_target is None):
            raise ValueError(f"format {self.name}: give exactly one of write_run, write_target")

    @property
    def scope(self) -> FormatScope:
        return "run" if self.write_run is not None else "target"


class FormatRegistry:
    """Every output format the loaded plugins added, by name."""

    def __init__(self) -> None:
        self._formats: dict[str, OutputFormat] = {}

    def add(self, output_format: OutputFormat) -> None:
        if output_format.name in self._formats:
            raise DuplicateFormatError(f"output format {output_format.name} is added twice")
        self._formats[output_format.name] = output_format

    def get(self, name: str) -> OutputFormat | None:
        return self._formats.get(name)

    def names(self) -> list[str]:
        return sorted(self._formats)

    def __iter__(self) -> Iterator[OutputFormat]:
        return iter(sorted(self._formats.values(), key=lambda f: f.name))

    def __len__(self) -> int:
        return len(self._formats)
