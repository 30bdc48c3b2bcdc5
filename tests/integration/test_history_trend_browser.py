"""The history's trend page in a real browser: Debian's Chromium, headless, over DevTools.

Real scans (a package inventory and configlint findings) are imported into a SQLite history
with ``atomicscan history import``, next to the shared five-day scenario and a target with a
hostile name; ``atomicscan history report --html`` writes the page, which is opened with no
network and checked for console errors, dialogs and requests, and for every plotted value
against the history's own numbers. The page and a screenshot stay in ``tmp_path``.

The browser is the run report's test's (``test_html_browser.DevTools`` and its ``browser``
fixture), imported rather than copied.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from browser import DevTools, browser, is_problem
from helpers import DEBIAN, LINT_BAD, Atomicscan
from historydata import day, lint, open_store, report, result, scenario_reports

from atomicscan.history import queries
from atomicscan.history.store import Store

pytestmark = pytest.mark.real
__all__ = ["browser"]  # the fixture, used by name below

HOSTILE = '<img src=x onerror=alert(1)>"><script>alert(2)</script>'

#: Every section, series and plotted point as the page shows them.
_READ_PAGE = """JSON.stringify({
  sections: Array.from(document.querySelectorAll("section.target"), (s) => ({
    target: s.dataset.target, host: s.dataset.host, type: s.dataset.type,
    heading: s.querySelector("h2").firstChild.textContent.trim(),
    series: Array.from(s.querySelectorAll("div.series"), (d) => ({
      scanner: d.dataset.scanner, scans: d.dataset.scans,
      charts: Array.from(d.querySelectorAll("svg.trend"), (svg) => ({
        kind: svg.dataset.chart,
        width: svg.getBoundingClientRect().width,
        lines: Object.fromEntries(Array.from(svg.querySelectorAll("g[data-line]"), (g) => [
          g.dataset.line,
          Array.from(g.querySelectorAll("circle"), (c) => [c.dataset.when, c.dataset.value,
                                                          c.getBoundingClientRect().width > 0]),
        ])),
      })),
    })),
  })),
  scripts: document.scripts.length,
  injected: document.querySelectorAll("main img, main script").length,
})"""


def _history(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atomicscan", "history", *args],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def history_db(tmp_path: Path) -> Iterator[str]:
    """A history of real scans imported by the command, the scenario, and a hostile name."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    atomicscan = Atomicscan(tmp_path, "podman")
    reports = []
    for scanner, image in (("packages", DEBIAN), ("configlint", LINT_BAD)):
        done = atomicscan("--scanner", scanner, "--no-history", "--json", image)
        assert done.returncode == 0, done.stderr
        path = tmp_path / f"{scanner}.json"
        path.write_text(done.stdout, encoding="utf-8")
        reports.append(str(path))
    for one in scenario_reports():
        path = tmp_path / f"{one.run_id}.json"
        path.write_text(json.dumps(one.to_json()), encoding="utf-8")
        reports.append(str(path))
    imported = _history("import", *reports, "--db", url)
    assert imported.returncode == 0, imported.stderr
    with open_store(tmp_path) as store:
        for n in range(3):
            when = day(1) + timedelta(days=n)
            store.record(report(f"hostile-{n}", when, [result(
                HOSTILE, "e" * 64, when, scanner="configlint",
                findings=tuple(lint(f"EVIL-{i}", "critical", "/x", title=HOSTILE)
                               for i in range(n)))], scanner="configlint"))
    yield url


def test_the_trend_page_plots_the_historys_numbers_and_runs_nothing(
    tmp_path: Path, history_db: str, browser: DevTools
) -> None:
    page = tmp_path / "trend.html"
    written = _history("report", "--html", str(page), "--db", history_db)
    assert written.returncode == 0, written.stderr
    screenshot = tmp_path / "trend.png"
    print(f"page: {page}\nscreenshot: {screenshot}")

    session = browser.open_page(page)
    shown: dict[str, Any] = browser.evaluate(_READ_PAGE, session)

    store = Store.open(history_db)
    try:
        expected = queries.trend(store.engine)
    finally:
        store.close()
    sections = {(s["host"], s["type"], s["target"]): s for s in shown["sections"]}
    assert len(sections) == len({(e.target.host, e.target.target_type, e.target.target)
                                 for e in expected})
    for one in expected:
        section = sections[one.target.host, one.target.target_type, one.target.target]
        assert section["heading"] == one.target.target
        series = next(s for s in section["series"] if s["scanner"] == one.scanner)
        assert series["scans"] == str(len(one.points))
        charts = {chart["kind"]: chart for chart in series["charts"]}
        assert all(chart["width"] > 0 for chart in charts.values())
        scanned = [p for p in one.points if p.successful]  # a failed scan isn't plotted
        if "findings" in charts:
            for severity, plotted in charts["findings"]["lines"].items():
                assert [value for _, value, _ in plotted] == [
                    str(p.by_severity[severity]) for p in scanned]
                assert all(visible for _, _, visible in plotted)
        inventoried = [p for p in scanned if p.package_count is not None]
        if inventoried:
            plotted = charts["packages"]["lines"]["packages"]
            assert [value for _, value, _ in plotted] == [str(p.package_count)
                                                          for p in inventoried]
        else:
            assert "packages" not in charts
    # The real inventory is there with its real package count (more than 50 packages).
    real = next(s for s in shown["sections"] if s["target"] == DEBIAN)
    real_packages = real["series"][0]["charts"][-1]["lines"]["packages"]
    assert int(real_packages[-1][1]) > 50
    real_lint = next(s for s in shown["sections"] if s["target"] == LINT_BAD)
    assert any(int(value) > 0 for chart in real_lint["series"][0]["charts"]
               for line in chart["lines"].values() for _, value, _ in line)
    # The hostile name is text: its heading reads as typed, nothing was injected or run.
    hostile = sections["web01", "image", HOSTILE]
    assert [v for _, v, _ in hostile["series"][0]["charts"][0]["lines"]["critical"]] == [
        "0", "1", "2"]
    assert shown["scripts"] == 0 and shown["injected"] == 0

    captured = browser.send("Page.captureScreenshot",
                            {"format": "png", "captureBeyondViewport": True}, session)
    screenshot.write_bytes(base64.b64decode(captured["data"]))
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    problems = [event for event in browser.events if is_problem(event)]
    assert problems == []
