"""Pruning old results so /var/lib/atomicscan can't fill a disk the way atomic's results did."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from atomicscan import stamps

log = logging.getLogger(__name__)

def prune(scanner_dir: Path, *, keep: int, max_age_days: float | None,
          current: Path | None = None) -> list[Path]:
    """Remove all but the ``keep`` newest runs, and runs older than ``max_age_days``."""
    if not scanner_dir.is_dir():
        return []
    runs = sorted((d for d in scanner_dir.iterdir()
                   if d.is_dir() and not d.is_symlink()
                   # Named as a run is named: nothing else in the folder is touched.
                   and stamps.is_results_dir_name(d.name)),
                  key=lambda d: d.name, reverse=True)
    cutoff = None if max_age_days is None else time.time() - max_age_days * 86400
    removed: list[Path] = []
    for index, run in enumerate(runs):
        if run == current:
            continue
        too_many = index >= max(keep, 1)
        too_old = cutoff is not None and run.stat().st_mtime < cutoff
        if too_many or too_old:
            shutil.rmtree(run, ignore_errors=True)
            removed.append(run)
    if removed:
        log.info("pruned %d old result runs in %s", len(removed), scanner_dir)
    return removed
