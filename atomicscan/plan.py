"""Planning: which targets the cache already answers, and the batches left to scan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from atomicscan import cache
from atomicscan.errors import ScannerImageMissingError
from atomicscan.resolve import Groups
from atomicscan.results import ScanResult
from atomicscan.runtime import Runtime, Target
from atomicscan.scanners import Scanner

#: Targets per scanner container: start-up is paid per batch (see docs/benchmarks.md).
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class Batch:
    """Targets of one runtime scanned by one scanner container; ``index`` counts from 1."""

    runtime: Runtime
    targets: tuple[Target, ...]
    index: int


@dataclass(frozen=True)
class Plan:
    """Results the cache gave, batches still to scan, and where their results are kept."""

    cached: list[ScanResult] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    """The cache key of each target scanned fresh that may be cached, by (runtime, ID)."""

    def cache_key(self, result: ScanResult) -> str | None:
        return self.keys.get((result.runtime or "", result.target_id))


def scanner_image_ids(groups: Groups, scanner: Scanner) -> dict[str, str]:
    """The scanner image's ID in each runtime that runs a batch; atomicscan never pulls."""
    ids: dict[str, str] = {}
    for name, (runtime, _targets) in groups.items():
        scanner_id = runtime.image_id(scanner.image)
        if scanner_id is None:
            raise ScannerImageMissingError(
                f"scanner image {scanner.image} (scanner {scanner.name}) is not "
                f"in {runtime.name}'s storage and atomicscan never pulls; "
                f"{runtime.build_hint(scanner.image)}"
            )
        ids[name] = scanner_id
    return ids


def make_plan(groups: Groups, scanner: Scanner, scan_type: str, scanner_ids: Mapping[str, str],
              cache_root: Path, *, scanner_args: Mapping[str, str], use_cache: bool = True,
              remediate: bool = False, batch_size: int | None = None) -> Plan:
    """Cached results, the batches still to scan, and each cacheable target's key.

    ``--remediate`` needs the scanner's fix script, which a cached result doesn't have, so
    nothing is looked up or kept then; ``--no-cache`` still keeps what it scans.
    """
    host_files = scanner.scan_type(scan_type).host_files
    size = max(1, batch_size or DEFAULT_BATCH_SIZE)
    plan = Plan()
    todo_by_runtime: list[tuple[Runtime, list[Target]]] = []
    for name, (runtime, targets) in groups.items():
        todo: list[Target] = []
        for target in targets:
            key = None if remediate else cache.cache_key(
                target, scanner.name, scanner_ids[name], scan_type, scanner_args, host_files)
            hit = cache.load(cache_root, key, target) if key and use_cache else None
            if hit is not None:
                plan.cached.append(hit)
                continue
            if key:
                plan.keys[(runtime.name, target.id)] = key
            todo.append(target)
        todo_by_runtime.append((runtime, todo))
    for runtime, todo in todo_by_runtime:
        for start in range(0, len(todo), size):
            plan.batches.append(Batch(runtime, tuple(todo[start:start + size]),
                                      len(plan.batches) + 1))
    return plan
