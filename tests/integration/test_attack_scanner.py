"""A hostile scanner attacks its own limits: memory, scratch space, logs, namespaces, binds.

Each test runs the attack for real in the packages scanner's image, on podman and on docker,
and checks that it fails its own target only and leaves the host as it was.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerd import DATA_ROOT
from helpers import (
    ALPINE,
    DEBIAN,
    PACKAGES_SCANNER,
    Atomicscan,
    HostSnapshot,
    assert_no_leftovers,
)

from atomicscan import isolation
from atomicscan.builtin.docker import DockerRuntime
from atomicscan.builtin.podman import PodmanRuntime
from atomicscan.errors import MountError
from atomicscan.proc import Completed
from atomicscan.runtime import Bind, Runtime, ScannerContainer

#: Where podman keeps each container's files (its log among them) and its run-time state.
PODMAN_CONTAINER_DIRS = (Path("/var/lib/containers/storage/overlay-containers"),
                         Path("/run/containers/storage/overlay-containers"))
#: A json a scanner writes for a target it judged: enough for a successful result.
GOOD = r"""printf '{"Successful":"true","Custom":{"judged":"yes"}}' > "/scanout/$k/json";"""


def debian_first(rest: str) -> str:
    """A scanner that judges the Debian target properly, then does ``rest``."""
    return ('for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
            f'if [ -e "$d/etc/debian_version" ]; then {GOOD} fi; done\n{rest}')


def results_by_ref(run_json: dict[str, object]) -> dict[str, dict[str, object]]:
    results = run_json["results"]
    assert isinstance(results, list)
    return {str(result["target"]): result for result in results}


def error_lines(stderr: str) -> list[str]:
    """The CLI's error lines; every line of its stderr must be clean, flood or not."""
    lines = stderr.strip().splitlines()
    assert all(line.isprintable() for line in lines), lines
    return [line for line in lines if line.startswith("atomicscan: error:")]


