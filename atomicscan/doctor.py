"""`atomicscan doctor`: what on this host stops a scan, and how to fix it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from atomicscan import isolation, state
from atomicscan.errors import AtomicscanError
from atomicscan.plugins import Plugins
from atomicscan.runtime import ScannerContainer, last_line


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, object]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def shipped_containers_conf() -> str:
    return str(isolation.shipped_containers_conf())


def run_checks(plugins: Plugins) -> list[Check]:
    checks = [Check("root", os.geteuid() == 0, f"running as uid {os.geteuid()}",
                    "run atomicscan as root (sudo): it mounts root filesystems")]
    scanners = list(plugins.scanners)
    checks.append(Check("scanners", bool(scanners),
                        ", ".join(s.name for s in scanners) or "no scanner installed",
                        "install atomicscan from a checkout that has scanners/"))
    for name in plugins.runtimes.names():
        runtime = plugins.runtimes.get(name)
        try:
            runtime.check()
        except AtomicscanError as exc:
            checks.append(Check(f"runtime {name}", False, str(exc),
                                f"install {name}, or scan with the other runtime"))
            continue
        checks.append(Check(f"runtime {name}", True, "usable"))
        present = []
        for scanner in scanners:
            if runtime.image_id(scanner.image) is None:
                checks.append(Check(f"{name} image {scanner.image}", False, "missing",
                                    runtime.build_hint(scanner.image)))
            else:
                present.append(scanner)
        if present:
            checks.append(_probe_run(plugins, name, present[0].image))
    stale = state.stale_runs()
    checks.append(Check("stale runs", not stale, f"{len(stale)} left by killed runs",
                        "atomicscan cleanup"))
    return checks


def _probe_run(plugins: Plugins, name: str, image: str) -> Check:
    runtime = plugins.runtimes.get(name)
    probe = ScannerContainer(name=f"atomicscan-doctor-{os.getpid()}", image=image,
                             args=("true",), binds=(), timeout=120)
    try:
        result = runtime.run_scanner(probe)
    finally:
        runtime.remove_container(probe.name)
    if result.ok:
        return Check(f"{name} locked-down run", True, f"{image} ran with the contract's flags")
    return Check(f"{name} locked-down run", False, last_line(result.stderr) or "failed",
                 runtime.run_failure_hint())
