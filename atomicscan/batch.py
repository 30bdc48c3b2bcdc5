"""Batch execution: mount a batch's targets read-only through a host it is given, run one
scanner container on them, and read each target's result."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atomicscan import stamps
from atomicscan.collect import ScannerRun, failed_result, read_result
from atomicscan.errors import AtomicscanError, MountError
from atomicscan.host import Host, Inode
from atomicscan.plan import Batch
from atomicscan.proc import Cancelled, Completed
from atomicscan.results import ScanResult
from atomicscan.runtime import RUN_LABEL, Bind, Runtime, ScannerContainer, Target
from atomicscan.scanners import Scanner
from atomicscan.scanout import OutputLimits
from atomicscan.state import RunState, run_label_value
from atomicscan.targetconfig import target_meta

log = logging.getLogger(__name__)

SCANNER_UID = 65534
#: Size of the tmpfs behind /scanout: a scanner can never fill the host's disk.
DEFAULT_SCANOUT_BYTES = 512 * 1024 * 1024
#: Inodes of /scanout beyond each target's entry budget (the target directories, scratch).
SCANOUT_SPARE_INODES = 64
#: Largest host file handed to a scanner through --scanner-args (a datastream, a feed).
HOST_FILE_MAX_BYTES = 1024 * 1024 * 1024


def default_jobs() -> int:
    """Concurrent batches: twice the cores, capped so a big host doesn't start dozens of
    containers at once. A batch mostly waits on podman, storage locks and mounts, so one
    job per core leaves the cores idle (measured in docs/benchmarks.md)."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def host_file_inside(name: str, value: str) -> str:
    """Where the scanner finds the host file given as ``--scanner-args name=value``."""
    return f"/scanhost/{name}/{Path(value).name}"


def container_args(scanner: Scanner, scan_type: str, scanner_args: Mapping[str, str], *,
                   remediate: bool) -> dict[str, str]:
    """The scanner arguments as the container sees them: host files by their copy's path."""
    args = dict(scanner_args)
    for name in scanner.scan_type(scan_type).host_files:
        if name in scanner_args:
            args[name] = host_file_inside(name, scanner_args[name])
    if remediate:
        args["remediate"] = "true"
    return args


@dataclass(frozen=True)
class BatchJob:
    """What every batch of a run shares: the scanner, its arguments and its limits."""

    scanner: Scanner
    scan_type: str
    run_id: str
    timeout: float
    scanner_args: Mapping[str, str]
    """As the user gave them (host files by their host path)."""
    remediate: bool = False
    memory_bytes: int | None = None
    allow_host_rootfs: bool = False

    @property
    def host_files(self) -> dict[str, str]:
        """Host files the scan takes, by argument name: their host paths."""
        return {name: self.scanner_args[name]
                for name in self.scanner.scan_type(self.scan_type).host_files
                if name in self.scanner_args}


