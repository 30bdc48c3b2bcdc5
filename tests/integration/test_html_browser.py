"""The HTML report in a real browser: Debian's Chromium, headless, driven over DevTools.

A real configlint scan and a real package inventory are merged with a hostile finding and a
failed target into one report; its page is opened with no network and checked for console
errors, dialogs and requests, for the numbers it shows against the report's, for filtering,
and for reading with JavaScript off. The page and a screenshot stay in the scan's results
directory (``<tmp_path>/results/...``, printed by the test).

Chromium runs with ``--no-sandbox`` because the real tier runs as root, where Chromium's
sandbox refuses to start. It talks DevTools over ``--remote-debugging-pipe`` (fd 3 in, fd 4
out): no port, no extra Python package.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import DEBIAN, LINT_BAD, Atomicscan

from atomicscan.builtin.format_html import SEVERITIES, write_html
from atomicscan.results import Finding, Report, ScanResult

pytestmark = pytest.mark.real

CHROMIUM = shutil.which("chromium")
HOSTILE_TITLE = "<script>alert(1)</script>"
HOSTILE_DESCRIPTION = '"><img src=x onerror=alert(2)><svg onload=alert(3)>'

#: The child re-opens the two pipe ends as fds 3 and 4, where Chromium expects them.
_ON_FDS_3_4 = ("import os, sys\n"
               "os.dup2(int(sys.argv[1]), 3)\n"
               "os.dup2(int(sys.argv[2]), 4)\n"
               "os.execv(sys.argv[3], sys.argv[3:])\n")

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


class DevTools:
    """One headless Chromium and its DevTools pipe: commands in, replies and events out."""

    def __init__(self, profile: Path, log: Path) -> None:
        assert CHROMIUM is not None
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--hide-scrollbars", "--mute-audio", "about:blank"]
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ON_FDS_3_4, str(commands_read), str(replies_write),
                 *argv],
                pass_fds=(commands_read, replies_write), stdin=subprocess.DEVNULL,
                stdout=stderr, stderr=stderr, start_new_session=True)
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.profile = profile

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            # A bound so a wedged browser fails the test instead of hanging it.
            ready, _, _ = select.select([self._replies], [], [], 120)
            assert ready, "chromium stopped answering on the DevTools pipe"
            chunk = os.read(self._replies, 1 << 16)
            assert chunk, "chromium closed the DevTools pipe"
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def _write(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        return self._next_id

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        wanted = self._write(method, params or {}, session)
        while True:
            reply = self._receive()
            if reply.get("id") == wanted:
                assert "error" not in reply, f"{method}: {reply['error']}"
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._event(reply)

    def _event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event["method"] == "Page.javascriptDialogOpening":
            # Answer it (without waiting), or the page stays blocked; the test fails on the
            # event itself.
            self._write("Page.handleJavaScriptDialog", {"accept": True}, event.get("sessionId"))

    def wait_for(self, method: str) -> dict[str, Any]:
        start = len(self.events)
        while True:
            for event in self.events[start:]:
                if event["method"] == method:
                    self.events.remove(event)
                    return event
            start = len(self.events)
            self._event(self._receive())

    def evaluate(self, expression: str, session: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True}, session)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return json.loads(result["result"]["value"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._write("Browser.close", {}, None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        # Renderers and helpers share the browser's new process group: end all of them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


def _processes_using(profile: Path) -> list[int]:
    """PIDs whose command line names ``profile``: Chromium's processes all carry it."""
    marker = str(profile).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed; run scripts/setup", pytrace=False)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    devtools = DevTools(profile, tmp_path / "chromium.log")
    try:
        yield devtools
    finally:
        devtools.close()
        for _ in range(100):  # zombies are reaped by init a moment after the group died
            if not _processes_using(profile):
                break
            time.sleep(0.1)
        left = _processes_using(profile)
        shutil.rmtree(profile, ignore_errors=True)
        assert not left, f"chromium processes left behind: {left}"
        assert not profile.exists()


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

    target_id = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget",
                           {"targetId": target_id, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", {}, session)
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                 session)
    browser.send("Page.navigate", {"url": page.as_uri()}, session)
    browser.wait_for("Page.loadEventFired")
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

    problems = [event for event in browser.events if _is_problem(event)]
    assert problems == []


def _is_problem(event: dict[str, Any]) -> bool:
    """A console error, an uncaught exception, a dialog, a CSP report, or a request."""
    method, params = event["method"], event.get("params", {})
    if method == "Runtime.consoleAPICalled":
        return params.get("type") in {"error", "assert", "warning"}
    if method == "Log.entryAdded":
        return params.get("entry", {}).get("level") in {"error", "warning"}
    if method == "Network.requestWillBeSent":
        return not params.get("request", {}).get("url", "").startswith("file://")
    return method in {"Runtime.exceptionThrown", "Page.javascriptDialogOpening"}
