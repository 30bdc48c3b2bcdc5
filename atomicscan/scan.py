"""One scan run: resolve targets, mount them read-only, run the scanner, read and merge results."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomicscan import cache, cleanup, mounts, retention
from atomicscan.errors import (
    AmbiguousTargetError,
    AtomicscanError,
    RuntimeUnavailableError,
    ScannerImageMissingError,
    TargetNotFoundError,
    UnknownScannerError,
    UsageError,
)
from atomicscan.plugins import Plugins
from atomicscan.proc import Cancelled, Completed
from atomicscan.remediate import FIX_SCRIPT, build_remediated
from atomicscan.results import Finding, Report, ScanResult, common_severity
from atomicscan.runtime import RUN_LABEL, Bind, Runtime, ScannerContainer, Target, first_line
from atomicscan.scanners import Scanner, ScannerRegistry
from atomicscan.scanout import OutputLimits, read_target_output
from atomicscan.state import RunState, new_run_id, run_label_value
from atomicscan.targets import not_found, rootfs_key

log = logging.getLogger(__name__)

DEFAULT_RESULTS_ROOT = Path("/var/lib/atomicscan")
DEFAULT_RUNTIME = "podman"
SCANNER_UID = 65534
#: Size of the tmpfs behind /scanout: a scanner can never fill the host's disk.
DEFAULT_SCANOUT_BYTES = 512 * 1024 * 1024

#: Targets per scanner container: start-up is paid per batch (see docs/benchmarks.md).
DEFAULT_BATCH_SIZE = 8
#: Runs kept per scanner in the results directory unless --keep says otherwise.
DEFAULT_KEEP = 100

Progress = Callable[[str], None]
ResultSink = Callable[[ScanResult], None]


def default_jobs() -> int:
    """Concurrent batches: twice the cores, capped so a big host doesn't start dozens of
    containers at once. A batch mostly waits on podman, storage locks and mounts, so one
    job per core leaves the cores idle (measured in docs/benchmarks.md)."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def failed_result(target: Target, scanner: Scanner, scan_type: str, error: str) -> ScanResult:
    stamp = now()
    return ScanResult(target=target.ref, target_id=target.id, target_type=target.type,
                      runtime=target.runtime, scanner=scanner.name, scan_type=scan_type,
                      successful=False, started_at=stamp, finished_at=stamp, error=error)


@dataclass(frozen=True)
class ScanRequest:
    """What the user asked for, as the command line parsed it."""

    targets: tuple[str, ...] = ()
    rootfs: tuple[Path, ...] = ()
    scanner: str | None = None
    scan_type: str | None = None
    scanner_args: Mapping[str, str] = field(default_factory=dict)
    runtime: str | None = None
    output_dir: Path | None = None
    timeout: float | None = None
    remediate: bool = False
    images: bool = False
    """Every image of the runtime(s), as --images and --all ask."""
    containers: bool = False
    """Every container, running and stopped, as --containers and --all ask."""
    include_dangling: bool = False
    jobs: int | None = None
    batch_size: int | None = None
    use_cache: bool = True
    keep: int | None = None
    max_age_days: float | None = None


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def choose_scanner(registry: ScannerRegistry, name: str | None) -> Scanner:
    """The named scanner; without a name, the only one installed."""
    if name:
        return registry.get(name)
    if len(registry) == 1:
        return next(iter(registry))
    raise UnknownScannerError(
        f"choose a scanner with --scanner NAME; installed: {registry.names_text()}"
    )


def parse_scanner_args(text: str | None) -> dict[str, str]:
    """``k=v,k2=v2`` as atomic scan took it."""
    parsed: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--scanner-args: {item!r} is not KEY=VALUE")
        parsed[key.strip()] = value.strip()
    return parsed


def results_directory(base: Path | None, scanner: str) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H-%M-%S-%f")
    root = base or Path(os.environ.get("ATOMICSCAN_RESULTS_DIR", str(DEFAULT_RESULTS_ROOT)))
    return root / scanner / stamp


