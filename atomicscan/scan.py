"""One scan run: resolve targets, mount them read-only, run the scanner, read and merge results."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import errno
import json
import logging
import math
import os
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomicscan import cache, cleanup, hostpaths, mounts, retention
from atomicscan.builtin.definitions import builtin_scanners_dir
from atomicscan.errors import (
    AmbiguousTargetError,
    AtomicscanError,
    MountError,
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
from atomicscan.runtime import RUN_LABEL, Bind, Runtime, ScannerContainer, Target, last_line
from atomicscan.scanners import Scanner, ScannerRegistry, name_problem
from atomicscan.scanout import OutputLimits, read_target_output
from atomicscan.state import RunState, new_run_id, run_label_value
from atomicscan.targets import not_found, rootfs_key

log = logging.getLogger(__name__)

DEFAULT_RESULTS_ROOT = Path("/var/lib/atomicscan")
DEFAULT_RUNTIME = "podman"
SCANNER_UID = 65534
#: Size of the tmpfs behind /scanout: a scanner can never fill the host's disk.
DEFAULT_SCANOUT_BYTES = 512 * 1024 * 1024
#: Inodes of /scanout beyond each target's entry budget (the target directories, scratch).
SCANOUT_SPARE_INODES = 64
#: Longest scanner-given error kept for a result: it becomes a line on a terminal.
MAX_ERROR_CHARS = 1000
#: Seconds one scanner container (one batch) may run before it is killed and its targets fail.
DEFAULT_TIMEOUT = 1800.0
#: Largest host file handed to a scanner through --scanner-args (a datastream, a feed).
HOST_FILE_MAX_BYTES = 1024 * 1024 * 1024

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
    allow_host_rootfs: bool = False
    """``--rootfs /`` scans the whole host, secrets included: only when asked for by name."""
    trusted_scanners: tuple[str, ...] = ()
    """Scanners that are not built in whose fix scripts ``--remediate`` may run."""
    memory_bytes: int | None = None
    """Memory limit of each scanner container; ``None`` keeps the runtime default of ours."""


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


class ResultsWriteError(AtomicscanError):
    """The results directory cannot be written (a full disk, a read-only filesystem)."""


def check_timeout(value: float | None) -> float:
    """A batch's time limit: the default, or a finite number of seconds above zero."""
    if value is None:
        return DEFAULT_TIMEOUT
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--timeout {value}: give a number of seconds above 0")
    return value


