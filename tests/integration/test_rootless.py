"""A user without root scans their own podman storage (issue 16), on a throwaway user.

The user is real (useradd, subordinate IDs, rootless podman with overlay storage) and runs
atomicscan as scripts/install installs it for a host. Every test checks that nothing of the
run is left: not in the user's podman namespace (mounts), not in its storage (image and
container mounts, labelled containers), not in its run state, and nothing on root's side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    ALPINE,
    DEBIAN,
    PACKAGES_SCANNER,
    PURGED,
    RPM_BDB,
    RPM_SQLITE,
    HostSnapshot,
    assert_locked_down,
    assert_no_leftovers,
    mounted_image,
    packages_of,
    script_scanner,
    snapshot,
)
from rootless_user import RootlessUser, results_of, throwaway_user
from truth import apk_packages, dpkg_packages, rpm_packages

#: Built by the user with podman build: an apk database written here, so its truth is known.
USER_BUILT = "localhost/atomicscan-test/user-built:latest"
USER_BUILT_APKDB = """\
P:rootless-a
V:1.0-r0
A:x86_64

P:rootless-b
V:2.5-r1
A:noarch

P:rootless-c
V:0.1-r7
A:x86_64
"""
PROBE = r"""
limit() { sed -n "s/^$1  *\([0-9a-z]*\) .*/\1/p" /proc/self/limits; }
for d in /scanin/*; do
  k=$(basename "$d"); mkdir -p "/scanout/$k"
  if touch "$d/pwned" 2>/dev/null; then t=yes; else t=no; fi
  rm -f "$d/etc/os-release" 2>/dev/null
  if [ -e "$d/etc/os-release" ]; then r=no; else r=yes; fi
  if touch /pwned-root 2>/dev/null; then root=yes; else root=no; fi
  cap=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
  nets=$(ls /sys/class/net | tr '\n' ' ')
  nnp=$(sed -n 's/^NoNewPrivs:[[:space:]]*//p' /proc/self/status)
  printf '{"Successful":"true","Custom":{"uid":"%s","capeff":"%s","touch":"%s","rm":"%s",' \
    "$(id -u)" "$cap" "$t" "$r" > "/scanout/$k/json"
  printf '"rootfs_write":"%s","nets":"%s","nnp":"%s","nproc":"%s","data":"%s"}}' \
    "$root" "$nets" "$nnp" "$(limit 'Max processes')" "$(limit 'Max data size')" \
    >> "/scanout/$k/json"
done
"""
#: Tries to take more memory and processes than its limits allow, and says how far it got.
EXHAUST = r"""
if python3 -c 'bytearray(600 * 1024 * 1024)' 2>/dev/null; then mem=yes; else mem=no; fi
# The shell dies when it can't fork: count in a subshell, and read how far it got.
(n=0; while [ $n -lt 1500 ]; do sleep 30 & n=$((n+1)); echo $n > /tmp/forks; done) 2>/dev/null
n=$(cat /tmp/forks)
for d in /scanin/*; do
  k=$(basename "$d"); mkdir -p "/scanout/$k"
  printf '{"Successful":"true","Custom":{"mem600m":"%s","forks":"%s"}}' "$mem" "$n" \
    > "/scanout/$k/json"
done
"""
SLEEPER = "sleep 300"
#: This host has cgroups v1: a user's scan runs only with per-process limits, when asked.
RLIMITS = ("--allow-rlimits-only",)


def _scanner(user: RootlessUser, name: str, script: str) -> None:
    user.write(f"atomicscan.d/{name}.toml", script_scanner(name, script))


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RootlessUser]:
    with throwaway_user((DEBIAN, RPM_SQLITE, RPM_BDB, ALPINE, PACKAGES_SCANNER)) as made:
        context = made.home / "build"
        made.write("build/installed", USER_BUILT_APKDB)
        made.write("build/Containerfile", f"FROM {ALPINE}\nCOPY installed /lib/apk/db/installed\n")
        made.podman("build", "--network", "none", "--pull=never", "-t", USER_BUILT, str(context))
        yield made


@pytest.fixture
def user_before(user: RootlessUser) -> Iterator[dict[str, frozenset[str]]]:
    before = user.snapshot()
    yield before
    user.assert_no_leftovers(before)


@pytest.fixture
def root_before(tmp_path: Path) -> Iterator[HostSnapshot]:
    """Root's side: mounts under /run/atomicscan, root's labelled containers and podman
    mounts, temp files, and /var/lib/atomicscan, which a user's run must never touch."""
    state_dir = tmp_path / "root-state"
    before = snapshot(state_dir)
    results = _listing(Path("/var/lib/atomicscan"))
    yield before
    assert_no_leftovers(before, state_dir)
    assert _listing(Path("/var/lib/atomicscan")) == results


def _listing(path: Path) -> list[str]:
    return sorted(str(p) for p in path.rglob("*")) if path.exists() else []


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("atomicscan: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_inventories_of_the_users_images_and_container_are_exact(
    user: RootlessUser, user_before: dict[str, frozenset[str]], root_before: HostSnapshot
) -> None:
    container = f"rl-{os.getpid()}"
    user.podman("create", "--name", container, RPM_SQLITE, "/true")
    try:
        run = user.atomicscan(*RLIMITS, "--scanner", "packages", "--json", "--no-cache", DEBIAN,
                              RPM_SQLITE, RPM_BDB, ALPINE, USER_BUILT, container)
    finally:
        user.podman("rm", "--force", container)

    assert run.returncode == 0, run.stderr
    results = results_of(run)
    with mounted_image(DEBIAN) as root:
        assert packages_of(results[DEBIAN]) == dpkg_packages(root)
    with mounted_image(RPM_SQLITE) as root:
        assert packages_of(results[RPM_SQLITE]) == rpm_packages(root, bdb=False)
        assert packages_of(results[container]) == rpm_packages(root, bdb=False)
    with mounted_image(RPM_BDB) as root:
        assert packages_of(results[RPM_BDB]) == rpm_packages(root, bdb=True)
    with mounted_image(ALPINE) as root:
        assert packages_of(results[ALPINE]) == apk_packages(root)
    assert packages_of(results[USER_BUILT]) == [
        ("rootless-a", "1.0-r0", "x86_64"), ("rootless-b", "2.5-r1", "noarch"),
        ("rootless-c", "0.1-r7", "x86_64")]
    assert results[container]["target_type"] == "container"
    # Results and history in the user's XDG data directory, owned by the user.
    report_dirs = list((user.data_dir / "packages").glob("*/report.json"))
    assert report_dirs, sorted(user.data_dir.rglob("*"))
    assert all(p.stat().st_uid == user.uid for p in report_dirs)
    assert (user.data_dir / "history.db").stat().st_uid == user.uid