def _rootfs_targets(paths: Sequence[Path]) -> list[Target]:
    targets = []
    for path in paths:
        resolved = path.resolve()
        if not resolved.is_dir():
            raise UsageError(f"--rootfs {path}: not a directory")
        targets.append(Target(ref=str(path), id=str(resolved), type="rootfs", runtime=None,
                              key=rootfs_key(resolved)))
    return targets


def _dedupe(targets: Sequence[Target]) -> list[Target]:
    seen: dict[str, Target] = {}
    for target in targets:
        seen.setdefault(target.key, target)
    return list(seen.values())


def _findings(document: Mapping[str, Any]) -> tuple[Finding, ...]:
    """atomic scan's ``Vulnerabilities`` and ``Results`` entries, as findings."""
    found: list[Finding] = []
    for section in ("Vulnerabilities", "Results"):
        entries = document.get(section) or []
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                continue
            custom = entry.get("Custom") if isinstance(entry.get("Custom"), Mapping) else {}
            details = dict(custom or {})
            title = str(entry.get("Title") or entry.get("title") or entry.get("id") or "")
            raw_severity = str(entry.get("Severity") or entry.get("severity") or "")
            severity = common_severity(raw_severity)
            if raw_severity and raw_severity.lower() != severity:
                details.setdefault("vendor_severity", raw_severity)
            found.append(Finding(
                id=str(entry.get("ID") or entry.get("id") or title or f"{section}-{index}"),
                title=title,
                severity=severity,
                description=str(entry.get("Description") or entry.get("description") or ""),
                details=details,
            ))
    return tuple(found)


