"""Undo what runs that died (SIGKILL, power loss) left behind, and nothing else."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from atomicscan import mounts, state
from atomicscan.resolve import usable_runtimes
from atomicscan.runtime import RUN_LABEL, RuntimeRegistry

log = logging.getLogger(__name__)


@dataclass
class CleanupReport:
    containers: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.containers or self.mounts or self.runs)

    def to_json(self) -> dict[str, list[str]]:
        return {"containers": self.containers, "mounts": self.mounts, "runs": self.runs}


def _dead_run_of(name: str, label: str, ours: str, dead: set[str]) -> str | None:
    """The dead run of ours that started container ``name``, or ``None``.

    Anyone can put our label on a container; only one that names a run of this state root
    whose directory is still here and whose process is gone, and is named the way that run
    names its scanner containers, is removed.
    """
    run_id, _, tag = label.partition("@")
    if tag != ours or not state.is_run_id(run_id) or run_id not in dead:
        return None
    prefix = f"atomicscan-{run_id}-"
    if not (name.startswith(prefix) and name.removeprefix(prefix).isdigit()):
        return None
    return run_id


def clean_stale(runtimes: RuntimeRegistry, root: Path | None = None, *,
                always_containers: bool = False) -> CleanupReport:
    """Remove containers, mounts and state of dead runs; live runs are never touched.

    Container listing costs a runtime call, so it only happens when a dead run's directory
    exists, unless ``always_containers`` (the explicit ``atomicscan cleanup``).
    """
    report = CleanupReport()
    stale = state.stale_runs(root)
    if not stale and not always_containers:
        return report
    # By name, as the report lists them; which ones are usable is decided in one place.
    usable = {r.name: r for r in sorted(usable_runtimes(runtimes).usable, key=lambda r: r.name)}
    dead = {directory.name for directory in stale}
    ours = state.root_tag(root)
    for runtime in usable.values():
        for name, value in runtime.labelled_containers(RUN_LABEL):
            run_id = _dead_run_of(name, value, ours, dead)
            if run_id is None:
                continue
            log.info("removing %s container %s of dead run %s", runtime.name, name, run_id)
            runtime.remove_container(name)
            report.containers.append(f"{runtime.name}:{name}")
    for directory in stale:
        for point in mounts.mounts_under(directory):
            mounts.unmount(point)
            report.mounts.append(str(point))
        for record in reversed(state.read_journal(directory)):
            runtime_name = str(record.get("runtime", ""))
            owner = usable.get(runtime_name)
            if owner is None:
                log.warning("cannot undo %s: runtime %s unusable", record, runtime_name)
                continue
            owner.undo(record)
            report.mounts.append(f"{runtime_name}:{record.get('action')}:{record.get('id')}")
        if not mounts.mounts_under(directory):
            shutil.rmtree(directory, ignore_errors=True)
            report.runs.append(directory.name)
    return report
