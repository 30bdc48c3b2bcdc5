"""The public plugin API of atomicscan: every hook a plugin may implement.

A plugin is any module or object with functions marked ``@atomicscan.hookimpl`` whose names
match the specs below. Built-in scanners and runtimes are plugins of exactly this kind;
third-party plugins are found through the ``atomicscan`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
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
    already registered raises :class:`atomicscan.errors.DuplicateScannerError`.
    """


@hookspec
def atomicscan_add_runtimes(registry: RuntimeRegistry) -> None:
    """Add container runtimes with ``registry.add(name, factory)``.

    ``factory`` is called with no arguments when that runtime is first needed and returns an
    object implementing :class:`atomicscan.runtime.Runtime`. Called once per plugin. A
    runtime whose CLI lists its containers and images can start from
    :class:`atomicscan.listing.ListingRuntime`, which podman and docker share: it resolves
    all of a run's references against one listing of each kind, and gets the configurations
    of a batch's targets for ``/scanmeta`` with one inspect per kind, reusing what it
    inspected before.
    """


@hookspec
def atomicscan_process_result(result: ScanResult, scanner: Scanner) -> ScanResult | None:
    """Post-process the result of ``scanner`` on one target.

    Called once per target, after the scanner's output was read and checked. Return a new
    result (``result.replace(...)``) to change it, or ``None`` to leave it as it is. The
    implementations form a chain: each one receives what the previous one returned, in
    pluggy's call order (``tryfirst`` first, ``trylast`` last).
    """


@hookspec(firstresult=True)
def atomicscan_merge_results(
    results: Sequence[ScanResult], scanner: Scanner, scan_type: str, run_id: str
) -> Report | None:
    """Merge the results of one run into the report that is printed and written.

    The first non-``None`` result wins. The built-in merge is ``trylast``: implement this
    hook to reshape the report (add totals, drop fields, sort differently).
    """
