"""Human-readable output: summaries and tables for a person at a terminal.

Everything here that came from an image, a scanner or the user is hostile text: it is
escaped with :func:`~atomicscan.safetext.printable` and never read as rich markup.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from atomicscan.results import Finding, Report, ScanResult
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


#: Severities as findings tables show them, most severe first.
SEVERITY_ORDER = ("critical", "high", "medium", "low", "unknown")
_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan",
                   "unknown": "dim"}


def _severity_key(finding: Finding) -> tuple[int, str, str]:
    rank = (SEVERITY_ORDER.index(finding.severity) if finding.severity in SEVERITY_ORDER
            else len(SEVERITY_ORDER))
    return rank, finding.id, finding.where


def severity_counts(findings: Sequence[Finding]) -> str:
    """``critical 1, high 3, ...`` over the findings not suppressed, and how many are."""
    counted = Counter(f.severity for f in findings if f.suppressed is None)
    shown = [f"{severity} {counted[severity]}" for severity in SEVERITY_ORDER
             if counted[severity]]
    suppressed = sum(f.suppressed is not None for f in findings)
    if suppressed:
        shown.append(f"suppressed {suppressed}")
    return ", ".join(shown) or "none"


def findings_table(result: ScanResult, severities: Sequence[str] | None = None) -> Table | None:
    """The target's findings like Trivy's table, most severe first (``None``: no findings
    to show). ``severities`` shortens the table; it never changes the gate."""
    shown = sorted((f for f in result.findings if severities is None
                    or f.severity in severities), key=_severity_key)
    if not shown:
        return None
    table = Table(show_lines=False)
    for column in ("severity", "id", "title", "where"):
        table.add_column(column, overflow="fold")
    for finding in shown:
        word = printable(finding.severity)  # a plugin's severity is not mapped onto the scale
        severity = Text(word, style=_SEVERITY_STYLE.get(finding.severity, ""))
        if finding.suppressed is not None:
            severity = Text(f"{word} (suppressed: {printable(finding.suppressed)})",
                            style="dim")
        table.add_row(severity, Text(printable(finding.id)), Text(printable(finding.title)),
                      Text(printable(finding.where)))
    return table


def print_report(console: Console, report: Report, describe: Describe | None = None, *,
                 severities: Sequence[str] | None = None, findings: bool = True) -> None:
    """Each target's line (with the plugins' phrases from ``describe``), its findings as a
    table, its files and notes, then the run's summary."""
    for result in report.results:
        _line(console, _result_line(result, describe or (lambda _: ())))
        table = findings_table(result, severities) if findings else None
        if table is not None:
            _line(console, f"    findings: {severity_counts(result.findings)}")
            console.print(table, soft_wrap=False)
        for name, path in result.files.items():
            _line(console, f"    {name}: {path}")
        if result.remediated_image:
            _line(console, f"    remediated image: {result.remediated_image}")
        for note in result.notes:
            _line(console, f"    note: {note}")
    _line(console,
          f"{len(report.results)} target(s) scanned with {report.scanner} ({report.scan_type}), "
          f"{report.failed} failed. Results: {report.results_dir}")
