"""The --fail-on gate: thresholds, suppressions, and failure winning over policy."""

from __future__ import annotations

import pytest

from atomicscan.errors import ExitCode, UsageError
from atomicscan.gate import FAIL_ON_CHOICES, exit_code, severity_rank, threshold, tripped
from atomicscan.results import Finding, Report, ScanResult

SEVERITIES = ("unknown", "low", "medium", "high", "critical")


def result(*findings: Finding, successful: bool = True, target: str = "img") -> ScanResult:
    return ScanResult(target=target, target_id="sha256:ff", target_type="image",
                      runtime="podman", scanner="s", scan_type="t", successful=successful,
                      started_at="a", finished_at="b", findings=findings,
                      error=None if successful else "boom")


def report(*results: ScanResult, write_error: str | None = None) -> Report:
    return Report(run_id="r", scanner="s", scan_type="t", started_at="a", finished_at="b",
                  results_dir=None, results=results, write_error=write_error)


def one_of_each() -> Report:
    return report(result(*(Finding(id=s, title=s, severity=s) for s in SEVERITIES)))


@pytest.mark.parametrize(("fail_on", "ids"), [
    ("none", []),
    ("info", ["unknown", "low", "medium", "high", "critical"]),
    ("low", ["low", "medium", "high", "critical"]),
    ("medium", ["medium", "high", "critical"]),
    ("high", ["high", "critical"]),
    ("critical", ["critical"]),
    ("HIGH", ["high", "critical"]),
])
def test_thresholds(fail_on: str, ids: list[str]) -> None:
    assert [f.id for _, f in tripped(one_of_each(), fail_on)] == ids
    expected = ExitCode.POLICY if ids else ExitCode.OK
    assert exit_code(one_of_each(), fail_on) == expected


def test_choices_are_the_documented_ones() -> None:
    assert FAIL_ON_CHOICES == ("none", "info", "low", "medium", "high", "critical")
    for choice in FAIL_ON_CHOICES:
        threshold(choice)


def test_unknown_threshold_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--fail-on must be one of none, info"):
        threshold("severe")
    with pytest.raises(UsageError):
        tripped(one_of_each(), "unknown")


def test_unknown_ranks_lowest_and_vendor_words_map_onto_the_scale() -> None:
    ranks = [severity_rank(s) for s in SEVERITIES]
    assert ranks == sorted(ranks) and len(set(ranks)) == 5
    assert severity_rank("Important") == severity_rank("high")
    assert severity_rank("moderate") == severity_rank("medium")
    assert severity_rank("info") == severity_rank("low")
    assert severity_rank("\x1b[31mbogus") == severity_rank("unknown")


def test_suppressed_findings_never_count() -> None:
    quiet = report(result(Finding(id="c", title="t", severity="critical", suppressed="ok")))
    assert tripped(quiet, "info") == []
    assert exit_code(quiet, "info") == ExitCode.OK
    mixed = report(result(Finding(id="c", title="t", severity="critical", suppressed="ok"),
                          Finding(id="l", title="t", severity="low")))
    assert [f.id for _, f in tripped(mixed, "low")] == ["l"]
    assert exit_code(mixed, "medium") == ExitCode.OK


def test_tripped_keeps_result_and_report_order() -> None:
    first = result(Finding(id="a", title="t", severity="high"), target="one")
    second = result(Finding(id="b", title="t", severity="critical"),
                    Finding(id="c", title="t", severity="low"), target="two")
    hits = tripped(report(first, second), "high")
    assert [(r.target, f.id) for r, f in hits] == [("one", "a"), ("two", "b")]


def test_failure_wins_over_policy() -> None:
    bad = report(result(Finding(id="a", title="t", severity="critical"), successful=False),
                 result(Finding(id="b", title="t", severity="critical")))
    assert exit_code(bad, "low") == ExitCode.SCAN_FAILED
    assert int(ExitCode.SCAN_FAILED) == 1
    assert exit_code(bad, "none") == ExitCode.SCAN_FAILED
    # a failed target's partial findings are still listed, for the summary line
    assert len(tripped(bad, "critical")) == 2


def test_unwritten_report_is_a_failure() -> None:
    clean = report(result(), write_error="disk full")
    assert exit_code(clean, "none") == ExitCode.SCAN_FAILED


def test_clean_run_and_empty_run_pass() -> None:
    assert exit_code(report(result()), "info") == ExitCode.OK
    assert int(ExitCode.OK) == 0
    assert exit_code(report(), "info") == ExitCode.OK
    assert exit_code(one_of_each(), "none") == ExitCode.OK
    assert int(ExitCode.POLICY) == 3
