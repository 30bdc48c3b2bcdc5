"""What the user asked a scan run for, as the command line parsed it, and its checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from atomicscan.errors import UsageError

if TYPE_CHECKING:
    from atomicscan.suppress import IgnoreList

#: Seconds one scanner container (one batch) may run before it is killed and its targets fail.
DEFAULT_TIMEOUT = 1800.0


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
    allow_rlimits_only: bool = False
    """A user's scan on a host that can't bound the scanner's memory as a whole (no
    delegated cgroup controllers) runs with per-process rlimits only: when asked for."""
    trusted_scanners: tuple[str, ...] = ()
    """Scanners that are not built in whose fix scripts ``--remediate`` may run."""
    memory_bytes: int | None = None
    """Memory limit of each scanner container; ``None`` keeps the runtime default of ours."""
    ignores: IgnoreList | None = None
    """Suppressions (``--ignore-file``): matching findings are marked in every report."""
    plugin_options: Mapping[str, str] = field(default_factory=dict)
    """Options for plugins, by ``plugin.option`` (``--db URL`` is ``history.db``)."""

    @property
    def lists_targets(self) -> bool:
        """Whether the runtimes' own listings add targets (--images, --containers, --all)."""
        return self.images or self.containers


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


def check_timeout(value: float | None) -> float:
    """A batch's time limit: the default, or a finite number of seconds above zero."""
    if value is None:
        return DEFAULT_TIMEOUT
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--timeout {value}: give a number of seconds above 0")
    return value
