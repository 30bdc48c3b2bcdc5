"""The history's trend page: findings by severity and package counts over time, per target.

One self-contained HTML page like the run report (``builtin/format_html.py``, whose Jinja2
environment it uses): inline CSS and SVG, no script, no network, a Content-Security-Policy
that allows only the page's own style by its hash, and every value from the database
autoescaped (names, tags and titles came from images and scanners). The same history gives
the same bytes: no clock in the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from atomicscan import __version__
from atomicscan.builtin.format_html import html_environment
from atomicscan.errors import AtomicscanError
from atomicscan.history.queries import SEVERITIES, TargetRef, TrendPoint, TrendSeries, utc

TEMPLATE = "trend.html.j2"

_WIDTH, _HEIGHT = 640, 190
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 16, 12, 30


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    value: int
    when: str


@dataclass(frozen=True)
class Line:
    name: str
    """A severity, or ``packages``."""
    points: str
    """The polyline's ``points`` attribute."""
    dots: tuple[Dot, ...]


@dataclass(frozen=True)
class LineChart:
    label: str
    kind: str
    """``findings`` or ``packages``."""
    lines: tuple[Line, ...]
    y_ticks: tuple[tuple[int, float], ...]
    """(value, y) for the labels on the left."""
    first: str
    last: str
    width: int = _WIDTH
    height: int = _HEIGHT
    left: int = _LEFT
    right: int = _WIDTH - _RIGHT
    top: int = _TOP
    bottom: int = _HEIGHT - _BOTTOM


@dataclass(frozen=True)
class SeriesView:
    scanner: str
    scans: int
    failed: int
    first: str
    last: str
    latest_findings: tuple[tuple[str, int], ...]
    latest_packages: int | None
    findings_chart: LineChart | None
    packages_chart: LineChart | None


@dataclass(frozen=True)
class TargetView:
    target: str
    target_type: str
    target_id: str
    runtime: str | None
    host: str
    names: tuple[str, ...]
    series: tuple[SeriesView, ...]


def _stamp(when: datetime) -> str:
    return utc(when).strftime("%Y-%m-%d %H:%M")


def _xs(points: Sequence[TrendPoint]) -> list[float]:
    left, right = _LEFT, _WIDTH - _RIGHT
    first = utc(points[0].scanned_at).timestamp()
    span = utc(points[-1].scanned_at).timestamp() - first
    if span <= 0:
        return [(left + right) / 2 if len(points) == 1 else
                left + (right - left) * index / (len(points) - 1)
                for index in range(len(points))]
    return [round(left + (right - left) * (utc(p.scanned_at).timestamp() - first) / span, 1)
            for p in points]


def _chart(label: str, kind: str, points: Sequence[TrendPoint],
           values: dict[str, list[int]]) -> LineChart:
    xs = _xs(points)
    top_value = max((v for series in values.values() for v in series), default=0)
    ceiling = max(top_value, 1)
    top, bottom = _TOP, _HEIGHT - _BOTTOM

    def y(value: int) -> float:
        return round(bottom - (bottom - top) * value / ceiling, 1)

    lines = []
    for name, series in values.items():
        dots = tuple(Dot(x=x, y=y(v), value=v, when=_stamp(p.scanned_at))
                     for x, v, p in zip(xs, series, points, strict=True))
        lines.append(Line(name=name, points=" ".join(f"{d.x},{d.y}" for d in dots),
                          dots=dots))
    ticks = sorted({0, ceiling, ceiling // 2} if ceiling >= 2 else {0, ceiling})
    return LineChart(label=label, kind=kind, lines=tuple(lines),
                     y_ticks=tuple((tick, y(tick)) for tick in ticks),
                     first=_stamp(points[0].scanned_at), last=_stamp(points[-1].scanned_at))


def _series_view(target: TargetRef, series: TrendSeries) -> SeriesView:
    # A failed scan found nothing and listed nothing: it is counted, not plotted as zeros.
    points = series.points
    scanned = [p for p in points if p.successful]
    inventoried = [p for p in scanned if p.package_count is not None]
    has_findings = any(sum(p.by_severity.values()) or p.suppressed for p in scanned)
    findings_chart = None
    if scanned and (has_findings or not inventoried):
        findings_chart = _chart(
            f"{series.scanner} findings of {target.target} by severity over time", "findings",
            scanned, {s: [p.by_severity.get(s, 0) for p in scanned] for s in SEVERITIES})
    packages_chart = None
    if inventoried:
        packages_chart = _chart(
            f"package count of {target.target} over time", "packages", inventoried,
            {"packages": [p.package_count or 0 for p in inventoried]})
    latest = scanned[-1] if scanned else None
    return SeriesView(
        scanner=series.scanner, scans=len(points), failed=len(points) - len(scanned),
        first=_stamp(points[0].scanned_at), last=_stamp(points[-1].scanned_at),
        latest_findings=tuple((s, latest.by_severity.get(s, 0)) for s in SEVERITIES)
        if latest else (),
        latest_packages=latest.package_count if latest else None,
        findings_chart=findings_chart, packages_chart=packages_chart)


def _identity(target: TargetRef) -> tuple[str, str, str, str, str]:
    name = target.target if target.target_type == "image" else target.target_id
    return (target.host, target.machine_id, target.runtime or "", target.target_type, name)


def _context(series: Sequence[TrendSeries]) -> dict[str, Any]:
    grouped: dict[tuple[str, str, str, str, str], list[TrendSeries]] = {}
    for one in series:
        if one.points:
            grouped.setdefault(_identity(one.target), []).append(one)
    views = []
    for group in grouped.values():
        target = max(group, key=lambda s: s.points[-1].scanned_at).target
        views.append(TargetView(
            target=target.target, target_type=target.target_type, target_id=target.target_id,
            runtime=target.runtime, host=target.host, names=target.names,
            series=tuple(_series_view(target, s) for s in group)))
    views.sort(key=lambda v: (v.target_type != "image", v.target, v.host, v.runtime or ""))
    stamps = [p.scanned_at for s in series for p in s.points]
    return {
        "version": __version__,
        "severities": SEVERITIES,
        "targets": views,
        "first": _stamp(min(stamps)) if stamps else None,
        "last": _stamp(max(stamps)) if stamps else None,
        "scans": len({(s.target.host, p.run_id) for s in series for p in s.points}),
    }


def render_trend(series: Sequence[TrendSeries]) -> str:
    """The page for ``series`` (from :func:`atomicscan.history.queries.trend`)."""
    try:
        return html_environment().get_template(TEMPLATE).render(_context(series))
    except (jinja2.TemplateError, OSError) as exc:
        raise AtomicscanError(f"the trend page could not be made: {exc}") from exc


def write_trend(path: Path, series: Sequence[TrendSeries]) -> None:
    """Write the page to ``path``; a failure is one line (an ``AtomicscanError``)."""
    # A lone surrogate can't be UTF-8: shown as "?" rather than failing the page.
    page = render_trend(series).encode("utf-8", errors="replace")
    try:
        path.write_bytes(page)
    except OSError as exc:
        raise AtomicscanError(f"cannot write {path}: {exc.strerror or exc}") from exc
