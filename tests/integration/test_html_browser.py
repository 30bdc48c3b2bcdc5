"""The HTML report in a real browser: Debian's Chromium, headless, driven over DevTools.

A real configlint scan and a real package inventory are merged with a hostile finding and a
failed target into one report; its page is opened with no network and checked for console
errors, dialogs and requests, for the numbers it shows against the report's, for filtering,
and for reading with JavaScript off. The page and a screenshot stay in the scan's results
directory (``<tmp_path>/results/...``, printed by the test).

The browser and its DevTools pipe are in ``tests/browser.py``.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from browser import DevTools, browser, is_problem
from helpers import DEBIAN, LINT_BAD, Atomicscan

from atomicscan.builtin.format_html import SEVERITIES, write_html
from atomicscan.results import Finding, Report, ScanResult

pytestmark = pytest.mark.real

HOSTILE_TITLE = "<script>alert(1)</script>"
HOSTILE_DESCRIPTION = '"><img src=x onerror=alert(2)><svg onload=alert(3)>'

#: What the page shows, read after its script ran.
_READ_PAGE = """JSON.stringify({
  run: Object.fromEntries(Array.from(document.querySelectorAll("header dd[data-field]"),
                                     (dd) => [dd.dataset.field, dd.textContent.trim()])),
  runChart: Object.fromEntries(Array.from(
      document.querySelectorAll("header svg text[data-severity]"),
      (t) => [t.dataset.severity, t.textContent.trim()])),
  targets: Array.from(document.querySelectorAll("article.target"), (card) => ({
    target: card.dataset.target,
    scanner: card.dataset.scanner,
    fields: Object.fromEntries(Array.from(card.querySelectorAll("dd[data-field]"),
                                          (dd) => [dd.dataset.field, dd.textContent.trim()])),
    chart: Object.fromEntries(Array.from(card.querySelectorAll("svg text[data-severity]"),
                                         (t) => [t.dataset.severity, t.textContent.trim()])),
  })),
  packageRows: Object.fromEntries(Array.from(document.querySelectorAll("details.packages"),
      (d) => [d.dataset.target, d.querySelectorAll("tbody tr").length])),
  shown: document.getElementById("findings-shown").textContent,
  total: document.getElementById("findings-total").textContent,
  visibleRows: Array.from(document.querySelectorAll("#findings-table tbody tr"))
      .filter((row) => !row.hidden).length,
  filtersHidden: document.getElementById("filters").hidden,
  scripts: document.scripts.length,
  titles: Array.from(document.querySelectorAll("#findings-table tbody tr td:nth-child(3)"),
                     (td) => td.firstChild ? td.firstChild.textContent : ""),
  injected: document.querySelectorAll("tbody img, tbody svg, tbody script").length,
})"""

_FILTER = """(() => {
  const filters = document.getElementById("filters");
  for (const box of filters.querySelectorAll("input[name=severity]")) {
    box.checked = box.value !== %(drop)s;
  }
  filters.querySelector("select[name=scanner]").value = %(scanner)s;
  filters.dispatchEvent(new Event("change", {bubbles: true}));
  return JSON.stringify({
    shown: document.getElementById("findings-shown").textContent,
    rows: Array.from(document.querySelectorAll("#findings-table tbody tr"))
        .filter((row) => !row.hidden)
        .map((row) => [row.dataset.severity, row.dataset.scanner]),
  });
})()"""


def _scan(tmp_path: Path) -> Report:
    """A real configlint scan and a real inventory, plus a hostile finding and a failure."""
    atomicscan = Atomicscan(tmp_path, "podman")
    lint = atomicscan("--scanner", "configlint", "--json", LINT_BAD)
    assert lint.returncode == 0, lint.stderr
    inventory = atomicscan("--scanner", "packages", "--json", DEBIAN)
    assert inventory.returncode == 0, inventory.stderr
    lint_doc, inventory_doc = lint.json(), inventory.json()
    results = [ScanResult.from_json(doc)
               for doc in (*lint_doc["results"], *inventory_doc["results"])]
    template = results[0]
    results.append(template.replace(
        target="localhost/hostile:<b>bold</b>", target_id="0" * 64, scanner="hostile",
        os=None, packages=None, files={}, notes=("note with <i>markup</i>",),
        findings=(
            Finding(id="HOSTILE-1", title=HOSTILE_TITLE, severity="critical",
                    description=HOSTILE_DESCRIPTION, details={"path": "/etc/<script>"}),
            Finding(id="HOSTILE-2", title="suppressed one", severity="high",
                    suppressed="accepted <b>risk</b>"))))
    results.append(template.replace(
        target="localhost/missing:1", target_id="", successful=False, findings=(),
        error="image not found: <script>alert(4)</script>", files={}, notes=()))
    results_dir = Path(lint_doc["results_dir"])
    assert results_dir.is_relative_to(tmp_path)
    return Report(run_id=lint_doc["run_id"], scanner="configlint", scan_type="lint",
                  started_at=lint_doc["started_at"], finished_at=inventory_doc["finished_at"],
                  results_dir=results_dir, results=tuple(results))


def _expected_by_severity(findings: tuple[Finding, ...]) -> dict[str, str]:
    return {s: str(sum(f.severity == s for f in findings)) for s in SEVERITIES}


def test_the_page_in_chromium_shows_the_reports_numbers_and_runs_no_hostile_script(
    tmp_path: Path, browser: DevTools
) -> None:
    report = _scan(tmp_path)
    assert report.results_dir is not None
    page = report.results_dir / "report.html"
    page.write_bytes(write_html(report))
    screenshot = report.results_dir / "report.png"
    print(f"page: {page}\nscreenshot: {screenshot}")

    session = browser.open_page(page)
    shown = browser.evaluate(_READ_PAGE, session)

    # The numbers on the page are the report's.
    all_findings = tuple(f for r in report.results for f in r.findings)
    assert shown["run"] == {"targets": str(len(report.results)), "failed": "1",
                            "findings": str(len(all_findings)), "suppressed": "1"}
    assert shown["runChart"] == _expected_by_severity(all_findings)
    assert len(shown["targets"]) == len(report.results)
    for card, result in zip(shown["targets"], report.results, strict=True):
        assert (card["target"], card["scanner"]) == (result.target, result.scanner)
        assert card["fields"]["findings"] == str(len(result.findings))
        assert card["chart"] == _expected_by_severity(result.findings)
        if result.packages is not None:
            assert card["fields"]["packages"] == str(len(result.packages))
            assert shown["packageRows"][result.target] == len(result.packages)
        assert ("error" in card["fields"]) == (not result.successful)
    inventory = next(r for r in report.results if r.packages is not None)
    assert inventory.packages and len(inventory.packages) > 50
    assert "Debian" in next(c for c in shown["targets"]
                            if c["target"] == inventory.target)["fields"]["os"]
    assert shown["shown"] == shown["total"] == str(len(all_findings))
    assert shown["visibleRows"] == len(all_findings)
    assert shown["filtersHidden"] is False, "the script should have shown the filters"

    # Hostile text is text: one script (the page's own), no injected element, no dialog.
    assert shown["scripts"] == 1
    assert shown["injected"] == 0
    assert HOSTILE_TITLE in shown["titles"]

    # Filtering by severity and by scanner.
    dropped = browser.evaluate(_FILTER % {"drop": '"high"', "scanner": '""'}, session)
    assert int(dropped["shown"]) == len(dropped["rows"]) == sum(
        f.severity != "high" for f in all_findings)
    assert {severity for severity, _ in dropped["rows"]} == {
        f.severity for f in all_findings} - {"high"}
    hostile = browser.evaluate(_FILTER % {"drop": '""', "scanner": '"hostile"'}, session)
    assert hostile["rows"] == [["critical", "hostile"], ["high", "hostile"]]
    browser.evaluate(_FILTER % {"drop": '""', "scanner": '""'}, session)

    captured = browser.send("Page.captureScreenshot",
                            {"format": "png", "captureBeyondViewport": True}, session)
    screenshot.write_bytes(base64.b64decode(captured["data"]))
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # With JavaScript off every finding is listed and the (useless) filters stay hidden.
    browser.send("Emulation.setScriptExecutionDisabled", {"value": True}, session)
    browser.send("Page.reload", {}, session)
    browser.wait_for("Page.loadEventFired")
    static = browser.evaluate(_READ_PAGE, session)
    assert static["filtersHidden"] is True
    assert static["visibleRows"] == len(all_findings)
    assert static["run"] == shown["run"]

    problems = [event for event in browser.events if is_problem(event)]
    assert problems == []


__all__ = ["browser"]  # the fixture, imported for pytest
