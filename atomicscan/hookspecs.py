"""The public plugin API of atomicscan: every hook a plugin may implement.

A plugin is any module or object with functions marked ``@atomicscan.hookimpl`` (import it
``from atomicscan import hookimpl``) whose names match the specs below. Built-in scanners and
runtimes are plugins of exactly this kind; third-party plugins are found through the
``atomicscan`` entry-point group.

pluggy calls every implementation, so its rules hold: an implementation may take fewer
arguments than its spec (``def atomicscan_process_result(result)``), ``tryfirst`` and
``trylast`` order the calls, ``wrapper=True`` and ``hookwrapper=True`` implementations wrap
them, and ``pm.trace`` sees every call. Each implementation is called on its own: one that
raises is named in a warning and in ``atomicscan plugins``, and the others still run. A
plugin that pluggy refuses (a wrapper that is not a generator, a marked function whose name
is not one of these hooks) is reported in one line and not loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from atomicscan.context import ResultContext, RunContext
    from atomicscan.formats import FormatRegistry
    from atomicscan.results import Report, ScanResult
    from atomicscan.runtime import RuntimeRegistry
    from atomicscan.scanners import Scanner, ScannerRegistry

PROJECT = "atomicscan"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def atomicscan_add_scanners(registry: ScannerRegistry) -> None:
    """Add scanners with ``registry.add(Scanner(...))``.

    Called once, when the plugin manager is set up, for every plugin. Adding a name that is
    already registered raises :class:`atomicscan.DuplicateScannerError`.
    """


@hookspec
def atomicscan_add_runtimes(registry: RuntimeRegistry) -> None:
    """Add container runtimes with ``registry.add(name, factory)``.

    ``factory`` is called with no arguments when that runtime is first needed and returns an
    object implementing :class:`atomicscan.Runtime`. Called once per plugin. A
    runtime whose CLI lists its containers and images can start from
    :class:`atomicscan.ListingRuntime`, which podman and docker share: it resolves
    all of a run's references against one listing of each kind, and gets the configurations
    of a batch's targets for ``/scanmeta`` with one inspect per kind, reusing what it
    inspected before.
    """


@hookspec
def atomicscan_add_formats(registry: FormatRegistry) -> None:
    """Add output formats with ``registry.add(OutputFormat(...))``.

    Called once per plugin. Each format can then be asked for with ``-o NAME[=PATH]`` and is
    listed by ``atomicscan --list-formats``. A run format (``write_run``) returns one
    document for the whole run; a target format (``write_target``) returns one per target.
    A writer returns bytes and never prints: raise :class:`atomicscan.FormatError` with one
    line when the document can't be written.
    """


@hookspec
def atomicscan_process_result(
    result: ScanResult, scanner: Scanner, context: ResultContext
) -> ScanResult | None:
    """Post-process the result of ``scanner`` on one target.

    Called once per target, after the scanner's output was read and checked. ``context``
    holds the target, the runtime that holds it and what the run was asked for
    (``--scanner-args``, ``--remediate``); take it only if you need it. Return a new
    result (``result.replace(...)``) to change it, or ``None`` to leave it as it is. The
    implementations form a chain: each one receives what the previous one returned, in
    pluggy's call order (``tryfirst`` first, ``trylast`` last). One that raises is skipped,
    and its one-line message is added to the result's ``notes``. A wrapper wraps the whole
    chain: it is called with the first ``result``, its ``yield`` gives a list holding the
    chain's last result, and returning a list holding another result replaces it.
    """


@hookspec
def atomicscan_describe_result(result: ScanResult) -> str | None:
    """A short phrase about one target's result for the human summary, or ``None``.

    The summary line of a target joins every plugin's phrase, in call order, and ends with
    its number of findings: ``ok image debian:12 (podman, 1a2b3c4d5e6f): Debian GNU/Linux 12;
    88 packages (88 deb); 0 findings``. The built-in plugins describe the OS and packages
    and the rule counts; a plugin describes what its own scanner adds. The phrase is shown
    as plain text, with control characters escaped. One that raises is named in a warning.
    """


@hookspec(firstresult=True)
def atomicscan_merge_results(
    results: Sequence[ScanResult], scanner: Scanner, scan_type: str, run_id: str,
    started_at: str,
) -> Report | None:
    """Merge the results of one run into the report that is printed and written.

    ``started_at`` is when the run started (ISO 8601, UTC): a cached result keeps the time
    of the scan that produced it, so the results' times don't date the run.

    The first non-``None`` result wins; an implementation that raises is skipped and the
    next one is asked. The built-in merge is ``trylast``: implement this hook to reshape the
    report (add totals, drop fields, sort differently).
    """


@hookspec
def atomicscan_run_finished(report: Report, context: RunContext) -> None:
    """Act on a run's final report: record it, send it, archive it.

    Called once per scan run, as its last step: after ``report.json`` was written (in
    ``report.results_dir``; ``report.write_error`` says if it could not be), before anything
    is printed. Every implementation is called, in call order. ``context.options``
    holds the plugin options given on the command line. To say that this part failed, raise
    :class:`atomicscan.AtomicscanError` with one line that tells the user how to redo it: the
    line is printed as an error, the run exits 1, and the other implementations still run.
    """