def test_the_scanner_is_locked_down_and_cannot_write_the_target(
    user: RootlessUser, user_before: dict[str, frozenset[str]], root_before: HostSnapshot
) -> None:
    _scanner(user, "probe", PROBE)
    digest = ("p=$(podman image mount " + ALPINE + ") && cd $p && "
              "find . -printf '%p %s %m %T@\\n' | sort | sha256sum; "
              "podman image unmount " + ALPINE + " >/dev/null")
    before = user.podman("unshare", "sh", "-c", digest).stdout

    run = user.atomicscan(*RLIMITS, "--scanner", "probe", "--json", ALPINE, "--memory", "512m")

    assert run.returncode == 0, run.stderr
    probe = results_of(run)[ALPINE]["custom"]
    assert_locked_down(probe)
    assert probe["nproc"] == "1024"
    assert probe["data"] == str(512 * 1024 * 1024)  # --memory bounds each process's data
    assert user.podman("unshare", "sh", "-c", digest).stdout == before


def test_a_scanner_cannot_take_more_memory_or_processes_than_its_limits(
    user: RootlessUser, user_before: dict[str, frozenset[str]], root_before: HostSnapshot
) -> None:
    # cgroups v1 here: rootless podman ignores --memory and --pids-limit; rlimits hold.
    _scanner(user, "exhaust", EXHAUST)

    run = user.atomicscan(*RLIMITS, "--scanner", "exhaust", "--json", "--memory", "256m", ALPINE)

    assert run.returncode == 0, run.stderr
    custom = results_of(run)[ALPINE]["custom"]
    assert custom["mem600m"] == "no"
    assert int(custom["forks"]) < 1024


def _wait_for_scanner(user: RootlessUser, scan: subprocess.Popen[str],
                      before: dict[str, frozenset[str]]) -> None:
    deadline = time.monotonic() + 120
    while not user.snapshot()["containers"] - before["containers"]:
        assert scan.poll() is None, scan.communicate()
        assert time.monotonic() < deadline, "the scanner container never started"
        time.sleep(0.3)


def test_ctrl_c_mid_scan_cleans_up_and_exits_130(
    user: RootlessUser, user_before: dict[str, frozenset[str]], root_before: HostSnapshot
) -> None:
    _scanner(user, "sleeper", SLEEPER)
    scan = user.popen(str(user.command), *RLIMITS, "--scanner", "sleeper", DEBIAN)
    _wait_for_scanner(user, scan, user_before)
    os.killpg(scan.pid, signal.SIGINT)
    _out, err = scan.communicate(timeout=120)
    assert scan.returncode == 130, err
    assert "interrupted" in _one_error_line(err)
    # user_before: no mount, container or state of the run is left


