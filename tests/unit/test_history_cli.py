"""``atomicscan history``: every command on a real SQLite history, as a table and as JSON.

The group is invoked with click's CliRunner (errors are mapped to exit codes the way
``cli.main`` maps them), and through ``python -m atomicscan`` where the one-line error and
the exit code themselves are under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import html5lib
import pytest
from click.testing import CliRunner
from historydata import (
    CONTAINER,
    day,
    deb,
    lint,
    open_store,
    record_scenario,
    report,
    result,
    scenario_reports,
    stamp,
)

from atomicscan import cli_history
from atomicscan.cli_history import history
from atomicscan.errors import AtomicscanError, ExitCode

NS = "{http://www.w3.org/1999/xhtml}"
SVG = "{http://www.w3.org/2000/svg}"


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, object]:
        document = json.loads(self.stdout)
        assert isinstance(document, dict)
        return document


def run(*args: str) -> Ran:
    outcome = CliRunner().invoke(history, list(args))
    code = outcome.exit_code
    if isinstance(outcome.exception, AtomicscanError):
        code = int(outcome.exception.exit_code)  # what cli.main does with it
    elif outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        raise outcome.exception
    return Ran(code, outcome.stdout, outcome.stderr)


@pytest.fixture
def db(tmp_path: Path) -> str:
    recorded = record_scenario(tmp_path)
    recorded.store.close()
    return recorded.url


def test_runs_as_a_table_and_as_json(db: str) -> None:
    table = run("runs", "--db", db)
    assert table.code == 0
    assert "r1-packages" in table.stdout and "db01" in table.stdout
    document = run("runs", "--db", db, "--json", "--limit", "2").json()
    runs = document["runs"]
    assert isinstance(runs, list)
    assert [r["run_id"] for r in runs] == ["r6-db-lint", "r4-lint"]
    assert runs[1]["started_at"] == "2026-11-05T00:00:00Z"
    assert (runs[1]["findings"], runs[1]["suppressed"], runs[1]["host"]) == (3, 1, "web01")


def test_package_at_a_moment_and_over_a_window(db: str) -> None:
    at = run("package", "openssl", "--version", "<3.0.15", "--at", "2026-11-04T12:00",
             "--db", db, "--json").json()
    found = at["found"]
    assert isinstance(found, list)
    assert sorted((h["target"]["host"], h["target"]["target"], h["version"]) for h in found) == [
        ("db01", "web:1", "3.0.11-1~deb12u1"), ("web01", "c1", "3.0.11-1~deb12u1")]
    assert at["at"] == "2026-11-04T12:00:00Z" and at["version"] == "<3.0.15"
    container = next(h for h in found if h["target"]["target_type"] == "container")
    assert container["target"]["target_id"] == CONTAINER
    assert container["scanned_at"] == "2026-11-02T00:00:00Z"
    window = run("package", "openssl", "--since", "2026-11-02", "--until", "2026-11-04",
                 "--db", db, "--json").json()
    assert isinstance(window["found"], list) and len(window["found"]) == 5
    table = run("package", "openssl", "--at", "2026-11-04", "--db", db)
    assert table.code == 0 and "4 target(s) with openssl" in table.stdout
    assert "3.0.15-1~deb12u1" in table.stdout and "web:latest" not in table.stdout
    assert "0 target(s) with nothing" in run("package", "nothing", "--db", db).stdout


@pytest.mark.parametrize("args", [
    ("--at", "2026-11-04", "--since", "2026-11-01"),
    ("--at", "next tuesday"),
    ("--since", "2026-11-05", "--until", "2026-11-01"),
    ("--version", "<"),
])
def test_package_refuses_bad_input_with_exit_2(db: str, args: tuple[str, ...]) -> None:
    assert run("package", "openssl", *args, "--db", db).code == ExitCode.USAGE


def test_finding_first_last_and_fixed(db: str) -> None:
    document = run("finding", "CVE-2024-0001", "--db", db, "--json").json()
    targets = document["targets"]
    assert isinstance(targets, list)
    assert [(t["target"]["host"], t["first_seen"], t["last_seen"], t["fixed_at"])
            for t in targets] == [
        ("web01", "2026-11-03T00:00:00Z", "2026-11-03T00:00:00Z", "2026-11-05T00:00:00Z"),
        ("db01", "2026-11-06T00:00:00Z", "2026-11-06T00:00:00Z", None)]
    table = run("finding", "CVE-2024-0001", "--db", db)
    assert "2 target(s) with CVE-2024-0001" in table.stdout
    assert "2026-11-05 00:00:00" in table.stdout


def test_diff_shows_package_and_finding_changes(db: str) -> None:
    document = run("diff", "web:1", "--host", "web01", "--scanner", "packages", "--db", db,
                   "--json").json()
    changes = document["packages"]
    assert isinstance(changes, list)
    assert {c["change"]: c["name"] for c in changes} == {
        "upgraded": "openssl", "downgraded": "tzdata", "removed": "libfoo", "added": "newpkg"}
    table = run("diff", "web:1", "--host", "web01", "--db", db)
    assert table.code == 0
    assert "findings: 2 new, 1 fixed" in table.stdout
    assert "packages: not compared" in table.stdout
    by_runs = run("diff", "web:1", "--from", "r1-packages", "--to", "r3-packages",
                  "--host", "web01", "--db", db)
    assert "1 added, 1 removed, 1 upgraded, 1 downgraded" in by_runs.stdout
    ambiguous = run("diff", "web:1", "--db", db)
    assert ambiguous.code == ExitCode.USAGE


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_import_records_reports_once_and_names_each_bad_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'imported.db'}"
    reports = scenario_reports()
    good = [_write(tmp_path / f"{r.run_id}.json", r.to_json()) for r in reports[:2]]
    first = run("import", *map(str, good), "--db", url)
    assert first.code == 0, first
    assert first.stdout.count(": recorded run ") == 2
    again = run("import", *map(str, good), "--db", url, "--json")
    assert again.code == 0
    assert again.json()["already_recorded"] == 2 and again.json()["recorded"] == 0
    assert "already recorded; nothing added" in run("import", str(good[0]), "--db", url).stdout
    assert len(run("runs", "--db", url, "--json").json()["runs"]) == 2  # type: ignore[arg-type]

    bad_time = reports[2].to_json()
    bad_time["started_at"] = "yesterday-ish"
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    bad = [
        (tmp_path / "nan.json", '{"run_id": NaN}'),
        (tmp_path / "text.json", "not json at all"),
        (tmp_path / "list.json", "[1, 2, 3]"),
        (tmp_path / "shape.json", json.dumps({"run_id": "x", "results": "none"})),
        (tmp_path / "missing.json", json.dumps({"results": []})),
        (tmp_path / "time.json", json.dumps(bad_time)),
        (tmp_path / "deep.json", "[" * 5000 + "]" * 5000),
    ]
    for path, text in bad:
        path.write_text(text, encoding="utf-8")
    paths = [*(str(p) for p, _ in bad), str(fifo), str(tmp_path), str(tmp_path / "absent.json")]
    fresh = _write(tmp_path / "fresh.json", reports[3].to_json())
    mixed = run("import", *paths, str(fresh), "--db", url)
    assert mixed.code == ExitCode.USAGE
    errors = mixed.stderr.splitlines()
    assert len(errors) == len(paths), errors
    assert all(line.startswith("atomicscan: error: ") for line in errors)
    assert all(any(line.startswith(f"atomicscan: error: {p}: not a report")
                   for line in errors) for p in paths)
    assert "recorded run r3-packages" in mixed.stdout  # the good file still went in
    assert len(run("runs", "--db", url, "--json").json()["runs"]) == 3  # type: ignore[arg-type]


def test_import_refuses_a_file_over_the_size_cap(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_history, "MAX_REPORT_BYTES", 1000)
    big = _write(tmp_path / "big.json", scenario_reports()[0].to_json())
    assert big.stat().st_size > 1000
    done = run("import", str(big), "--db", f"sqlite:///{tmp_path / 'h.db'}", "--json")
    assert done.code == ExitCode.USAGE
    files = done.json()["files"]
    assert isinstance(files, list)
    assert files[0]["status"] == "not a report" and "larger than" in files[0]["error"]


def test_prune_removes_old_runs_only(tmp_path: Path) -> None:
    now = datetime.now(tz=UTC)
    with open_store(tmp_path) as store:
        for run_id, age in (("old", 10), ("new", 1)):
            when = now - timedelta(days=age)
            store.record(report(run_id, when, [result("web:1", "1" * 64, when,
                                                      packages=(deb("a", "1"),))]))
        url = store.url
    done = run("prune", "--max-age", "5", "--db", url, "--json").json()
    assert done["removed"] == 1
    assert [r["run_id"] for r in run("runs", "--db", url, "--json").json()["runs"]] == [  # type: ignore[attr-defined]
        "new"]
    assert "removed 0 run(s)" in run("prune", "--max-age", "5", "--db", url).stdout
    for bad in ("nan", "-1", "inf", "ten"):
        assert run("prune", "--max-age", bad, "--db", url).code == ExitCode.USAGE


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_report_writes_a_valid_self_contained_page(db: str, tmp_path: Path) -> None:
    page_path = tmp_path / "trend.html"
    done = run("report", "--html", str(page_path), "--db", db, "--json")
    assert done.code == 0
    series = done.json()["series"]
    assert isinstance(series, list) and len(series) == 6
    page = page_path.read_text(encoding="utf-8")
    root: ET.Element = html5lib.HTMLParser(strict=True).parse(page)
    assert list(root.iter(NS + "script")) == []
    style = next(root.iter(NS + "style")).text or ""
    csp = next(m.get("content") for m in root.iter(NS + "meta")
               if m.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and f"style-src '{_csp_hash(style)}'" in csp
    assert "script-src 'none'" in csp and "default-src 'none'" in csp
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    sections = {(s.get("data-host"), s.get("data-target")): s
                for s in root.iter(NS + "section")}
    assert set(sections) == {("web01", "web:1"), ("web01", "c1"), ("web01", "ubi:9"),
                             ("db01", "web:1")}
    lint_chart = next(svg for svg in sections["web01", "web:1"].iter(SVG + "svg")
                      if svg.get("data-chart") == "findings")
    dots = {(line.get("data-line"), circle.get("data-when"), circle.get("data-value"))
            for line in lint_chart.iter(SVG + "g") for circle in line.iter(SVG + "circle")}
    assert ("high", "2026-11-03 00:00", "1") in dots
    assert ("high", "2026-11-05 00:00", "0") in dots
    assert ("medium", "2026-11-05 00:00", "1") in dots
    assert ("critical", "2026-11-05 00:00", "0") in dots  # the suppressed one isn't counted
    # c1's day-3 scan failed: counted as a scan, not plotted as an empty package list.
    container = sections["web01", "c1"]
    assert next(d for d in container.iter(NS + "div")
                if d.get("class") == "series").get("data-scans") == "2"
    assert len(list(container.iter(SVG + "circle"))) == 1
    assert page == _render_again(db)  # the same history gives the same bytes
    assert run("report", "--db", db).code == 0


def _render_again(db: str) -> str:
    from atomicscan.history import queries
    from atomicscan.history.store import Store
    from atomicscan.history.trend import render_trend

    store = Store.open(db)
    try:
        return render_trend(queries.trend(store.engine))
    finally:
        store.close()


def test_hostile_text_from_the_database_is_printed_as_text(tmp_path: Path) -> None:
    hostile = "[bold red]x[/bold red]\x1b[31m\u202eevil"
    now = datetime(2026, 11, 2, tzinfo=UTC)
    with open_store(tmp_path) as store:
        for run_id in ("h1", "h2"):
            store.record(report(run_id, now, [result(
                hostile, "e" * 64, now, scanner="configlint",
                findings=(lint("EVIL-1", "high", "/x", title=hostile),) if run_id == "h2"
                else ())], scanner="configlint"))
            now += timedelta(days=1)
        url = store.url
    for args in (("runs",), ("finding", "EVIL-1"), ("diff", hostile), ("report",)):
        shown = run(*args, "--db", url)
        assert shown.code == 0, (args, shown)
        assert "\x1b" not in shown.stdout and "\u202e" not in shown.stdout
        if args[0] != "runs":
            assert "[bold red]x[/bold red]\\x1b[31m\\u202eevil" in shown.stdout.replace("\n", "")


def _atomicscan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atomicscan", "history", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_errors_are_one_line_with_their_exit_code(db: str, tmp_path: Path) -> None:
    bad_time = _atomicscan("package", "openssl", "--at", "next tuesday", "--db", db)
    assert bad_time.returncode == ExitCode.USAGE
    assert bad_time.stderr.count("\n") == 1 and bad_time.stderr.startswith(
        "atomicscan: error: --at: ")
    unknown = _atomicscan("diff", "nothing:here", "--db", db)
    assert unknown.returncode == ExitCode.USAGE and unknown.stderr.count("\n") == 1
    secret = _atomicscan("runs", "--db", "postgresql://scan:hunter2@127.0.0.1:1/history")
    assert secret.returncode == ExitCode.SCAN_FAILED
    assert secret.stderr.count("\n") == 1 and "hunter2" not in secret.stderr


def test_help_has_copy_paste_examples() -> None:
    shown = _atomicscan("--help")
    assert shown.returncode == 0
    for command in ("runs", "package", "finding", "diff", "import", "prune", "report"):
        assert f"atomicscan history {command}" in shown.stdout
        sub = run(command, "--help")
        assert sub.code == 0 and "Examples:" in sub.stdout and "--db URL" in sub.stdout
        assert "--json" in sub.stdout


def test_times_in_reports_are_read_as_recorded(tmp_path: Path) -> None:
    """A report written with an offset is stored and shown in UTC."""
    when = datetime(2026, 11, 2, 10, tzinfo=UTC)
    doc = report("tz", when, [result("web:1", "1" * 64, when, packages=(deb("a", "1"),))]).to_json()
    doc["started_at"] = stamp(when).replace("Z", "+00:00").replace("10:00", "12:00").replace(
        "+00:00", "+02:00")
    path = _write(tmp_path / "tz.json", doc)
    url = f"sqlite:///{tmp_path / 'h.db'}"
    assert run("import", str(path), "--db", url).code == 0
    runs = run("runs", "--db", url, "--json").json()["runs"]
    assert isinstance(runs, list) and runs[0]["started_at"] == "2026-11-02T10:00:00Z"
    assert day(1) < when