def run_host(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def runtime_api(name: str) -> Runtime:
    return PodmanRuntime() if name == "podman" else DockerRuntime()


def run_probe(runtime: str, script: str, *binds: Bind) -> Completed:
    """``script`` in a scanner container started through the runtime plugin itself."""
    container = ScannerContainer(name=f"atomicscan-test-probe-{uuid.uuid4().hex[:8]}",
                                 image=PACKAGES_SCANNER, args=("sh", "-c", script),
                                 binds=binds, timeout=120)
    return runtime_api(runtime).run_scanner(container)


def biggest_file(roots: tuple[Path, ...]) -> int:
    biggest = 0
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                with contextlib.suppress(OSError):
                    biggest = max(biggest, (Path(dirpath) / name).lstat().st_size)
    return biggest


@contextlib.contextmanager
def watching_biggest_file(roots: tuple[Path, ...]) -> Iterator[list[int]]:
    """Samples the biggest file under ``roots`` twice a second while the block runs."""
    seen = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            seen[0] = max(seen[0], biggest_file(roots))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        stop.set()
        sampler.join()
        seen[0] = max(seen[0], biggest_file(roots))


# -- memory ------------------------------------------------------------------------------


def test_a_memory_hog_is_killed_and_fails_its_own_target_only(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    # Three times the 2 GiB limit, touched page by page (bytearray zero-fills it).
    atomicscan.add_scanner("hog", debian_first(
        "exec python3 -c 'b = bytearray(6 << 30); print(len(b))'"))

    run = atomicscan("--scanner", "hog", "--batch-size", "2", "--json", DEBIAN, ALPINE,
                     timeout=300)

    assert run.returncode == 1, run.stderr
    by_ref = results_by_ref(run.json())
    hog = by_ref[ALPINE]
    assert hog["successful"] is False
    limit = isolation.size_text(isolation.DEFAULT_MEMORY_BYTES)
    assert "status 137" in str(hog["error"]) and f"memory limit of {limit}" in str(hog["error"])
    judged = by_ref[DEBIAN]
    assert judged["successful"] is True and judged["custom"] == {"judged": "yes"}
    assert any("status 137" in note for note in judged["notes"])  # type: ignore[attr-defined]
    (line,) = error_lines(run.stderr)
    assert line.startswith("atomicscan: error: image") and "memory limit" in line
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_an_oom_kill_leaves_nothing_in_the_working_directory(
    atomicscan: Atomicscan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # conmon (podman) writes a file named "oom" into the directory podman was started from.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    atomicscan.add_scanner("hog", "exec python3 -c 'b = bytearray(6 << 30)'")

    run = atomicscan("--scanner", "hog", "--json", ALPINE, timeout=300)

    assert run.returncode == 1, run.stderr
    assert sorted(p.name for p in cwd.iterdir()) == []


# -- scratch space -----------------------------------------------------------------------

FILL = r"""
fill() {
  head -c 2000000000 /dev/zero > "$1/fill" 2>/dev/null; wc -c < "$1/fill" 2>/dev/null || echo 0
}
tmp=$(fill /tmp); vartmp=$(fill /var/tmp); shm=$(fill /dev/shm); run=$(fill /run)
for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"
  printf '{"Successful":"true","Custom":{"tmp":%s,"var_tmp":%s,"shm":%s,"run":%s}}' \
    "$tmp" "$vartmp" "$shm" "$run" > "/scanout/$k/json"
done
"""


def test_filling_the_scratch_tmpfs_stops_at_its_size(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    atomicscan.add_scanner("filler", FILL)

    run = atomicscan("--scanner", "filler", "--batch-size", "2", "--json", DEBIAN, ALPINE,
                     timeout=300)

    assert run.returncode == 0, run.stderr
    for result in run.json()["results"]:
        filled = result["custom"]
        assert 0 < filled["tmp"] <= isolation.DEFAULT_TMPFS_BYTES
        assert 0 < filled["var_tmp"] <= isolation.DEFAULT_TMPFS_BYTES
        assert 0 < filled["shm"] <= isolation.SHM_BYTES
        assert filled["run"] <= isolation.RUN_TMPFS_BYTES
    assert_no_leftovers(host_before, atomicscan.state_dir)


# -- logs --------------------------------------------------------------------------------


def test_a_stdout_flood_leaves_no_log_and_keeps_the_last_words(
    atomicscan: Atomicscan, host_before: HostSnapshot, runtime: str
) -> None:
    # 1.5 GB on stdout and 300 MB on stderr: several seconds of flooding on this machine.
    atomicscan.add_scanner("flooder", debian_first(
        "head -c 1500000000 /dev/zero\n"
        "yes 'flooding stderr' | head -c 300000000 >&2\n"
        "echo 'the last words' >&2; exit 3"))
    roots = PODMAN_CONTAINER_DIRS if runtime == "podman" else (DATA_ROOT / "containers",)

    with watching_biggest_file(roots) as biggest:
        run = atomicscan("--scanner", "flooder", "--batch-size", "2", "--json", DEBIAN, ALPINE,
                         timeout=600)

    assert biggest[0] < 64 * isolation.MiB, f"a {biggest[0]} byte file appeared under {roots}"
    assert run.returncode == 1, run.stderr
    by_ref = results_by_ref(run.json())
    assert by_ref[ALPINE]["error"] == "the scanner exited with status 3: the last words"
    assert by_ref[DEBIAN]["successful"] is True
    (line,) = error_lines(run.stderr)
    assert line.endswith("the scanner exited with status 3: the last words")
    assert_no_leftovers(host_before, atomicscan.state_dir)


# -- namespaces --------------------------------------------------------------------------

UNSHARE = r"""
try() { if "$@" >/dev/null 2>&1; then echo ok; else echo refused; fi; }
urm=$(try unshare -Urm true); u=$(try unshare -U true); m=$(try unshare -m true)
n=$(try unshare -n true); c=$(try unshare -C true)
ctypes=$(python3 -c '
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print("ok" if libc.unshare(0x10000000 | 0x00020000) == 0 else "refused")')
# Threads and child processes must keep working: libc falls back from clone3 to clone.
works=$(python3 -c '
import subprocess, threading
t = threading.Thread(target=print); t.start(); t.join()
print("yes" if subprocess.run(["true"]).returncode == 0 else "no")' | tail -1)
for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"
  printf '{"Successful":"true","Custom":{"urm":"%s","u":"%s","m":"%s","n":"%s","c":"%s",' \
    "$urm" "$u" "$m" "$n" "$c" > "/scanout/$k/json"
  printf '"ctypes":"%s","works":"%s"}}' "$ctypes" "$works" >> "/scanout/$k/json"
done
"""


def test_a_scanner_cannot_make_namespaces_of_its_own(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    atomicscan.add_scanner("unsharer", UNSHARE)

    run = atomicscan("--scanner", "unsharer", "--json", DEBIAN, ALPINE)

    assert run.returncode == 0, run.stderr
    for result in run.json()["results"]:
        probe = result["custom"]
        assert probe["works"] == "yes", "threads and subprocesses must still work"
        for attempt in ("urm", "u", "m", "n", "c", "ctypes"):
            assert probe[attempt] == "refused", f"unshare ({attempt}) worked in the scanner"
    assert_no_leftovers(host_before, atomicscan.state_dir)


# -- binds, at the runtime's own interface ---------------------------------------------------

WRITE_UNDER = r"""
for p in /x/w /x/sub/w; do if touch "$p" 2>/dev/null; then echo "wrote $p"; fi; done
ls /x/sub 2>/dev/null | sed 's/^/sees /'
grep ' /x' /proc/self/mountinfo >&2
"""


def test_a_read_only_bind_is_read_only_all_the_way_down(runtime: str, tmp_path: Path) -> None:
    shown = tmp_path / "shown"
    below = shown / "sub"
    below.mkdir(parents=True)
    os.chmod(shown, 0o777)  # noqa: S103 - writable to the scanner's user unless read-only
    run_host(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs", str(below)])
    try:
        (below / "victim").write_text("host")
        done = run_probe(runtime, WRITE_UNDER, Bind(shown, "/x"))
        assert done.ok, done.stderr
        assert "wrote" not in done.stdout, done.stdout
        assert "sees" not in done.stdout, "a mount below a bind must not be shown"
        assert sorted(p.name for p in below.iterdir()) == ["victim"]
        assert (below / "victim").read_text() == "host"
        # The same probe on a writable bind does write: the check above is not vacuous.
        assert "wrote /x/w" in run_probe(runtime, WRITE_UNDER,
                                         Bind(shown, "/x", read_only=False)).stdout
    finally:
        run_host(["umount", str(below)])


@pytest.mark.parametrize("part", ["source", "destination"])
def test_a_bind_that_would_add_mount_options_is_refused_before_running(
    runtime: str, tmp_path: Path, part: str
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "file").write_text("mine")
    owner = [(p.stat().st_uid, p.stat().st_gid) for p in (victim, victim / "file")]
    trick = tmp_path / "victim,U=true"
    trick.mkdir()
    bind = (Bind(trick, "/x") if part == "source" else Bind(victim, "/x,U=true"))
    name = f"atomicscan-test-inject-{uuid.uuid4().hex[:8]}"
    container = ScannerContainer(name=name, image=PACKAGES_SCANNER,
                                 args=("true",), binds=(bind,), timeout=120)
    api = runtime_api(runtime)

    with pytest.raises(MountError) as caught:
        api.run_scanner(container)

    assert "\n" not in str(caught.value)
    assert [(p.stat().st_uid, p.stat().st_gid) for p in (victim, victim / "file")] == owner
    assert all(found != name for found, _ in api.labelled_containers("io.atomicscan.run"))


# -- the limits as the kernel sees them ----------------------------------------------------

LIMITS = r"""
cg=/sys/fs/cgroup
if [ -e $cg/memory/memory.limit_in_bytes ]; then
  echo "memory $(cat $cg/memory/memory.limit_in_bytes)"
  echo "memsw $(cat $cg/memory/memory.memsw.limit_in_bytes)"
  echo "quota $(cat $cg/cpu/cpu.cfs_quota_us) $(cat $cg/cpu/cpu.cfs_period_us)"
  echo "shares $(cat $cg/cpu/cpu.shares)"
  echo "pids $(cat $cg/pids/pids.max)"
fi
"""


def test_the_kernel_holds_the_scanner_to_its_limits(runtime: str) -> None:
    done = run_probe(runtime, LIMITS)
    assert done.ok, done.stderr
    seen = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    if not seen:
        pytest.skip("this host has no cgroup v1 controllers to read the limits from")
    assert seen["memory"] == seen["memsw"] == str(isolation.DEFAULT_MEMORY_BYTES)
    quota, _period = (int(v) for v in seen["quota"].split())
    assert quota == -1, "a weight, not a CFS cap, by default"
    assert seen["shares"] == str(isolation.CPU_SHARES)
    assert seen["pids"] == str(isolation.PIDS_LIMIT)
