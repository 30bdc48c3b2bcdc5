"""The default merge of one run's results into its report (``trylast``: plugins go first)."""

from __future__ import annotations

from collections.abc import Sequence

from atomicscan import stamps
from atomicscan.hookspecs import hookimpl
from atomicscan.results import Report, ScanResult
from atomicscan.scanners import Scanner


@hookimpl(trylast=True)
def atomicscan_merge_results(
    results: Sequence[ScanResult], scanner: Scanner, scan_type: str, run_id: str,
    started_at: str,
) -> Report | None:
    # The run's own times: a cached result keeps the time of the scan that produced it.
    now = stamps.iso_stamp()
    return Report(
        run_id=run_id,
        scanner=scanner.name,
        scan_type=scan_type,
        started_at=started_at or min((r.started_at for r in results), default=now),
        finished_at=now,
        results_dir=None,
        results=tuple(results),
    )
