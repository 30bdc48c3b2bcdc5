"""One scan run, as a list of steps: check, resolve, plan, run batches, collect results.

Each step lives in a small module of its own (:mod:`atomicscan.resolve`,
:mod:`atomicscan.plan`, :mod:`atomicscan.batch`, :mod:`atomicscan.collect`); this module
keeps the order, the checks that must pass before anything is mounted, and the names
callers import (``ScanRun``, ``ScanRequest``, ...).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import stat
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from atomicscan import (
    cache,
    cleanup,
    collect,
    hostpaths,
    retention,
    rootless,
    stamps,
    suppress,
)
from atomicscan.batch import (
    DEFAULT_SCANOUT_BYTES,
    HOST_FILE_MAX_BYTES,
    SCANNER_UID,
    SCANOUT_SPARE_INODES,
    BatchJob,
    BatchRunner,
    default_jobs,
    run_batches,
)
from atomicscan.builtin.definitions import builtin_scanners_dir
from atomicscan.collect import MAX_ERROR_CHARS, failed_result, result_from_output
from atomicscan.collect import findings_of as _findings
from atomicscan.context import RunContext
from atomicscan.errors import AtomicscanError, UnknownScannerError, UsageError
from atomicscan.host import Host, RealHost
from atomicscan.plan import DEFAULT_BATCH_SIZE, Plan, make_plan, scanner_image_ids
from atomicscan.plugins import Plugins
from atomicscan.request import DEFAULT_TIMEOUT, ScanRequest, check_timeout, parse_scanner_args
from atomicscan.resolve import DEFAULT_RUNTIME, Groups, Resolution
from atomicscan.resolve import resolve as resolve_targets
from atomicscan.resolve import rootfs_targets as _rootfs_targets
from atomicscan.results import Report, ScanResult
from atomicscan.resultsdir import (
    DEFAULT_RESULTS_ROOT,
    ResultsWriteError,
    make_results_dir,
    results_directory,
    results_root,
    scanner_results_dir,
    share_like_root,
    shared_bits,
    write_private,
)
from atomicscan.scanners import Scanner, ScannerRegistry, name_problem
from atomicscan.state import RunState, new_run_id

__all__ = [
    "DEFAULT_BATCH_SIZE", "DEFAULT_KEEP", "DEFAULT_RESULTS_ROOT", "DEFAULT_RUNTIME",
    "DEFAULT_SCANOUT_BYTES", "DEFAULT_TIMEOUT", "HOST_FILE_MAX_BYTES", "MAX_ERROR_CHARS",
    "SCANNER_UID", "SCANOUT_SPARE_INODES", "ResultsWriteError", "ScanRequest", "ScanRun",
    "_findings", "_rootfs_targets", "check_timeout", "choose_scanner", "default_jobs",
    "failed_result", "is_builtin", "make_results_dir", "parse_scanner_args",
    "result_from_output", "results_directory", "scanner_results_dir", "share_like_root",
    "shared_bits", "write_private",
]

log = logging.getLogger(__name__)

#: Runs kept per scanner in the results directory unless --keep says otherwise.
DEFAULT_KEEP = 100

Progress = Callable[[str], None]
ResultSink = Callable[[ScanResult], None]


def choose_scanner(registry: ScannerRegistry, name: str | None) -> Scanner:
    """The named scanner; without a name, the only one installed."""
    if name:
        return registry.get(name)
    if len(registry) == 1:
        return next(iter(registry))
    raise UnknownScannerError(
        f"choose a scanner with --scanner NAME; installed: {registry.names_text()}"
    )


def is_builtin(scanner: Scanner) -> bool:
    """A scanner defined by this installation's own ``scanners/`` folder."""
    if not scanner.origin.startswith("/"):
        return False
    try:
        return Path(scanner.origin).resolve().is_relative_to(builtin_scanners_dir().resolve())
    except OSError:
        return False