def _unsafe_dir(path: Path, *, mine: bool) -> str | None:
    """Why someone else could swap or plant entries in ``path``, or None.

    Every directory on the way must be root's or ours and not writable by others, unless
    sticky (as /tmp is: others can't rename what is ours there); the results directories
    themselves must be ours and writable by us alone.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    owners = {os.geteuid()} if mine else {0, os.geteuid()}
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symlink"
    if info.st_uid not in owners:
        return f"{path} belongs to uid {info.st_uid}"
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and (mine or not info.st_mode & stat.S_ISVTX):
        return f"{path} is writable by others"
    return None


def scanner_results_dir(root: Path, scanner: str) -> Path:
    """``root/scanner``, after checking the name can't lead out of ``root`` (``..``, ``/``)
    and that no one else can swap a directory on the way for a symlink of theirs."""
    real_root = root.resolve()
    candidate = (real_root / scanner).resolve()
    if candidate.parent != real_root or candidate.name != scanner:
        raise UsageError(f"scanner name {scanner!r} would put results outside {root}")
    problems = [_unsafe_dir(parent, mine=False) for parent in reversed(real_root.parents)]
    problems += [_unsafe_dir(real_root, mine=True), _unsafe_dir(candidate, mine=True)]
    problem = next((p for p in problems if p is not None), None)
    if problem is not None:
        raise UsageError(f"results directory {root}: {problem}; choose a directory only you "
                         "can write (mkdir -m 0700 DIR)")
    return candidate


def results_directory(base: Path | None, scanner: str) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H-%M-%S-%f")
    root = base or Path(os.environ.get("ATOMICSCAN_RESULTS_DIR", str(DEFAULT_RESULTS_ROOT)))
    return scanner_results_dir(root, scanner) / stamp


def _rootfs_targets(paths: Sequence[Path], *, allow_host_root: bool) -> list[Target]:
    targets = []
    for path in paths:
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            resolved = None
        if resolved is None or not resolved.is_dir():
            raise UsageError(f"--rootfs {path}: not a directory")
        if resolved == Path("/") and not allow_host_root:
            raise UsageError(f"--rootfs {path} is the host's own root (secrets included); "
                             "add --allow-host-rootfs if that is really what you mean")
        targets.append(Target(ref=str(path), id=str(resolved), type="rootfs", runtime=None,
                              key=rootfs_key(resolved)))
    return targets


def shared_bits(root: Path) -> int:
    """The group read (and search) bits an admin gave the results root, which its runs
    inherit: results are private unless the root is shared with a group, and never with
    everyone (they may hold what a scanner read: secrets in findings, mounted host files)."""
    try:
        return root.stat().st_mode & 0o050
    except OSError:
        return 0


def make_results_dir(root: Path, run_dir: Path) -> None:
    """Create a run's results directory as private as the results root; a new root is
    readable by its owner only."""
    try:
        if not root.exists():
            root.mkdir(parents=True, mode=0o700)
        mode = 0o700 | shared_bits(root)
        if not run_dir.parent.exists():
            run_dir.parent.mkdir(mode=mode)
            run_dir.parent.chmod(mode)
        run_dir.mkdir(mode=mode)
        run_dir.chmod(mode)
    except OSError as exc:
        raise ResultsWriteError(f"cannot create the results directory {run_dir}: "
                                f"{exc.strerror or exc}") from exc


def share_like_root(root: Path, run_dir: Path) -> None:
    """Files the scanner left get the results root's group bits, or none (0600/0700)."""
    bits = shared_bits(root)
    for directory, subdirs, files in os.walk(run_dir):
        for name, mode in [*((d, 0o700 | bits) for d in subdirs),
                           *((f, 0o600 | (bits & 0o040)) for f in files)]:
            path = Path(directory, name)
            if not path.is_symlink():  # the copy makes none; never chmod through one
                path.chmod(mode)


def write_private(path: Path, text: str, *, shared: int = 0) -> None:
    """Write ``path`` (a new file, never through a symlink) readable by its owner, and by
    the group when ``shared`` has its read bit."""
    mode = 0o600 | (shared & 0o040)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), mode)
        out.write(text)


def is_builtin(scanner: Scanner) -> bool:
    """A scanner defined by this installation's own ``scanners/`` folder."""
    if not scanner.origin.startswith("/"):
        return False
    try:
        return Path(scanner.origin).resolve().is_relative_to(builtin_scanners_dir().resolve())
    except OSError:
        return False


def _pin_host_path(source: str, what: str) -> tuple[Path, tuple[int, int]]:
    """The real path of ``source`` and its inode, judged on what an open file points at.

    The path is opened (without following a last symlink) and judged by the path the
    kernel gives for that open file, so a directory swapped for a symlink after a check
    can't slip through; the bind is then required to show that very inode.
    """
    real = hostpaths.check_host_path(source, what=what)
    try:
        pinned, inode, mode = _pin(real)
    except OSError as exc:
        raise hostpaths.HostPathError(f"{what} {source}: {exc.strerror}") from None
    reason = hostpaths.refused_reason(pinned)
    if reason is None and not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        reason = f"{pinned} is not a directory or a regular file"
    if reason is not None or pinned != real:
        raise hostpaths.HostPathError(
            f"{what} {source}: refused: {reason or 'it changed while being checked'}")
    return pinned, inode


