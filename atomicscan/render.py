"""Human-readable output: summaries and tables for a person at a terminal.

Everything here that came from an image, a scanner or the user is hostile text: it is
escaped with :func:`~atomicscan.safetext.printable` and never read as rich markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from atomicscan.results import Report, ScanResult
from atomicscan.safetext import printable
from atomicscan.scanners import ScannerRegistry


def scanners_table(registry: ScannerRegistry) -> Table:
    table = Table(title="Installed scanners (* = default scan type)", title_justify="left")
    table.add_column("scanner")
    table.add_column("scan type")
    table.add_column("description")
    table.add_column("image")
    table.add_column("capabilities")
    for scanner in registry:
        for index, scan_type in enumerate(scanner.scan_types.values()):
            marker = " *" if scan_type.name == scanner.default_scan else ""
            cells = (
                scanner.name if index == 0 else "",
                scan_type.name + marker,
                scan_type.description or scanner.description,
                scanner.image if index == 0 else "",
                (", ".join(scanner.capabilities) or "none") if index == 0 else "",
            )
            table.add_row(*(Text(printable(cell)) for cell in cells))
    return table


Describe = Callable[[ScanResult], Sequence[str]]


def _result_line(result: ScanResult, describe: Describe) -> Text:
    label = f"{result.target_type} {result.target}"
    if result.runtime:
        label += f" ({result.runtime}, {result.target_id[:12]})"
    if not result.successful:
        return Text.assemble(("FAILED", "red"), f" {printable(label)}: "
                             f"{printable(result.error)}")
    # What the scanner found besides findings (OS, packages, rule counts) is each plugin's
    # own phrase: the core knows no scanner's fields.
    parts = [*describe(result), f"{len(result.findings)} findings"]
    return Text.assemble(("ok", "green"), f" {printable(label)}: " + printable("; ".join(parts)))


def _line(console: Console, text: str | Text) -> None:
    shown = text if isinstance(text, Text) else Text(printable(text))
    console.print(shown, highlight=False, markup=False, emoji=False, soft_wrap=True)


def print_report(console: Console, report: Report, describe: Describe | None = None) -> None:
    """Each target's line (with the plugins' phrases from ``describe``), its files and
    notes, then the run's summary."""
    for result in report.results:
        _line(console, _result_line(result, describe or (lambda _: ())))
        for name, path in result.files.items():
            _line(console, f"    {name}: {path}")
        if result.remediated_image:
            _line(console, f"    remediated image: {result.remediated_image}")
        for note in result.notes:
            _line(console, f"    note: {note}")
    _line(console,
          f"{len(report.results)} target(s) scanned with {report.scanner} ({report.scan_type}), "
          f"{report.failed} failed. Results: {report.results_dir}")
