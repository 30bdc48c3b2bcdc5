"""Planning: which targets the cache already answers, and the batches left to scan."""

from __future__ import annotations

import math
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
#: The most targets per scanner container when the size is chosen for a big run.
MAX_AUTO_BATCH_SIZE = 64
#: A big run is cut into about this many batches per job, so the jobs stay busy until the
#: end without each batch paying the runtime's whole-storage commands for few targets.
BATCHES_PER_JOB = 4


def auto_batch_size(targets: int, jobs: int) -> int:
    """The batch size when none is given: 8, or more on a big run, up to 64.

    Every batch costs a container start and a few runtime commands that each read the whole
    storage (on a host with 1,000 images, a second or more each while other batches hold
    the storage lock); 1,000 targets in batches of 8 pay that 125 times, in batches of 63
    only 16 times. The scanner's memory, its timeout and /scanout are per batch; the output
    budgets stay per target (docs/benchmarks.md, "Scale").
    """
    wanted = math.ceil(targets / (max(1, jobs) * BATCHES_PER_JOB))
    return max(DEFAULT_BATCH_SIZE, min(MAX_AUTO_BATCH_SIZE, wanted))


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
              remediate: bool = False, batch_size: int | None = None, jobs: int = 1) -> Plan:
    """Cached results, the batches still to scan, and each cacheable target's key.

    ``--remediate`` needs the scanner's fix script, which a cached result doesn't have, so
    nothing is looked up or kept then; ``--no-cache`` still keeps what it scans.
    """
    host_files = scanner.scan_type(scan_type).host_files
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
        size = max(1, batch_size or auto_batch_size(len(todo), jobs))
        for start in range(0, len(todo), size):
            plan.batches.append(Batch(runtime, tuple(todo[start:start + size]),
                                      len(plan.batches) + 1))
    return plan
