"""The result pipeline: read and check what a scanner left, cache it, let plugins process
and merge it, and write the report."""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from atomicscan import __version__, cache, stamps
from atomicscan.context import ResultContext
from atomicscan.plan import Plan
from atomicscan.plugins import Plugins
from atomicscan.proc import Completed
from atomicscan.resolve import Resolution
from atomicscan.results import Finding, Report, ScanResult, common_severity
from atomicscan.resultsdir import share_like_root, shared_bits, write_private
from atomicscan.runtime import Target, last_line
from atomicscan.scanners import Scanner
from atomicscan.scanout import OutputLimits, read_target_output

log = logging.getLogger(__name__)

#: Longest scanner-given error kept for a result: it becomes a line on a terminal.
MAX_ERROR_CHARS = 1000
#: A full or read-only results disk fails the targets it hits, not the run.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def failed_result(target: Target, scanner: Scanner, scan_type: str, error: str) -> ScanResult:
    """A result for a target that failed before the scanner said anything about it."""
    stamp = stamps.iso_stamp()
    return ScanResult(target=target.ref, target_id=target.id, target_type=target.type,
                      runtime=target.runtime, scanner=scanner.name, scan_type=scan_type,
                      successful=False, started_at=stamp, finished_at=stamp, error=error)


def findings_of(document: Mapping[str, Any]) -> tuple[Finding, ...]:
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
    """A target's result from the scanner's checked document (or why there is none)."""
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
        findings=findings_of(document),
        custom=dict(custom) if isinstance(custom, Mapping) else {},
    )


@dataclasses.dataclass(frozen=True)
class ScannerRun:
    """How one scanner container ended, with the times the batch's results carry."""

    completed: Completed
    started: str
    finished: str
    timeout: float


def read_result(target: Target, scanner: Scanner, scan_type: str, run: ScannerRun,
                scanout: Path, results_dir: Path) -> ScanResult:
    """Read and check ``target``'s output in ``scanout``, keeping its files in
    ``results_dir/<key>``; every failure is this target's alone."""
    raw_dir = results_dir / target.key
    try:
        output = read_target_output(scanout, target.key, raw_dir, OutputLimits())
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        return failed_result(target, scanner, scan_type,
                             f"cannot keep the scanner's output in {raw_dir}: {exc.strerror}")
    completed = run.completed
    error = output.error
    notes = list(output.notes)
    if completed.timed_out:
        error = f"the scanner timed out after {run.timeout:g}s"
    elif completed.returncode != 0:
        why = last_line(completed.stderr) or "no message"
        message = f"the scanner exited with status {completed.returncode}: {why}"
        if output.document is None:
            # Why it died says more than "no json"; a refused json keeps its reason.
            error = message if error is None or output.missing else error
        else:
            notes.append(message)
    return result_from_output(
        target, scanner, scan_type, run.started, run.finished,
        None if completed.timed_out else output.document, error, notes,
        raw_dir if raw_dir.exists() else None)


def keep_in_cache(fresh: Sequence[ScanResult], plan: Plan, cache_root: Path) -> None:
    """Cache what the scanner said, before plugins shape it: a plugin installed later
    applies to old results too."""
    for result in fresh:
        key = plan.cache_key(result)
        if key is None:
            continue
        # The cache only saves time: a full disk must not cost the run its report.
        try:
            cache.store(cache_root, key, result)
        except OSError as exc:
            log.warning("result not cached: %s", exc.strerror or exc)


def process(plugins: Plugins, results: Sequence[ScanResult], scanner: Scanner,
            context_of: Callable[[ScanResult], ResultContext]) -> list[ScanResult]:
    """Every result, cached or not, through the plugins' ``atomicscan_process_result``."""
    return [plugins.process_result(result, scanner, context_of(result)) for result in results]


def contexts(resolution: Resolution, scanner_args: Mapping[str, str], *, remediate: bool,
             progress: Callable[[str], None]) -> Callable[[ScanResult], ResultContext]:
    """The context of each result: its target and runtime, found once for the run."""
    targets = {(t.runtime, t.id): t for t in resolution.targets}

    def context_of(result: ScanResult) -> ResultContext:
        target = targets.get((result.runtime, result.target_id))
        runtime = (resolution.runtime_of(result.runtime)
                   if target is not None and result.runtime else None)
        return ResultContext(target=target, runtime=runtime, scanner_args=scanner_args,
                             remediate=remediate, progress=progress)
    return context_of


def in_target_order(results: Sequence[ScanResult], targets: Sequence[Target]
                    ) -> list[ScanResult]:
    """Results in the order of the targets (as given), whatever order batches ended in."""
    order = {(t.runtime, t.id): i for i, t in enumerate(targets)}
    return sorted(results, key=lambda r: order.get((r.runtime, r.target_id), len(order)))


def with_scanner_images(results: Sequence[ScanResult], scanner_ids: Mapping[str, str]
                        ) -> list[ScanResult]:
    """Each result with the ID of the scanner image that ran (or would have run) it; the
    runtime that scans ``--rootfs`` targets is grouped under ``""``."""
    return [r.replace(scanner_image_id=scanner_ids.get(r.runtime or ""))
            if r.scanner_image_id is None else r for r in results]


def host_identity() -> dict[str, str]:
    """This host, as a history of many hosts tells them apart: name and machine ID.

    ``$ATOMICSCAN_HOSTNAME`` names the host where the kernel's name is not the host's (a
    Kubernetes pod is named after itself, not its node); ``$ATOMICSCAN_MACHINE_ID_FILE``
    points at the host's machine ID where ``/etc/machine-id`` is the container's own."""
    machine_id = ""
    try:
        source = os.environ.get("ATOMICSCAN_MACHINE_ID_FILE") or "/etc/machine-id"
        with Path(source).open("rb") as stream:
            raw = stream.read(128).strip().decode("ascii", "replace")
        machine_id = raw if len(raw) == 32 and raw.isalnum() else ""
    except OSError:
        pass
    named = os.environ.get("ATOMICSCAN_HOSTNAME", "")
    hostname = named if named and named.isprintable() else socket.gethostname()
    return {"hostname": hostname[:255], "machine_id": machine_id}


def merge(plugins: Plugins, results: Sequence[ScanResult], scanner: Scanner, scan_type: str,
          run_id: str, results_dir: Path, scanner_args: Mapping[str, str],
          started_at: str) -> Report:
    """The report, from the first ``atomicscan_merge_results`` that gives one (told when
    the run started), with what the run knows of itself: the host, the version and the
    scanner arguments."""
    report = plugins.merge_results(list(results), scanner, scan_type, run_id, started_at)
    return dataclasses.replace(report, results_dir=results_dir, host=host_identity(),
                               version=__version__, scanner_args=dict(scanner_args))


def write_report(report: Report, results_root: Path, results_dir: Path) -> Report:
    """Write ``report.json`` (results as private as the root); a failure is kept in the
    report's ``write_error``, and the report itself is still whole."""
    report_file = results_dir / "report.json"
    try:
        share_like_root(results_root, results_dir)
        document = report.to_json()

        def dump(out: IO[str]) -> None:
            json.dump(document, out, indent=2)
            out.write("\n")

        write_private(report_file, dump, shared=shared_bits(results_root))
    except OSError as exc:
        return dataclasses.replace(report, write_error=(
            f"cannot write {report_file}: {exc.strerror or exc}; what was written so far "
            f"is kept in {results_dir}"))
    return report