class BatchRunner:
    """Scans batches; the host (mounts, pinning) and the runtimes are given, never built."""

    def __init__(self, job: BatchJob, host: Host, run_state: RunState, results_dir: Path, *,
                 progress: Callable[[str], None], cancel: threading.Event) -> None:
        self.job = job
        self.host = host
        self.run_state = run_state
        self.results_dir = results_dir
        self.progress = progress
        self.cancel = cancel
        self.container_args = container_args(job.scanner, job.scan_type, job.scanner_args,
                                             remediate=job.remediate)

    def scan(self, batch: Batch) -> list[ScanResult]:
        """Mount, scan and unmount one batch; a target that fails never fails the others."""
        job = self.job
        batch_dir = self.run_state.directory / f"batch-{batch.index}"
        batch_dir.mkdir(mode=0o700)
        failed: list[ScanResult] = []
        with contextlib.ExitStack() as stack:
            binds: list[Bind] = []
            ready: list[Target] = []
            for target in batch.targets:
                self.progress(f"mounting {target.type} {target.ref} read-only")
            mounted = self._mount_batch(stack, batch, batch_dir)
            for target in batch.targets:
                if self.cancel.is_set():
                    raise Cancelled("run cancelled")
                try:
                    view = self._present(stack, target, mounted, batch_dir)
                except AtomicscanError as exc:
                    # Removed since the listing, or unmountable: this target alone fails.
                    failed.append(failed_result(target, job.scanner, job.scan_type,
                                                f"cannot mount {target.ref}: {exc}").replace(
                        target_meta=target_meta(target.names, None)))
                    continue
                binds.append(Bind(view, f"/scanin/{target.key}"))
                ready.append(target)
            if not ready:
                return failed
            binds += self._host_files(batch_dir / "hostfiles")
            binds += self._host_mounts(stack, batch_dir / "hostmounts")
            meta_bind, configs = self._scanmeta(batch.runtime, ready, batch_dir / "meta")
            binds.append(meta_bind)
            # Empty directories cost kernel memory but no tmpfs bytes: cap the inodes too, at
            # what the batch's targets may legally leave (the rest fails them when read).
            inodes = len(ready) * (OutputLimits().max_entries + 1) + SCANOUT_SPARE_INODES
            scanout = stack.enter_context(self.host.scratch_tmpfs(
                batch_dir / "scanout", DEFAULT_SCANOUT_BYTES, SCANNER_UID, SCANNER_UID,
                inodes=inodes))
            binds.append(Bind(scanout, "/scanout", read_only=False))
            container = self._container(batch, ready, binds, batch_dir)
            started = stamps.iso_stamp()
            self.progress(f"running scanner {job.scanner.name} ({job.scan_type}) on "
                          f"{len(ready)} target(s)")
            completed = self._run_container(batch.runtime, container)
            run = ScannerRun(completed, started, stamps.iso_stamp(), job.timeout)
            return [read_result(target, job.scanner, job.scan_type, run, scanout,
                                self.results_dir).replace(
                        target_meta=target_meta(target.names, configs.get(target.key)))
                    for target in ready] + failed

    def _mount_batch(self, stack: contextlib.ExitStack, batch: Batch, batch_dir: Path
                     ) -> Mapping[str, Path | AtomicscanError]:
        """The root filesystems of the batch's images and containers, mounted together
        (a few runtime commands for the whole batch) until ``stack`` closes."""
        targets = [target for target in batch.targets if target.type != "rootfs"]
        if not targets:
            return {}
        if self.cancel.is_set():
            raise Cancelled("run cancelled")
        return stack.enter_context(batch.runtime.mount_rootfs_batch(
            targets, self.run_state.journal, batch_dir / "work", cancel=self.cancel))

    def _present(self, stack: contextlib.ExitStack, target: Target,
                 mounted: Mapping[str, Path | AtomicscanError], batch_dir: Path) -> Path:
        """``target``'s root filesystem, read-only, until ``stack`` closes."""
        inode = None
        if target.type == "rootfs":
            source, inode = self._pin_rootfs(target)
        else:
            found = mounted.get(target.key)
            if found is None:
                raise MountError(f"{target.ref} was not mounted")
            if isinstance(found, AtomicscanError):
                raise found
            source = found
        return stack.enter_context(self.host.bind_readonly(
            source, batch_dir / "scanin" / target.key, expect=inode))

    def _container(self, batch: Batch, ready: Sequence[Target], binds: Sequence[Bind],
                   batch_dir: Path) -> ScannerContainer:
        job = self.job
        return ScannerContainer(
            name=f"atomicscan-{job.run_id}-{batch.index}",
            image=job.scanner.image,
            args=job.scanner.scan_type(job.scan_type).args,
            binds=tuple(binds),
            env={
                "ATOMICSCAN_SCAN_TYPE": job.scan_type,
                "ATOMICSCAN_SCANNER_ARGS": json.dumps(self.container_args),
                "ATOMICSCAN_TARGETS": json.dumps([
                    {"key": t.key, "target": t.ref, "id": t.id, "type": t.type}
                    for t in ready]),
            },
            labels={RUN_LABEL: run_label_value(job.run_id)},
            capabilities=job.scanner.capabilities,
            user=f"{SCANNER_UID}:{SCANNER_UID}",
            timeout=job.timeout,
            cancel=self.cancel,
            workdir=batch_dir,
            **({} if job.memory_bytes is None else {"memory_bytes": job.memory_bytes}),
        )

    def _pin_rootfs(self, target: Target) -> tuple[Path, Inode]:
        """A --rootfs directory, judged again on what an open file of it points at: someone
        who owns a directory on its path could have swapped it for a link to ``/``."""
        try:
            pinned, inode, _mode = self.host.pin(Path(target.id))
        except OSError as exc:
            raise MountError(f"{target.id}: {exc.strerror or exc}") from None
        if pinned != Path(target.id):
            raise MountError(f"{target.id} changed since it was resolved (now {pinned})")
        if pinned == Path("/") and not self.job.allow_host_rootfs:
            raise MountError("it is the host's own root; --allow-host-rootfs was not given")
        return pinned, inode

    def _scanmeta(self, runtime: Runtime, targets: Sequence[Target], directory: Path
                  ) -> tuple[Bind, dict[str, dict[str, Any] | None]]:
        """/scanmeta/targets.json: each target's identity and configuration, read-only; and
        the configurations, by target key."""
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
        return Bind(directory, "/scanmeta"), configs

    def _host_files(self, directory: Path) -> list[Bind]:
        """Copies of the host files the scan needs, readable by the scanner's user, read-only.

        A copy (not a bind of the original) so the scanner's uid can read it whatever the
        original's permissions, and so it can't see the file's neighbours.
        """
        binds: list[Bind] = []
        for name, value in self.job.host_files.items():
            copy = directory / name / Path(value).name
            copy.parent.mkdir(parents=True, mode=0o755)
            copy.parent.parent.chmod(0o755)
            copy.parent.chmod(0o755)
            self.host.copy_host_file(value, f"--scanner-args {name}=", copy,
                                     HOST_FILE_MAX_BYTES)
            binds.append(Bind(copy, host_file_inside(name, value)))
        return binds

    def _host_mounts(self, stack: contextlib.ExitStack, directory: Path) -> list[Bind]:
        """A definition's host paths, each as a read-only bind of our own that is not
        recursive: mounts below the path (``/dev/shm`` in ``/dev``) are not carried along,
        so nothing the scanner sees there is writable."""
        scanner = self.job.scanner
        binds: list[Bind] = []
        for index, (source, destination) in enumerate(scanner.host_mounts):
            pinned, inode = self.host.pin_host_path(source, f"scanner {scanner.name}: host path")
            view = stack.enter_context(self.host.bind_readonly(
                pinned, directory / str(index), expect=inode))
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


def run_batches(batches: Sequence[Batch], scan: Callable[[Batch], list[ScanResult]], *,
                jobs: int, cancel: threading.Event,
                on_result: Callable[[ScanResult], None]) -> list[ScanResult]:
    """Scan batches concurrently; Ctrl-C cancels them all and waits for their cleanup."""
    results: list[ScanResult] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs),
                                               thread_name_prefix="batch") as pool:
        pending = {pool.submit(scan, batch) for batch in batches}
        try:
            while pending:
                done, pending = concurrent.futures.wait(
                    pending, timeout=0.25, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    for result in future.result():
                        on_result(result)
                        results.append(result)
        except BaseException:
            cancel.set()
            for future in pending:
                future.cancel()
            concurrent.futures.wait(pending)
            raise
    return results
