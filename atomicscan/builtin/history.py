"""The built-in history plugin: records every finished run in the history database.

Blocked like any plugin (``ATOMICSCAN_BLOCK_PLUGINS``), and for one run by ``--no-history``.
A run that can't be recorded is not lost: its results are on disk, and the error line says
the ``atomicscan history import`` command that records it later.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import math
import os
import shlex
import threading
from collections.abc import Mapping

from atomicscan import rootless
from atomicscan.context import RunContext
from atomicscan.errors import AtomicscanError
from atomicscan.hookspecs import hookimpl
from atomicscan.results import Report
from atomicscan.runtime import RuntimeRegistry
from atomicscan.safetext import printable

#: Seconds to wait for the database (connecting, or a lock another writer holds).
TIMEOUT_ENV = "ATOMICSCAN_DB_TIMEOUT"
DEFAULT_TIMEOUT = 10.0


def db_timeout(environ: Mapping[str, str] | None = None) -> float:
    """$ATOMICSCAN_DB_TIMEOUT as seconds, or the default when unset or not a number."""
    text = (os.environ if environ is None else environ).get(TIMEOUT_ENV, "")
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if math.isfinite(value) and value > 0 else DEFAULT_TIMEOUT


def _redo(report: Report, given: str | None, reason: str) -> str:
    """The one line that says the run was not recorded, and how to record it later."""
    from atomicscan.history.dburl import redacted

    head = f"the run was not recorded in the history ({reason})"
    if report.write_error or report.results_dir is None:
        missing = report.write_error or "the run has no results directory"
        return f"{head}; its report file is missing too ({missing}), so it can't be imported"
    argv = ["atomicscan", "history", "import"]
    if given:  # a URL from $ATOMICSCAN_DB or /etc/atomicscan/db-url is found again the same way
        argv += ["--db", redacted(given)]
    argv.append(str(report.results_dir / "report.json"))
    return f"{head}; record it later with: {shlex.join(argv)}"


_preloading: list[threading.Thread] = []


def _import_store() -> None:
    # A failure here is reported by the recording itself, which imports the store again.
    with contextlib.suppress(Exception):
        importlib.import_module("atomicscan.history.store")


def _preload() -> None:
    """Import the store (SQLAlchemy, the schema: a quarter of a second) in the background
    while the scanners run, so a run's recording costs its database work only."""
    if _preloading or rootless.needs_join():
        # A user's run joins podman's user namespace after its runtimes are known, which
        # the kernel allows only while the process has a single thread.
        return
    thread = threading.Thread(target=_import_store, name="history-preload", daemon=True)
    _preloading.append(thread)
    thread.start()
    # A short command (--list, cleanup) must not end with an import half done.
    atexit.register(thread.join, 5.0)


# The runtimes are asked for when a run resolves its targets: the scan has begun.
@hookimpl
def atomicscan_add_runtimes(registry: RuntimeRegistry) -> None:
    del registry
    _preload()


@hookimpl
def atomicscan_run_finished(report: Report, context: RunContext) -> None:
    for thread in _preloading:
        thread.join()
    # Imported here: the database libraries are only loaded by runs that record.
    from atomicscan.history.dburl import resolve_url, scrub
    from atomicscan.history.store import HistoryError, Store

    given = context.options.get("history.db") or None
    url = resolve_url(given)
    try:
        with Store.open(url, timeout=db_timeout()) as store:
            store.record(report)
    except HistoryError as exc:
        raise AtomicscanError(printable(_redo(report, given, exc.message))) from None
    except Exception as exc:  # noqa: BLE001 -- any failure must leave the run's one line
        reason = scrub(f"{type(exc).__name__}: {exc}", [url]).splitlines()[0]
        raise AtomicscanError(printable(_redo(report, given, reason))) from None