def test_sigkill_leaves_state_that_the_users_cleanup_removes(
    user: RootlessUser, user_before: dict[str, frozenset[str]], root_before: HostSnapshot
) -> None:
    _scanner(user, "sleeper", SLEEPER)
    scan = user.popen(str(user.command), *RLIMITS, "--scanner", "sleeper", DEBIAN, ALPINE)
    _wait_for_scanner(user, scan, user_before)
    os.killpg(scan.pid, signal.SIGKILL)
    scan.communicate(timeout=60)
    left = user.snapshot()
    assert left["mounts"] - user_before["mounts"], "SIGKILL should leave the run's mounts"
    assert left["state"] - user_before["state"]

    cleanup = user.atomicscan("cleanup", "--json")

    assert cleanup.returncode == 0, cleanup.stderr
    removed = json.loads(cleanup.stdout)
    assert removed["containers"] and removed["runs"]
    # user_before and root_before check that nothing else is left, on either side


def test_what_a_user_cannot_do_is_refused_in_one_line(
    user: RootlessUser, user_before: dict[str, frozenset[str]], root_before: HostSnapshot
) -> None:
    with tempfile.TemporaryDirectory(prefix="rootonly-", dir="/var/tmp") as hidden:
        Path(hidden, "etc").mkdir()
        os.chmod(hidden, 0o700)
        run = user.atomicscan(*RLIMITS, "--scanner", "packages", "--rootfs", hidden)
        assert run.returncode == 2
        assert "not readable" in _one_error_line(run.stderr)
    # Root's storage is another user's storage: the user can't reach it, not even by path.
    with mounted_image(PURGED) as root_view:
        run = user.atomicscan(*RLIMITS, "--scanner", "packages", "--rootfs", str(root_view))
        assert run.returncode == 2
        _one_error_line(run.stderr)
    run = user.atomicscan(*RLIMITS, "--scanner", "packages", PURGED)  # only root has it
    assert run.returncode == 2
    assert "neither a container nor an image in podman" in _one_error_line(run.stderr)
    for runtime in ("docker", "containerd"):
        run = user.atomicscan(*RLIMITS, "--scanner", "packages", "--runtime", runtime, ALPINE)
        assert run.returncode == 1, run.stderr
        line = _one_error_line(run.stderr)
        assert line.startswith(f"atomicscan: error: {runtime}: "), line


def test_a_scan_without_a_whole_memory_limit_must_be_asked_for(
    user: RootlessUser, user_before: dict[str, frozenset[str]], root_before: HostSnapshot
) -> None:
    checks = {c["check"]: c for c in json.loads(user.atomicscan("doctor", "--json").stdout)}
    run = user.atomicscan("--scanner", "packages", "--json", ALPINE)
    if not checks["resource limits"]["warn"]:  # cgroup v2 delegated: the limits apply
        assert run.returncode == 0, run.stderr
        return
    assert run.returncode == 2
    assert "--allow-rlimits-only" in _one_error_line(run.stderr)


def test_a_rootfs_in_the_users_home_is_scanned(
    user: RootlessUser, user_before: dict[str, frozenset[str]], root_before: HostSnapshot
) -> None:
    user.write("chroot/lib/apk/db/installed", USER_BUILT_APKDB)
    run = user.atomicscan(*RLIMITS, "--scanner", "packages", "--json", "--rootfs",
                          str(user.home / "chroot"))
    assert run.returncode == 0, run.stderr
    assert len(packages_of(next(iter(results_of(run).values())))) == 3


def test_doctor_as_the_user_says_what_is_there_and_what_is_missing(
    user: RootlessUser, user_before: dict[str, frozenset[str]]
) -> None:
    run = user.atomicscan("doctor", "--json")
    checks = {check["check"]: check for check in json.loads(run.stdout)}
    for name in ("user", "uidmap", "subordinate IDs", "runtime directory", "user namespace",
                 "runtime podman", "podman locked-down run"):
        assert checks[name]["ok"], checks[name]
    assert checks["resource limits"]["warn"]  # cgroups v1 here: rlimits only
    assert "podman storage" not in checks  # overlay: nothing to say
    assert checks["runtime docker"]["detail"].startswith("needs root")

    missing = user.atomicscan("doctor", "--json",
                              env=user.env(XDG_RUNTIME_DIR=str(user.home / "nowhere")))
    checks = {check["check"]: check for check in json.loads(missing.stdout)}
    assert missing.returncode == 1
    assert not checks["runtime directory"]["ok"]
    assert "loginctl enable-linger" in checks["runtime directory"]["fix"]


def test_the_users_own_scan_never_sees_roots_runs(
    user: RootlessUser, user_before: dict[str, frozenset[str]], root_before: HostSnapshot
) -> None:
    # Naming the runtime loads the runtimes before the namespace is joined: still one thread.
    run = user.atomicscan(*RLIMITS, "--runtime", "podman", "--scanner", "packages", "--json",
                          ALPINE)
    assert run.returncode == 0, run.stderr
    root_state = subprocess.run(["ls", "/run/atomicscan"], capture_output=True, text=True,
                                check=False).stdout
    cleanup = user.atomicscan("cleanup", "--json")
    assert cleanup.returncode == 0
    assert json.loads(cleanup.stdout) == {"containers": [], "mounts": [], "runs": []}
    assert subprocess.run(["ls", "/run/atomicscan"], capture_output=True, text=True,
                          check=False).stdout == root_state
