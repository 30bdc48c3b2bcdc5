"""The live progress display on a terminal's stderr: done / total, current, failures, time."""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from atomicscan.results import ScanResult
from atomicscan.safetext import printable


class LiveProgress:
    """Fed by the scan run's callbacks (from worker threads too); shown only on a terminal."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
            # The current target's name is hostile text: shown escaped, never as markup.
            TextColumn("{task.fields[current]}", markup=False),
            console=console, transient=True,
        )
        self._task: TaskID | None = None
        self._failed = 0
        self._lock = threading.Lock()

    def __enter__(self) -> LiveProgress:
        self._progress.__enter__()
        self._task = self._progress.add_task("scan", total=None, failed=0, current="")
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._progress.__exit__(kind, value, traceback)

    def total(self, count: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, total=count)

    def result(self, result: ScanResult) -> None:
        with self._lock:
            self._failed += not result.successful
            if self._task is not None:
                self._progress.update(self._task, advance=1, failed=self._failed,
                                      current=printable(result.target))
