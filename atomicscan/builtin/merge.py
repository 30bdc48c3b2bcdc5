"""The default merge of one run's results into its report (``trylast``: plugins go first)."""

from __future__ import annotations

from collections.abc import Sequence

from atomicscan import stamps
from atomicscan.hookspecs import hookimpl
from atomicscan.results import Report, ScanResult
from atomicscan.scanners import Scanner


@hookimpl(trylast=True)
def atomicscan_merge_results(
    results: Sequence[ScanResult], scanner: Scanner, scan_type: str, run_id: str
) -> Report | None:
    started = min((r.started_at for r in results), default="")
    finished = max((r.finished_at for r in results), default="")
    now = stamps.iso_stamp()
    return Report(
        run_id=run_id,
        scanner=scanner.name,
        scan_type=scan_type,
        started_at=started or now,
        finished_at=finished or now,
        results_dir=None,
        results=tuple(results),
    )
