"""`atomicscan doctor`: what on this host stops a scan, and how to fix it."""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from atomicscan import isolation, rootless, state
from atomicscan.errors import AtomicscanError
from atomicscan.plugins import Plugins
from atomicscan.runtime import ScannerContainer, last_line


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    #: Scans work, but something is worth fixing (shown, never a failure).
    warn: bool = False

    def to_json(self) -> dict[str, object]:
        return {"check": self.name, "ok": self.ok, "warn": self.warn, "detail": self.detail,
                "fix": self.fix}


def shipped_containers_conf() -> str:
    return str(isolation.shipped_containers_conf())


def run_checks(plugins: Plugins) -> list[Check]:
    user = rootless.rootless()
    if user:
        checks = [Check("user", True, f"running as uid {rootless.host_uid()} without root: "
                        "scans this user's own podman images and containers"),
                  *user_namespace_checks(), _join()]
    else:
        checks = [Check("root", True, "running as root: scans the host's images and "
                        "containers")]
    scanners = list(plugins.scanners)
    checks.append(Check("scanners", bool(scanners),
                        ", ".join(s.name for s in scanners) or "no scanner installed",
                        "install atomicscan from a checkout that has scanners/"))
    for name in plugins.runtimes.names():
        runtime = plugins.runtimes.get(name)
        if user and not runtime.rootless:
            checks.append(Check(f"runtime {name}", True, "needs root: not used by your scans"))
            continue
        if user:
            note = runtime.user_storage_note()
            if note is not None:
                checks.append(Check(f"{name} storage", True, note[0], note[1], warn=True))
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
    try:
        stale = state.stale_runs()
    except AtomicscanError:
        stale = []  # no runtime directory: said above
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


def _join() -> Check:
    """Join podman's user namespace as a user's scan does (the probe run needs it too)."""
    if rootless.needs_join():
        try:
            rootless.join_podman_namespace()
        except AtomicscanError as exc:
            return Check("user namespace", False, str(exc),
                         "fix what is failing above, then: podman unshare true")
    return Check("user namespace", True, "joined podman's user and mount namespaces")


def _has_range(path: Path, names: set[str]) -> bool:
    """Whether ``path`` (/etc/subuid, /etc/subgid) gives one of ``names`` 65536 IDs or more."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in names and fields[2].isdigit() \
                and int(fields[2]) >= 65536:
            return True
    return False


def user_namespace_checks(etc: Path = Path("/etc")) -> list[Check]:
    """What rootless podman, and so a user's scan, needs from the host."""
    uid = rootless.host_uid()
    try:
        login = pwd.getpwuid(uid).pw_name
    except KeyError:
        login = str(uid)
    names = {login, str(uid)}
    helpers = [name for name in ("newuidmap", "newgidmap") if shutil.which(name) is None]
    checks = [Check("uidmap", not helpers,
                    f"missing {' and '.join(helpers)}" if helpers else "newuidmap and newgidmap "
                    "found", "sudo apt install uidmap")]
    missing = [name for name in ("subuid", "subgid") if not _has_range(etc / name, names)]
    checks.append(Check(
        "subordinate IDs", not missing,
        f"no range of 65536 IDs for {login} in {', '.join(f'/etc/{m}' for m in missing)}"
        if missing else f"{login} has ranges in /etc/subuid and /etc/subgid",
        f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {login} "
        "(pick a range no other user has), then podman system migrate"))
    directory = rootless.runtime_dir()
    usable = directory is not None and directory.is_dir() and directory.stat().st_uid == \
        os.geteuid()
    checks.append(Check(
        "runtime directory", usable,
        f"{directory} (XDG_RUNTIME_DIR)" if usable else
        f"XDG_RUNTIME_DIR {'is not set' if directory is None else f'{directory} is not yours'}",
        f"log in with a session (su and sudo don't make one), or: sudo loginctl "
        f"enable-linger {login}; export XDG_RUNTIME_DIR=/run/user/{uid}"))
    if usable and directory is not None and len(str(directory / "containers")) > 50:
        checks.append(Check(
            "runtime directory length", True,
            f"podman's run root {directory / 'containers'} is over 50 characters: podman 4.3 "
            "then can't clean up after a container, and every scan waits 20 s for it",
            f"use /run/user/{uid} as XDG_RUNTIME_DIR", warn=True))
    checks.append(_limits_check())
    return checks


def _limits_check() -> Check:
    """Whether the scanner's cgroup limits apply to a user's scans, or only rlimits."""
    if rootless.cgroup_limits_apply():
        return Check("resource limits", True, "cgroup v2 controllers are delegated to you: "
                     "memory, pids and CPU limits apply to your scanners")
    return Check("resource limits", True,
                 "no cgroup memory and pids controllers are delegated to you (cgroups v1, or "
                 "v2 without delegation): a scanner's memory can't be bounded as a whole, "
                 "only per process (shared memory not at all), so scans are refused unless "
                 "given --allow-rlimits-only",
                 "boot with cgroups v2 (systemd.unified_cgroup_hierarchy=1) and log in "
                 "through systemd-logind", warn=True)
