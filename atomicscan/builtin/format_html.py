"""The ``html`` output format: one self-contained page per run, for people to read.

The page needs no network: CSS, the SVG charts and the filter script are inline, and a
Content-Security-Policy allows exactly those two inline texts (by their SHA-256) and nothing
else. Every value from the report goes through Jinja2's autoescaping, because titles,
descriptions and paths come from scanners and images and are hostile until shown otherwise.

The same report always gives the same bytes: no clock, no random nonce (hence hashes).

Links to the reports a scanner left (``ScanResult.files``, e.g. OpenSCAP's ``report.html``)
are absolute ``file://`` URLs, so the page works wherever it is written, on the host that
ran the scan, for as long as the results directory is kept.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from atomicscan import __version__
from atomicscan.formats import FormatError
from atomicscan.results import Finding, Package, Report, ScanResult, common_severity

TEMPLATE = "report.html.j2"
SEVERITIES = ("critical", "high", "medium", "low", "unknown")

#: Long texts are cut so that 10,000 findings stay a page a browser opens.
MAX_DESCRIPTION = 4000
MAX_DETAIL = 400

# C0/C1 controls (but tab, newline, carriage return) are not allowed in HTML text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Lone surrogates that surrogateescape did not make from an undecodable file name byte.
_NO_BYTES = re.compile("[\ud800-\udc7f\udd00-\udfff]")

_CHART_WIDTH, _CHART_ROW, _BAR_X, _BAR_W = 260, 18, 70, 150


@dataclass(frozen=True)
class Bar:
    severity: str
    count: int
    width: int
    y: int


@dataclass(frozen=True)
class Chart:
    label: str
    bars: tuple[Bar, ...]
    width: int = _CHART_WIDTH
    height: int = _CHART_ROW * len(SEVERITIES)
    bar_x: int = _BAR_X
    bar_w: int = _BAR_W
    count_x: int = _BAR_X + _BAR_W + 8


@dataclass(frozen=True)
class FileLink:
    label: str
    path: str
    href: str
    is_html: bool


@dataclass(frozen=True)
class TargetView:
    target: str
    target_id: str
    target_type: str
    runtime: str | None
    scanner: str
    scan_type: str
    successful: bool
    cached: bool
    error: str | None
    os: str | None
    packages: tuple[Package, ...] | None
    findings: int
    suppressed: int
    counts: tuple[tuple[str, int], ...]
    files: tuple[FileLink, ...]
    notes: tuple[str, ...]
    remediated_image: str | None
    chart: Chart


@dataclass(frozen=True)
class FindingView:
    severity: str
    id: str
    title: str
    description: str
    details: tuple[tuple[str, str], ...]
    where: str
    target: str
    scanner: str
    suppressed: str | None


@dataclass(frozen=True)
class RunView:
    run_id: str
    scanner: str
    scan_type: str
    started_at: str
    finished_at: str
    results_dir: str | None
    targets: int
    failed: int
    findings: int
    suppressed: int
    by_severity: Mapping[str, int]
    chart: Chart


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def _by_severity(findings: Iterable[Finding]) -> dict[str, int]:
    counted = Counter(common_severity(finding.severity) for finding in findings)
    return {severity: counted[severity] for severity in SEVERITIES}


def _chart(label: str, counts: Mapping[str, int]) -> Chart:
    top = max(counts.values(), default=0)
    bars = tuple(
        Bar(severity=severity, count=counts[severity],
            width=round(_BAR_W * counts[severity] / top) if top else 0, y=index * _CHART_ROW)
        for index, severity in enumerate(SEVERITIES))
    return Chart(label=label, bars=bars)


def _os_name(os_release: Mapping[str, Any] | None) -> str | None:
    if not isinstance(os_release, Mapping):
        return None
    for key in ("pretty_name", "name", "id"):
        value = os_release.get(key)
        if isinstance(value, str) and value.strip():
            version = os_release.get("version_id") if key != "pretty_name" else None
            return f"{value} {version}" if isinstance(version, str) and version else value
    return "unknown"


def _file_link(name: str, path: str) -> FileLink:
    # Absolute file:// URL: the page may be written anywhere, the reports stay put.
    # as_uri() percent-encodes the path, so a hostile name can't become another scheme.
    # A lone surrogate (from "\ud800" in JSON) has no bytes: shown as U+FFFD, never raised.
    absolute = Path(_NO_BYTES.sub("\ufffd", path)).absolute()
    return FileLink(label=name, path=str(absolute), href=absolute.as_uri(),
                    is_html=absolute.suffix.lower() in {".html", ".htm"})


def _detail_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _finding_view(finding: Finding, result: ScanResult) -> FindingView:
    details = tuple(
        (str(key), _cut(_detail_text(value), MAX_DETAIL))
        for key, value in sorted(finding.details.items(), key=lambda item: str(item[0]))
        if value not in (None, "", [], {}))
    return FindingView(
        severity=common_severity(finding.severity), id=finding.id, title=finding.title,
        description=_cut(finding.description, MAX_DESCRIPTION), details=details,
        where=finding.where, target=result.target, scanner=result.scanner,
        suppressed=finding.suppressed)


def _target_view(result: ScanResult) -> TargetView:
    counts = _by_severity(result.findings)
    packages = (None if result.packages is None else
                tuple(sorted(result.packages, key=lambda p: (p.name, p.version, p.architecture,
                                                             p.type, p.purl))))
    return TargetView(
        target=result.target, target_id=result.target_id, target_type=result.target_type,
        runtime=result.runtime, scanner=result.scanner, scan_type=result.scan_type,
        successful=result.successful, cached=result.cached,
        error=None if result.successful else (result.error or "scan failed"),
        os=_os_name(result.os), packages=packages, findings=len(result.findings),
        suppressed=sum(f.suppressed is not None for f in result.findings),
        counts=tuple(sorted((str(k), v) for k, v in (result.counts or {}).items()
                            if isinstance(v, int))),
        files=tuple(_file_link(str(name), str(path))
                    for name, path in sorted(result.files.items())),
        notes=tuple(result.notes), remediated_image=result.remediated_image,
        chart=_chart(f"findings of {result.target} by severity", counts))


def _finding_order(view: FindingView) -> tuple[int, str, str, str, str, str]:
    return (SEVERITIES.index(view.severity), view.target, view.scanner, view.id, view.where,
            view.title)


def _context(report: Report) -> dict[str, Any]:
    all_findings = [f for result in report.results for f in result.findings]
    by_severity = _by_severity(all_findings)
    run = RunView(
        run_id=report.run_id, scanner=report.scanner, scan_type=report.scan_type,
        started_at=report.started_at, finished_at=report.finished_at,
        results_dir=str(report.results_dir) if report.results_dir else None,
        targets=len(report.results), failed=report.failed, findings=len(all_findings),
        suppressed=sum(f.suppressed is not None for f in all_findings),
        by_severity=by_severity, chart=_chart("all findings by severity", by_severity))
    findings = sorted((_finding_view(f, result) for result in report.results
                       for f in result.findings), key=_finding_order)
    return {
        "version": __version__,
        "run": run,
        "severities": SEVERITIES,
        "scanners": sorted({result.scanner for result in report.results}),
        "targets": [_target_view(result) for result in report.results],
        "findings": findings,
    }


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(str(text).encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def _finalize(value: Any) -> Any:
    """Every ``{{ value }}`` passes here before escaping: drop characters HTML forbids."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return _CONTROL.sub("\ufffd", value)


@functools.cache
def html_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("atomicscan", "data"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
        keep_trailing_newline=True,
    )
    environment.filters["csp_hash"] = _csp_hash
    return environment


def render_html(report: Report) -> str:
    """The page for ``report``: one HTML document, the same text for the same report."""
    try:
        template = html_environment().get_template(TEMPLATE)
        return template.render(_context(report))
    except (jinja2.TemplateError, OSError) as exc:  # OSError: the template or cwd is gone
        raise FormatError(f"html: the page could not be written: {exc}") from exc


def write_html(report: Report) -> bytes:
    # A lone surrogate (from "\ud800" in a scanner's JSON) can't be UTF-8: shown as "?".
    return render_html(report).encode("utf-8", errors="replace")


