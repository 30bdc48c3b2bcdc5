"""Reports other tools read, the gate and suppressions, on real scans (podman).

The SARIF documents are validated against the OASIS schema in ../shared/schemas.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import ALPINE, DEBIAN, LINT_BAD, LINT_CLEAN, Atomicscan
from schemas import sarif_schema


@pytest.fixture
def scan(tmp_path: Path) -> Atomicscan:
    return Atomicscan(tmp_path, "podman")


def _valid_sarif(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    jsonschema.validate(document, sarif_schema(),
                        cls=jsonschema.Draft4Validator)
    return document


def _fingerprints(document: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(result["ruleId"],
             result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
             result["partialFingerprints"]["primaryLocationLineHash"])
            for run in document["runs"] for result in run["results"]}


def test_one_run_writes_every_format_and_the_gate_exits_3(scan: Atomicscan,
                                                          tmp_path: Path) -> None:
    sarif, html, report = tmp_path / "lint.sarif", tmp_path / "lint.html", tmp_path / "r.json"
    run = scan("--scanner", "configlint", "-o", "table", "-o", f"sarif={sarif}",
               "-o", f"html={html}", "-o", f"json={report}", "--fail-on", "high", LINT_BAD)
    assert run.returncode == 3, run.stderr
    document = _valid_sarif(sarif)
    written = json.loads(report.read_text())
    (result,) = written["results"]
    high = [f for f in result["findings"] if f["severity"] in ("high", "critical")]
    assert high and f"{len(high)} finding(s) at or above high" in run.stderr
    assert len(document["runs"][0]["results"]) == len(result["findings"])
    assert "<html" in html.read_text()[:400].lower()
    # The table lists the findings, and a pipe gets whole lines (no folding at 80 columns).
    assert "CL-PRIVATE-KEY" in run.stdout and "/root/.ssh/id_rsa" in run.stdout
    assert any(line.startswith("1 target(s) scanned") and "Results: /" in line
               for line in run.stdout.splitlines())
    # A second, separate run finds the same things at the same places with the same prints.
    again = tmp_path / "again.sarif"
    assert scan("--scanner", "configlint", "--no-cache", "-o", f"sarif={again}",
                LINT_BAD).returncode == 0
    assert _fingerprints(_valid_sarif(again)) == _fingerprints(document)


def test_suppressions_stay_in_the_report_and_free_the_gate(scan: Atomicscan,
                                                          tmp_path: Path) -> None:
    first = scan("--scanner", "configlint", "--json", LINT_BAD).json()
    high = {f["id"] for f in first["results"][0]["findings"] if f["severity"] == "high"}
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    ignores = tmp_path / "ignore.toml"
    ignores.write_text("".join(
        f'[[ignore]]\nid = "{finding}"\nreason = "accepted for the test"\n'
        f"expires = {tomorrow}\n\n" for finding in sorted(high)))
    sarif = tmp_path / "s.sarif"
    run = scan("--scanner", "configlint", "--ignore-file", str(ignores), "--fail-on", "high",
               "--json", "-o", f"sarif={sarif}", LINT_BAD)
    assert run.returncode == 0, run.stderr
    findings = run.json()["results"][0]["findings"]
    suppressed = [f for f in findings if "suppressed" in f]
    assert {f["id"] for f in suppressed} == high
    assert all(f["suppressed"]["reason"] == "accepted for the test" for f in suppressed)
    marked = [r for r in _valid_sarif(sarif)["runs"][0]["results"] if r.get("suppressions")]
    assert len(marked) == len(suppressed)

    # An expired entry stops suppressing, and the run says which one expired.
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    ignores.write_text(ignores.read_text().replace(tomorrow, yesterday, 1))
    expired = scan("--scanner", "configlint", "--ignore-file", str(ignores),
                   "--fail-on", "high", LINT_BAD)
    assert expired.returncode == 3
    assert "expired, no longer suppressing" in expired.stderr


def test_a_failed_scan_wins_over_the_gate(scan: Atomicscan) -> None:
    # One target has a critical finding, the other fails: the run exits 1, not 3.
    scan.add_scanner("half", """
for d in /scanin/*; do
  k=$(basename "$d"); mkdir -p "/scanout/$k"
  if [ ! -e "$d/etc/alpine-release" ]; then
    printf '%s' '{"Successful": "false", "Error": "broken on purpose"}' > "/scanout/$k/json"
  else
    printf '%s' '{"Successful": "true", "Vulnerabilities": [{"ID": "T-1", "Title": "t",
      "Severity": "Critical"}]}' > "/scanout/$k/json"
  fi
done
""")
    run = scan("--scanner", "half", "--fail-on", "low", "--json", DEBIAN, ALPINE)
    results = {r["target"]: r for r in run.json()["results"]}
    assert not results[DEBIAN]["successful"] and results[ALPINE]["findings"]
    assert run.returncode == 1, run.stderr


def test_a_clean_image_passes_the_gate(scan: Atomicscan) -> None:
    run = scan("--scanner", "configlint", "--fail-on", "high", LINT_CLEAN)
    assert run.returncode == 0, run.stderr
