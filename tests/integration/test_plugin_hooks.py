"""Plugins declared in the test change real scans through the public hooks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import pytest
from helpers import ALPINE, podman_env

from atomicscan.hookspecs import hookimpl
from atomicscan.plugins import Plugins
from atomicscan.results import Finding, Report, ScanResult
from atomicscan.scan import ScanRequest, ScanRun
from atomicscan.scanners import Scanner


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMICSCAN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ATOMICSCAN_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("ATOMICSCAN_CONFIG_DIR", str(tmp_path / "none"))
    for key, value in podman_env().items():
        monkeypatch.setenv(key, value)


class ScanWith(Protocol):
    """The ``scan`` fixture: a real packages scan of the Alpine-like image with these plugins."""

    def __call__(self, *plugins: object) -> Report: ...


@pytest.fixture
def scan(runtime: str) -> ScanWith:
    def run(*plugins: object) -> Report:
        request = ScanRequest(targets=(ALPINE,), scanner="packages", runtime=runtime)
        return ScanRun(Plugins.load(plugins, entry_points=False), request).execute()
    return run


def test_process_result_plugin_adds_a_finding_to_a_real_scan(scan: ScanWith) -> None:
    class FlagMusl:
        @hookimpl
        def atomicscan_process_result(self, result: ScanResult, scanner: Scanner) -> ScanResult:
            musl = [p for p in result.packages or () if p.name == "musl"]
            return result.replace(findings=(*result.findings, *(
                Finding(id="uses-musl", title=f"musl {p.version}") for p in musl)))

    plain = scan()
    flagged = scan(FlagMusl())

    assert plain.results[0].findings == ()
    assert [f.id for f in flagged.results[0].findings] == ["uses-musl"]
    # The plugin ran after the built-in packages plugin had typed the inventory.
    assert flagged.results[0].packages == plain.results[0].packages


def test_merge_plugin_overrides_the_builtin_merge(scan: ScanWith) -> None:
    class CountingMerge:
        @hookimpl
        def atomicscan_merge_results(self, results: Sequence[ScanResult], scanner: Scanner,
                                     scan_type: str, run_id: str) -> Report:
            return Report(run_id=run_id, scanner=scanner.name, scan_type=scan_type,
                          started_at="s", finished_at="f", results_dir=None,
                          results=tuple(results),
                          extra={"package_total": sum(len(r.packages or ()) for r in results)})

    report = scan(CountingMerge())

    doc = report.to_json()
    assert doc["package_total"] == len(report.results[0].packages or ()) > 0
    assert doc["started_at"] == "s"
    written = (Path(doc["results_dir"]) / "report.json").read_text()
    assert '"package_total"' in written