def _pin(path: Path) -> tuple[Path, tuple[int, int], int]:
    """Where ``path`` really is, its inode and mode, read from an open file of it (not
    following a last symlink): the path the kernel gives can't be a name swapped later."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        pinned = Path(f"/proc/self/fd/{fd}").readlink()
    finally:
        os.close(fd)
    if stat.S_ISLNK(info.st_mode):
        raise OSError(errno.ELOOP, "a symlink", str(path))
    return pinned, (info.st_dev, info.st_ino), info.st_mode


def _copy_regular(source: Path, copy: Path, limit: int) -> None:
    """Copy a regular file (never a FIFO or a device, never through a swapped-in symlink)
    into a new file the scanner's user can read but not change."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise UsageError(f"{source}: not a regular file")
        out_fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
        with os.fdopen(out_fd, "wb") as out:
            copied = 0
            for chunk in iter(lambda: src.read(1 << 20), b""):
                copied += len(chunk)
                if copied > limit:
                    raise UsageError(f"{source}: over the {limit}-byte limit for host files")
                out.write(chunk)
    copy.chmod(0o444)


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
    said = str(document.get("Error") or "the scanner reported an unsuccessful scan")
    if len(said) > MAX_ERROR_CHARS:
        said = said[:MAX_ERROR_CHARS] + f"... ({len(said) - MAX_ERROR_CHARS} more characters)"
    return base.replace(
        successful=ok and error is None,
        error=None if ok and error is None else (error or said),
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
        self.timeout = check_timeout(request.timeout)
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
        rootfs = _rootfs_targets(self.request.rootfs,
                                 allow_host_root=self.request.allow_host_rootfs)
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
        self.check_remediate_trust()
        results_root = self._results_root()
        results_dir = results_directory(results_root, self.scanner.name)
        groups = self.resolve()
        self.check_remediate_targets(groups)
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
        make_results_dir(results_root, results_dir)

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
                # The cache only saves time: a full disk must not cost the run its report.
                try:
                    cache.store(cache.cache_dir(results_root), key, result)
                except OSError as exc:
                    log.warning("result not cached: %s", exc.strerror or exc)
        results = [self.plugins.process_result(r, self.scanner) for r in [*cached, *fresh]]
        if self.request.remediate:
            results = [self._remediate(groups, result) for result in results]
        order = {(t.runtime, t.id): i for i, t in enumerate(
            t for _runtime, targets in groups.values() for t in targets)}
        results.sort(key=lambda r: order.get((r.runtime, r.target_id), len(order)))
        report = self.plugins.merge_results(results, self.scanner, self.scan_type, self.run_id)
        report = dataclasses.replace(report, results_dir=results_dir)
        report_file = results_dir / "report.json"
        try:
            share_like_root(results_root, results_dir)
            write_private(report_file, json.dumps(report.to_json(), indent=2) + "\n",
                          shared=shared_bits(results_root))
        except OSError as exc:
            # The report is still returned (and printed): only the file is missing.
            return dataclasses.replace(report, write_error=(
                f"cannot write {report_file}: {exc.strerror or exc}; what was written so far "
                f"is kept in {results_dir}"))
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
                    inode = None
                    if target.type == "rootfs":
                        source, inode = self._pin_rootfs(target)
                    else:
                        source = stack.enter_context(runtime.mount_rootfs(
                            target, run_state.journal, batch_dir / "work" / target.key))
                    view = stack.enter_context(mounts.readonly_bind(
                        source, batch_dir / "scanin" / target.key, expect=inode))
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
            binds += self._host_mounts(stack, batch_dir / "hostmounts")
            binds.append(self._scanmeta(runtime, ready, batch_dir / "meta"))
            # Empty directories cost kernel memory but no tmpfs bytes: cap the inodes too, at
            # what the batch's targets may legally leave (the rest fails them when read).
            inodes = len(ready) * (OutputLimits().max_entries + 1) + SCANOUT_SPARE_INODES
            scanout = stack.enter_context(mounts.scratch_tmpfs(
                batch_dir / "scanout", DEFAULT_SCANOUT_BYTES, SCANNER_UID, SCANNER_UID,
                inodes=inodes))
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
                timeout=self.timeout,
                cancel=self.cancel,
                workdir=batch_dir,
                **({} if self.request.memory_bytes is None
                   else {"memory_bytes": self.request.memory_bytes}),
            )
            started = now()
            self.progress(f"running scanner {self.scanner.name} ({self.scan_type}) on "
                          f"{len(ready)} target(s)")
            completed = self._run_container(runtime, container)
            finished = now()
            return [self._result(target, completed, scanout, results_dir, started, finished)
                    for target in ready] + failed

    def _pin_rootfs(self, target: Target) -> tuple[Path, tuple[int, int]]:
        """A --rootfs directory, judged again on what an open file of it points at: someone
        who owns a directory on its path could have swapped it for a link to ``/``."""
        try:
            pinned, inode, _mode = _pin(Path(target.id))
        except OSError as exc:
            raise MountError(f"{target.id}: {exc.strerror or exc}") from None
        if pinned != Path(target.id):
            raise MountError(f"{target.id} changed since it was resolved (now {pinned})")
        if pinned == Path("/") and not self.request.allow_host_rootfs:
            raise MountError("it is the host's own root; --allow-host-rootfs was not given")
        return pinned, inode

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

    def check_remediate_targets(self, groups: Mapping[str, tuple[Runtime, list[Target]]]
                                ) -> None:
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
            # Judged again at use: the path may have been swapped since the first check.
            source = hostpaths.check_host_path(value, what=f"--scanner-args {name}=")
            copy = directory / name / Path(value).name
            copy.parent.mkdir(parents=True, mode=0o755)
            copy.parent.parent.chmod(0o755)
            copy.parent.chmod(0o755)
            _copy_regular(source, copy, HOST_FILE_MAX_BYTES)
            binds.append(Bind(copy, self._inside(name)))
        return binds

    def _host_mounts(self, stack: contextlib.ExitStack, directory: Path) -> list[Bind]:
        """A definition's host paths, each as a read-only bind of our own that is not
        recursive: mounts below the path (``/dev/shm`` in ``/dev``) are not carried along,
        so nothing the scanner sees there is writable."""
        binds: list[Bind] = []
        for index, (source, destination) in enumerate(self.scanner.host_mounts):
            pinned, inode = _pin_host_path(source, f"scanner {self.scanner.name}: host path")
            view = stack.enter_context(mounts.readonly_bind(pinned, directory / str(index),
                                                            expect=inode))
            binds.append(Bind(view, destination))
        return binds

    def _run_container(self, runtime: Runtime, container: ScannerContainer) -> Completed:
        try:
            completed = runtime.run_scanner(container)
        except AtomicscanError as exc:
            # Refused before it started (a bind that could add options): this batch fails.
            runtime.remove_container(container.name)
            return Completed((), 1, "", f"the scanner was not started: {exc}\n")
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
        try:
            output = read_target_output(scanout, target.key, raw_dir, OutputLimits())
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            # A full results disk fails the targets it hits; the others keep their results.
            return failed_result(target, self.scanner, self.scan_type,
                                 f"cannot keep the scanner's output in {raw_dir}: "
                                 f"{exc.strerror}")
        error = output.error
        notes = list(output.notes)
        if completed.timed_out:
            error = f"the scanner timed out after {self.timeout:g}s"
        elif completed.returncode != 0:
            why = last_line(completed.stderr) or "no message"
            message = f"the scanner exited with status {completed.returncode}: {why}"
            if output.document is None:
                # Why it died says more than "no json"; a refused json keeps its reason.
                error = message if error is None or output.missing else error
            else:
                notes.append(message)
        return result_from_output(
            target, self.scanner, self.scan_type, started, finished,
            None if completed.timed_out else output.document, error, notes,
            raw_dir if raw_dir.exists() else None)
