"""The ``--fail-on`` policy gate: which findings trip it, and the run's exit code.

Severities rank ``unknown < low < medium < high < critical``: like Trivy, a finding whose
severity nobody stated ranks lowest. ``--fail-on info`` trips on any finding, unknown severity
included (the common scale has no "info": scanners' "info" is mapped to low); ``--fail-on low``
does not count unknown ones; ``--fail-on none`` never trips. Suppressed findings never count.
Findings of a failed target count too (the run exits 1 anyway, but the summary says how many
tripped), and what is shown (``--severity``, ``--quiet``) never changes the gate.
"""

from __future__ import annotations

from atomicscan.errors import ExitCode, UsageError
from atomicscan.results import Finding, Report, ScanResult, common_severity

#: Values ``--fail-on`` accepts, loosest first.
FAIL_ON_CHOICES = ("none", "info", "low", "medium", "high", "critical")

_RANK = {"unknown": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_THRESHOLD: dict[str, int | None] = {
    "none": None, "info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4,
}


def severity_rank(severity: str) -> int:
    """Where a finding's severity stands; words off the common scale are mapped onto it."""
    return _RANK[common_severity(severity)]


def threshold(fail_on: str) -> int | None:
    """The lowest rank that trips ``fail_on`` (None: nothing does); UsageError if unknown."""
    try:
        return _THRESHOLD[fail_on.strip().lower()]
    except KeyError:
        raise UsageError(f"--fail-on must be one of {', '.join(FAIL_ON_CHOICES)}, "
                         f"not {fail_on[:40]!r}") from None


def trips(finding: Finding, fail_on: str) -> bool:
    """Whether ``finding`` on its own trips the gate."""
    lowest = threshold(fail_on)
    return (lowest is not None and finding.suppressed is None
            and severity_rank(finding.severity) >= lowest)


def tripped(report: Report, fail_on: str) -> list[tuple[ScanResult, Finding]]:
    """Every unsuppressed finding at or above ``fail_on``, with its result, in report order."""
    if threshold(fail_on) is None:
        return []
    return [(result, finding) for result in report.results for finding in result.findings
            if trips(finding, fail_on)]


def exit_code(report: Report, fail_on: str) -> ExitCode:
    """1 when any scan failed or report.json was not written (a failure wins over policy),
    else 3 when the gate tripped, else 0."""
    if report.failed or report.write_error:
        return ExitCode.SCAN_FAILED
    if tripped(report, fail_on):
        return ExitCode.POLICY
    return ExitCode.OK