def _successful(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def result_from_output(target: Target, scanner: Scanner, scan_type: str, started: str,
                       finished: str, document: Mapping[str, Any] | None, error: str | None,
                       notes: Sequence[str], raw_dir: Path | None) -> ScanResult:
    base = ScanResult(
        target=target.ref, target_id=target.id, target_type=target.type,
        runtime=target.runtime, scanner=scanner.name, scan_type=scan_type,
        successful=False, started_at=started, finished_at=finished,
        notes=tuple(notes), raw_dir=raw_dir,
    )
    if document is None:
        return base.replace(error=error or "the scanner produced no result")
    ok = _successful(document.get("Successful"))
    custom = document.get("Custom")
    return base.replace(
        successful=ok and error is None,
        error=None if ok and error is None else (
            error or str(document.get("Error") or "the scanner reported an unsuccessful scan")),
        findings=_findings(document),
        custom=dict(custom) if isinstance(custom, Mapping) else {},
    )


class ScanRun:
    """A single run of one scanner over a list of targets, in concurrent batches."""

    def __init__(self, plugins: Plugins, request: ScanRequest,
                 progress: Progress | None = None, on_result: ResultSink | None = None,
                 on_total: Callable[[int], None] | None = None) -> None:
        self.plugins = plugins
        self.request = request
        self.progress = progress or (lambda message: None)
        self.on_result = on_result or (lambda result: None)
        self.on_total = on_total or (lambda total: None)
        self.scanner = choose_scanner(plugins.scanners, request.scanner)
        self.scan_type = self.scanner.scan_type(request.scan_type).name
        self.run_id = new_run_id()
        self.unusable: list[str] = []
        self.cancel = threading.Event()
        self.container_args: dict[str, str] = dict(request.scanner_args)
        for name in self.scanner.scan_type(self.scan_type).host_files:
            if name in request.scanner_args:
                self.container_args[name] = self._inside(name)
        if request.remediate:
            self.container_args["remediate"] = "true"

    # -- which runtimes, which targets ---------------------------------------------------

    def _runtimes(self) -> list[Runtime]:
        """The runtimes to look in: the one asked for, or every usable one."""
        registry = self.plugins.runtimes
        if self.request.runtime and self.request.runtime != "all":
            runtime = registry.get(self.request.runtime)
            runtime.check()
            return [runtime]
        usable: list[Runtime] = []
        reasons: list[str] = []
        for name in sorted(registry.names(), key=lambda n: n != DEFAULT_RUNTIME):
            try:
                runtime = registry.get(name)
                runtime.check()
            except RuntimeUnavailableError as exc:
                reasons.append(str(exc))
            else:
                usable.append(runtime)
        if not usable:
            raise RuntimeUnavailableError(
                "no container runtime is usable: " + "; ".join(reasons))
        self.unusable = reasons
        return usable

    def _resolve_one(self, ref: str, runtimes: Sequence[Runtime],
                     resolved: Mapping[str, Mapping[str, Target]]) -> Target:
        found = [resolved[r.name][ref] for r in runtimes if ref in resolved[r.name]]
        if len(found) > 1 and self.request.runtime != "all":
            held = " and ".join(t.runtime or "?" for t in found)
            raise UsageError(f"target {ref!r} exists in both {held}; "
                             "choose one with --runtime")
        if found:
            return found[0]
        skipped = f" (not searched: {'; '.join(self.unusable)})" if self.unusable else ""
        if len(runtimes) == 1:
            error = not_found(ref, runtimes[0].name)
            raise TargetNotFoundError(ref, error.message + skipped)
        names = " or ".join(r.name for r in runtimes)
        raise TargetNotFoundError(
            ref, f"target {ref!r} is neither a container nor an image in {names}; "
                 f"atomicscan never pulls (use --rootfs PATH for a directory){skipped}")

    def resolve(self) -> dict[str, tuple[Runtime, list[Target]]]:
        """Targets grouped by the runtime that holds them (and runs their scanner)."""
        runtimes = self._runtimes()
        groups: dict[str, tuple[Runtime, list[Target]]] = {}
        # All references at once: a runtime answers them with a few listings in total.
        refs = list(dict.fromkeys(self.request.targets))
        try:
            resolved = {r.name: r.resolve_all(refs) if refs else {} for r in runtimes}
        except AmbiguousTargetError:
            # Report the first bad reference in the order given, as one by one would.
            resolved = {r.name: {} for r in runtimes}
            for ref in refs:
                for runtime in runtimes:
                    with contextlib.suppress(TargetNotFoundError):
                        resolved[runtime.name][ref] = runtime.resolve(ref)
                self._resolve_one(ref, runtimes, resolved)
        for ref in self.request.targets:
            target = self._resolve_one(ref, runtimes, resolved)
            runtime = next(r for r in runtimes if r.name == target.runtime)
            groups.setdefault(runtime.name, (runtime, []))[1].append(target)
        if self.request.images or self.request.containers:
            for runtime in runtimes:
                listed = runtime.list_targets(images=self.request.images,
                                              containers=self.request.containers,
                                              dangling=self.request.include_dangling)
                groups.setdefault(runtime.name, (runtime, []))[1].extend(listed)
        rootfs = _rootfs_targets(self.request.rootfs)
        if rootfs:
            # A directory needs no runtime of its own: it joins the first batch.
            runtime = next(iter(groups.values()))[0] if groups else runtimes[0]
            groups.setdefault(runtime.name, (runtime, []))[1].extend(rootfs)
        groups = {name: (runtime, _dedupe(targets))
                  for name, (runtime, targets) in groups.items() if targets}
        if not groups and not (self.request.images or self.request.containers):
            raise UsageError("nothing to scan: give a TARGET (image or container), --rootfs "
                             "PATH, or --images / --containers / --all")
        return groups

    # -- the run -----------------------------------------------------------------------------

    def execute(self) -> Report:
        mounts.require_root()
        self.check_host_files()
        groups = self.resolve()
        if self.request.remediate:
            for _runtime, targets in groups.values():
                for target in targets:
                    if target.type != "image":
                        raise UsageError(f"--remediate works on images only; {target.ref} is "
                                         f"a {target.type}")
        scanner_ids: dict[str, str] = {}
        for name, (runtime, _targets) in groups.items():
            scanner_id = runtime.image_id(self.scanner.image)
            if scanner_id is None:
                raise ScannerImageMissingError(
                    f"scanner image {self.scanner.image} (scanner {self.scanner.name}) is not "
                    f"in {runtime.name}'s storage and atomicscan never pulls; "
                    f"{runtime.build_hint(self.scanner.image)}"
                )
            scanner_ids[name] = scanner_id
        cleaned = cleanup.clean_stale(self.plugins.runtimes)
        if not cleaned.empty:
            self.progress(f"cleaned up after a dead run: {json.dumps(cleaned.to_json())}")
        results_root = self._results_root()
        results_dir = results_directory(results_root, self.scanner.name)
        results_dir.mkdir(parents=True, exist_ok=False)

        total = sum(len(targets) for _runtime, targets in groups.values())
        self.on_total(total)
        cached, batches, keys = self._plan(groups, scanner_ids, cache.cache_dir(results_root))
        for result in cached:
            self.on_result(result)
        fresh: list[ScanResult] = []
        if batches:
            with RunState.create(self.run_id) as run_state:
                fresh = self._run_batches(batches, run_state, results_dir)
        # The cache keeps what the scanner said; plugins shape every result, cached or not,
        # so a plugin installed later applies to old results too.
        for result in fresh:
            key = keys.get((result.runtime or "", result.target_id))
            if key:
                cache.store(cache.cache_dir(results_root), key, result)
        results = [self.plugins.process_result(r, self.scanner) for r in [*cached, *fresh]]
        if self.request.remediate:
            results = [self._remediate(groups, result) for result in results]
        order = {(t.runtime, t.id): i for i, t in enumerate(
            t for _runtime, targets in groups.values() for t in targets)}
        results.sort(key=lambda r: order.get((r.runtime, r.target_id), len(order)))
        report = self.plugins.merge_results(results, self.scanner, self.scan_type, self.run_id)
        report = dataclasses.replace(report, results_dir=results_dir)
        report_file = results_dir / "report.json"
        report_file.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        retention.prune(results_root / self.scanner.name,
                        keep=self.request.keep if self.request.keep is not None else DEFAULT_KEEP,
                        max_age_days=self.request.max_age_days, current=results_dir)
        return report

    def _results_root(self) -> Path:
        return self.request.output_dir or Path(
            os.environ.get("ATOMICSCAN_RESULTS_DIR", str(DEFAULT_RESULTS_ROOT)))

    def _plan(self, groups: Mapping[str, tuple[Runtime, list[Target]]],
              scanner_ids: Mapping[str, str], cache_root: Path,
              ) -> tuple[list[ScanResult], list[tuple[Runtime, list[Target]]],
                         dict[tuple[str, str], str]]:
        """Cached results, the batches still to scan, and each cacheable target's key."""
        host_files = self.scanner.scan_type(self.scan_type).host_files
        size = max(1, self.request.batch_size or DEFAULT_BATCH_SIZE)
        cached: list[ScanResult] = []
        keys: dict[tuple[str, str], str] = {}
        batches: list[tuple[Runtime, list[Target]]] = []
        for name, (runtime, targets) in groups.items():
            todo: list[Target] = []
            for target in targets:
                key = None if self.request.remediate else cache.cache_key(
                    target, self.scanner.name, scanner_ids[name], self.scan_type,
                    self.request.scanner_args, host_files)
                hit = (cache.load(cache_root, key, target)
                       if key and self.request.use_cache else None)
                if hit is not None:
                    cached.append(hit)
                    continue
                if key:
                    keys[(runtime.name, target.id)] = key
                todo.append(target)
            batches += [(runtime, todo[i:i + size]) for i in range(0, len(todo), size)]
        return cached, batches, keys

    def _run_batches(self, batches: Sequence[tuple[Runtime, list[Target]]],
                     run_state: RunState, results_dir: Path) -> list[ScanResult]:
        """Scan batches concurrently; Ctrl-C cancels them all and waits for their cleanup."""
        jobs = max(1, self.request.jobs or default_jobs())
        results: list[ScanResult] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs,
                                                   thread_name_prefix="batch") as pool:
            pending = {
                pool.submit(self._scan_batch, runtime, targets, results_dir, run_state, index)
                for index, (runtime, targets) in enumerate(batches, start=1)
            }
            try:
                while pending:
                    done, pending = concurrent.futures.wait(
                        pending, timeout=0.25, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in done:
                        for result in future.result():
                            self.on_result(result)
                            results.append(result)
            except BaseException:
                self.cancel.set()
                for future in pending:
                    future.cancel()
                concurrent.futures.wait(pending)
                raise
        return results

    def _scan_batch(self, runtime: Runtime, targets: Sequence[Target], results_dir: Path,
                    run_state: RunState, index: int) -> list[ScanResult]:
        """Mount, scan and unmount one batch; a target that fails never fails the others."""
        batch_dir = run_state.directory / f"batch-{index}"
        batch_dir.mkdir(mode=0o700)
        failed: list[ScanResult] = []
        with contextlib.ExitStack() as stack:
            binds: list[Bind] = []
            ready: list[Target] = []
            for target in targets:
                if self.cancel.is_set():
                    raise Cancelled("run cancelled")
                self.progress(f"mounting {target.type} {target.ref} read-only")
                try:
                    if target.type == "rootfs":
                        source = Path(target.id)
                    else:
                        source = stack.enter_context(runtime.mount_rootfs(
                            target, run_state.journal, batch_dir / "work" / target.key))
                    view = stack.enter_context(
                        mounts.readonly_bind(source, batch_dir / "scanin" / target.key))
                except AtomicscanError as exc:
                    # Removed since the listing, or unmountable: this target alone fails.
                    failed.append(failed_result(target, self.scanner, self.scan_type,
                                                f"cannot mount {target.ref}: {exc}"))
                    continue
                binds.append(Bind(view, f"/scanin/{target.key}"))
                ready.append(target)
            if not ready:
                return failed
            binds += self._host_files(batch_dir / "hostfiles")
            binds += [Bind(Path(source), destination)
                      for source, destination in self.scanner.host_mounts]
            binds.append(self._scanmeta(runtime, ready, batch_dir / "meta"))
            scanout = stack.enter_context(mounts.scratch_tmpfs(
                batch_dir / "scanout", DEFAULT_SCANOUT_BYTES, SCANNER_UID, SCANNER_UID))
            binds.append(Bind(scanout, "/scanout", read_only=False))
            container = ScannerContainer(
                name=f"atomicscan-{self.run_id}-{index}",
                image=self.scanner.image,
                args=self.scanner.scan_type(self.scan_type).args,
                binds=tuple(binds),
                env={
                    "ATOMICSCAN_SCAN_TYPE": self.scan_type,
                    "ATOMICSCAN_SCANNER_ARGS": json.dumps(self.container_args),
                    "ATOMICSCAN_TARGETS": json.dumps([
                        {"key": t.key, "target": t.ref, "id": t.id, "type": t.type}
                        for t in ready]),
                },
                labels={RUN_LABEL: run_label_value(self.run_id)},
                capabilities=self.scanner.capabilities,
                user=f"{SCANNER_UID}:{SCANNER_UID}",
                timeout=self.request.timeout,
                cancel=self.cancel,
            )
            started = now()
            self.progress(f"running scanner {self.scanner.name} ({self.scan_type}) on "
                          f"{len(ready)} target(s)")
            completed = self._run_container(runtime, container)
            finished = now()
            return [self._result(target, completed, scanout, results_dir, started, finished)
                    for target in ready] + failed

    def _remediate(self, groups: Mapping[str, tuple[Runtime, list[Target]]],
                   result: ScanResult) -> ScanResult:
        runtime, targets = groups[result.runtime or ""]
        target = next(t for t in targets if t.id == result.target_id)
        fix = result.raw_dir / FIX_SCRIPT if result.raw_dir else None
        if not result.successful or fix is None or not fix.is_file():
            return result.replace(notes=(*result.notes, "no remediation: the scanner left no "
                                         f"{FIX_SCRIPT} for this target"))
        self.progress(f"building the remediated image of {target.ref}")
        try:
            tag = build_remediated(runtime, target, fix)
        except AtomicscanError as exc:
            return result.replace(successful=False, error=f"remediation failed: {exc}")
        return result.replace(remediated_image=tag)

    def _scanmeta(self, runtime: Runtime, targets: Sequence[Target], directory: Path) -> Bind:
        """/scanmeta/targets.json: each target's identity and configuration, read-only."""
        directory.mkdir(mode=0o755)
        configs = runtime.target_configs([t for t in targets if t.type != "rootfs"])
        entries = [
            {"key": t.key, "target": t.ref, "id": t.id, "type": t.type, "runtime": t.runtime,
             "names": list(t.names), "config": configs.get(t.key)}
            for t in targets
        ]
        meta = directory / "targets.json"
        meta.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
        meta.chmod(0o444)
        return Bind(directory, "/scanmeta")

    def check_host_files(self) -> None:
        """Every host file the scan type takes must exist before anything is mounted."""
        for source, _destination in self.scanner.host_mounts:
            if not Path(source).exists():
                raise AtomicscanError(
                    f"scanner {self.scanner.name} mounts host path {source}, which does not "
                    f"exist (from {self.scanner.origin})")
        for name in self.scanner.scan_type(self.scan_type).host_files:
            value = self.request.scanner_args.get(name)
            if value is not None and not Path(value).is_file():
                raise UsageError(f"--scanner-args {name}={value}: no such file")

    def _inside(self, name: str) -> str:
        return f"/scanhost/{name}/{Path(self.request.scanner_args[name]).name}"

    def _host_files(self, directory: Path) -> list[Bind]:
        """Copies of the host files the scan needs, readable by the scanner's user, read-only.

        A copy (not a bind of the original) so the scanner's uid can read it whatever the
        original's permissions, and so it can't see the file's neighbours.
        """
        binds: list[Bind] = []
        for name in self.scanner.scan_type(self.scan_type).host_files:
            value = self.request.scanner_args.get(name)
            if value is None:
                continue
            source = Path(value)
            copy = directory / name / source.name
            copy.parent.mkdir(parents=True, mode=0o755)
            shutil.copyfile(source, copy)
            copy.chmod(0o444)
            binds.append(Bind(copy, self._inside(name)))
        return binds

    def _run_container(self, runtime: Runtime, container: ScannerContainer) -> Completed:
        try:
            completed = runtime.run_scanner(container)
        except BaseException:
            runtime.remove_container(container.name)
            raise
        if completed.timed_out:
            runtime.remove_container(container.name)
        elif completed.returncode != 0:
            log.info("scanner exited %d: %s", completed.returncode, completed.stderr[-2000:])
        return completed

    def _result(self, target: Target, completed: Completed, scanout: Path, results_dir: Path,
                started: str, finished: str) -> ScanResult:
        raw_dir = results_dir / target.key
        output = read_target_output(scanout, target.key, raw_dir, OutputLimits())
        error = output.error
        notes = list(output.notes)
        if completed.timed_out:
            error = f"the scanner timed out after {self.request.timeout:.0f}s"
        elif completed.returncode != 0:
            why = first_line(completed.stderr) or "no message"
            message = f"the scanner exited with status {completed.returncode}: {why}"
            if output.document is None:
                error = message if error is None or "wrote no" in error else error
            else:
                notes.append(message)
        return result_from_output(
            target, self.scanner, self.scan_type, started, finished,
            None if completed.timed_out else output.document, error, notes,
            raw_dir if raw_dir.exists() else None)