class ScanRun:
    """A single run of one scanner over a list of targets, in concurrent batches.

    ``host`` mounts and pins paths on the host; fast tests pass a fake one.
    """

    def __init__(self, plugins: Plugins, request: ScanRequest,
                 progress: Progress | None = None, on_result: ResultSink | None = None,
                 on_total: Callable[[int], None] | None = None, *,
                 host: Host | None = None) -> None:
        self.plugins = plugins
        self.request = request
        self.progress = progress or (lambda message: None)
        self.on_result = on_result or (lambda result: None)
        self.on_total = on_total or (lambda total: None)
        self.host: Host = host or RealHost()
        self.scanner = choose_scanner(plugins.scanners, request.scanner)
        self.scan_type = self.scanner.scan_type(request.scan_type).name
        self.run_id = new_run_id()
        self.timeout = check_timeout(request.timeout)
        #: Batches scanned at once; the plan sizes batches for this many.
        self.jobs = request.jobs or default_jobs()
        self.cancel = threading.Event()

    def check_rootless_limits(self) -> None:
        """A user's scanner gets cgroup limits only where the host delegates them; elsewhere
        its memory is bounded per process only, which the user must accept by name."""
        if rootless.rootless() and not self.request.allow_rlimits_only \
                and not rootless.cgroup_limits_apply():
            raise UsageError(
                "as a user on this host a scanner's memory can't be limited as a whole (no "
                "cgroup v2 memory and pids controllers are delegated to you); add "
                "--allow-rlimits-only to scan with per-process limits only "
                "(docs/rootless.md#limits)")

    def execute(self) -> Report:
        """The run, step by step; nothing is mounted before every check has passed."""
        started = stamps.iso_stamp()
        self.host.require_root()
        self.check_rootless_limits()
        self.check_host_files()
        self.check_remediate_trust()
        root = results_root(self.request.output_dir)
        results_dir = results_directory(root, self.scanner.name)
        resolution = self.resolve()
        self.check_remediate_targets(resolution.groups)
        scanner_ids = scanner_image_ids(resolution.groups, self.scanner)
        self.clean_dead_runs()
        make_results_dir(root, results_dir)
        self.on_total(len(resolution.targets))
        plan = self.plan(resolution, scanner_ids, cache.cache_dir(root))
        for result in plan.cached:
            self.on_result(result)
        fresh = self.run_batches(plan, results_dir)
        collect.keep_in_cache(fresh, plan, cache.cache_dir(root))
        results = collect.process(self.plugins, [*plan.cached, *fresh], self.scanner,
                                  collect.contexts(resolution, self.request.scanner_args,
                                                   remediate=self.request.remediate,
                                                   progress=self.progress))
        results = collect.in_target_order(results, resolution.targets)
        results = collect.with_scanner_images(results, scanner_ids)
        report = collect.merge(self.plugins, results, self.scanner, self.scan_type,
                               self.run_id, results_dir, self.request.scanner_args, started)
        if self.request.ignores is not None:
            # After the cache kept what the scanner said: a suppression removed from the
            # file stops applying to cached results too.
            report = suppress.apply(report, self.request.ignores)
        report = collect.write_report(report, root, results_dir)
        if report.write_error is None:
            # The report is still returned (and printed) when its file is missing.
            self.prune(root, results_dir)
        return self.finish(report)

    # -- the steps ------------------------------------------------------------------------

    def resolve(self) -> Resolution:
        """Targets grouped by the runtime that holds them (and runs their scanner)."""
        return resolve_targets(self.request, self.plugins.runtimes)

    def clean_dead_runs(self) -> None:
        cleaned = cleanup.clean_stale(self.plugins.runtimes)
        if not cleaned.empty:
            self.progress(f"cleaned up after a dead run: {json.dumps(cleaned.to_json())}")

    def plan(self, resolution: Resolution, scanner_ids: Mapping[str, str],
             cache_root: Path) -> Plan:
        return make_plan(resolution.groups, self.scanner, self.scan_type, scanner_ids,
                         cache_root, scanner_args=self.request.scanner_args,
                         use_cache=self.request.use_cache, remediate=self.request.remediate,
                         batch_size=self.request.batch_size,
                         jobs=self.jobs)

    def run_batches(self, plan: Plan, results_dir: Path) -> list[ScanResult]:
        """Fresh results of the plan's batches, under a run state of their own."""
        if not plan.batches:
            return []
        job = BatchJob(scanner=self.scanner, scan_type=self.scan_type, run_id=self.run_id,
                       timeout=self.timeout, scanner_args=self.request.scanner_args,
                       remediate=self.request.remediate,
                       memory_bytes=self.request.memory_bytes,
                       allow_host_rootfs=self.request.allow_host_rootfs)
        with RunState.create(self.run_id) as run_state:
            runner = BatchRunner(job, self.host, run_state, results_dir,
                                 progress=self.progress, cancel=self.cancel)
            return run_batches(plan.batches, runner.scan,
                               jobs=self.jobs, cancel=self.cancel,
                               on_result=self.on_result)

    def finish(self, report: Report) -> Report:
        """The plugins' ``atomicscan_run_finished`` (the history records the run here);
        what failed is kept in the report for the caller to say."""
        context = RunContext(options=self.request.plugin_options, progress=self.progress)
        failures = self.plugins.run_finished(report, context)
        return dataclasses.replace(report, finish_errors=tuple(failures)) if failures else report

    def prune(self, root: Path, results_dir: Path) -> None:
        keep = self.request.keep if self.request.keep is not None else DEFAULT_KEEP
        retention.prune(root / self.scanner.name, keep=keep,
                        max_age_days=self.request.max_age_days, current=results_dir)

    # -- checks before anything is mounted --------------------------------------------------

    def check_host_files(self) -> None:
        """Every host path the scan takes must exist, and be one a scanner may see, before
        anything is mounted. Paths are judged after resolving them (symlinks, ``..``)."""
        for source, _destination in self.scanner.host_mounts:
            try:
                hostpaths.check_host_path(source, what=f"scanner {self.scanner.name}: host path")
            except hostpaths.HostPathError as exc:
                raise AtomicscanError(f"{exc} (from {self.scanner.origin})") from None
        for name in self.scanner.scan_type(self.scan_type).host_files:
            value = self.request.scanner_args.get(name)
            if value is None:
                continue
            if name_problem(name) is not None:  # it names a directory of ours
                raise AtomicscanError(f"scanner {self.scanner.name}: host file argument "
                                      f"{name!r} is not a valid name")
            real = hostpaths.check_host_path(value, what=f"--scanner-args {name}=")
            try:
                info = real.stat()
            except OSError as exc:
                raise UsageError(f"--scanner-args {name}={value}: {exc.strerror}") from None
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"--scanner-args {name}={value}: not a regular file")
            if info.st_size > HOST_FILE_MAX_BYTES:
                raise UsageError(f"--scanner-args {name}={value}: over the "
                                 f"{HOST_FILE_MAX_BYTES}-byte limit for host files")

    def check_remediate_targets(self, groups: Groups) -> None:
        if not self.request.remediate:
            return
        for _runtime, targets in groups.values():
            for target in targets:
                if target.type != "image":
                    raise UsageError(f"--remediate works on images only; {target.ref} is "
                                     f"a {target.type}")

    def check_remediate_trust(self) -> None:
        """``--remediate`` runs the scanner's fix script as root in an image build: only for
        built-in scanners, or scanners the user names as trusted."""
        if not self.request.remediate or is_builtin(self.scanner):
            return
        if self.scanner.name not in self.request.trusted_scanners:
            raise UsageError(
                f"--remediate runs scanner {self.scanner.name}'s remediation.sh as root in "
                f"the new image, and {self.scanner.name} is not built in (from "
                f"{self.scanner.origin}); add --trust-scanner {self.scanner.name} to allow it")
