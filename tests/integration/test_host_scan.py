"""Scanning a whole host: every image and container, batches in parallel, caching, faults."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    ALPINE,
    DEBIAN,
    PACKAGES_SCANNER,
    PURGED,
    RPM_SQLITE,
    Atomicscan,
    Engine,
    HostSnapshot,
    assert_no_leftovers,
    snapshot,
)

CONTAINERS = 30
LABEL = "io.atomicscan.test-host"


@pytest.fixture
def busy_host(engine: Engine, unique: str) -> Iterator[list[str]]:
    """30 containers from 4 images: running ones from the images with a shell, stopped ones
    from all of them."""
    names = []
    runnable = (DEBIAN, PURGED)
    for index in range(CONTAINERS):
        name = f"atomicscan-test-host-{unique}-{index}"
        image = (DEBIAN, PURGED, ALPINE, RPM_SQLITE)[index % 4]
        if image in runnable and index % 3 == 0:
            engine("run", "-d", "--label", LABEL, "--name", name, image, "sleep", "600")
        else:
            engine("create", "--label", LABEL, "--name", name, image, "true")
        names.append(name)
    yield names
    for name in names:
        engine("rm", "--force", name, check=False)


def _listing(engine: Engine) -> tuple[set[str], set[str]]:
    images = {line.removeprefix("sha256:") for line in engine(
        "images", "--no-trunc", "--filter", "dangling=false", "--format",
        "{{.ID}}").stdout.split()}
    containers = set(engine("ps", "--all", "--no-trunc", "--format", "{{.ID}}").stdout.split())
    return images, containers


def test_all_gives_one_result_per_target_and_scans_each_image_once(
    atomicscan: Atomicscan, engine: Engine, busy_host: list[str]
) -> None:
    before = snapshot(atomicscan.state_dir)
    images, containers = _listing(engine)

    run = atomicscan("--scanner", "packages", "--all", "--json", "-j", "2")

    assert run.returncode == 0, run.stderr
    results = run.json()["results"]
    ids = [r["target_id"] for r in results]
    assert len(ids) == len(set(ids)), "a target was scanned twice"
    assert {r["target_id"] for r in results if r["target_type"] == "image"} == images
    assert {r["target_id"] for r in results if r["target_type"] == "container"} == containers
    assert all(r["runtime"] == atomicscan.runtime for r in results)
    by_name = {r["target"]: r for r in results}
    assert len(by_name[busy_host[0]]["packages"]) > 50
    # Without a terminal: no live display, one summary line.
    assert run.stderr.strip().splitlines()[-1].startswith(f"atomicscan: {len(results)} target")
    assert_no_leftovers(before, atomicscan.state_dir)


def test_cached_rescan_reuses_images_and_rescans_containers(
    atomicscan: Atomicscan, busy_host: list[str]
) -> None:
    first = atomicscan("--scanner", "packages", "--all", "--json")
    assert first.returncode == 0, first.stderr

    again = atomicscan("--scanner", "packages", "--all", "--json")

    assert again.returncode == 0, again.stderr
    results = again.json()["results"]
    assert all(r["cached"] for r in results if r["target_type"] == "image")
    assert not any(r["cached"] for r in results if r["target_type"] == "container")
    before = {r["target_id"]: r["packages"] for r in first.json()["results"]}
    assert all(r["packages"] == before[r["target_id"]] for r in results)
    fresh = atomicscan("--scanner", "packages", "--images", "--no-cache", "--json")
    assert not any(r["cached"] for r in fresh.json()["results"])


def _lookups_before_scanning(stderr: str, binary: str) -> list[str]:
    """The runtime commands a --debug run made before it checked the scanner image."""
    commands: list[str] = []
    for line in stderr.splitlines():
        _, marker, command = line.partition("DEBUG: run: ")
        if marker and "{{.Id}}" in command and PACKAGES_SCANNER in command:
            return commands  # the scanner image is checked by podman for containerd's targets
        if not marker or not command.startswith(binary + " "):
            continue
        commands.append(command)
    raise AssertionError("the run never checked its scanner image:\n" + stderr)


def test_resolving_references_costs_the_same_for_three_or_thirty_four(
    atomicscan: Atomicscan, busy_host: list[str]
) -> None:
    # Containers by name, images by full name and by short name, in both runs.
    short_debian = DEBIAN.removeprefix("localhost/")
    few = [busy_host[0], DEBIAN, short_debian]
    many = [*busy_host, DEBIAN, ALPINE, short_debian, RPM_SQLITE]
    runs = {}
    for refs in (few, many):
        run = atomicscan("--scanner", "packages", "--json", "--debug", *refs)
        assert run.returncode == 0, run.stderr
        assert {r["target"] for r in run.json()["results"]} >= set(busy_host) & set(refs)
        binary = "ctr" if atomicscan.runtime == "containerd" else atomicscan.runtime
        runs[len(refs)] = _lookups_before_scanning(run.stderr, binary)

    # The listings answer every reference: none is looked up on its own.
    assert len(runs[len(many)]) == len(runs[len(few)]), runs
    if atomicscan.runtime != "containerd":
        # ctr lists per namespace and reads each image's manifest and config once: its
        # count grows with what the store holds, never with the references asked for.
        assert len(runs[len(many)]) <= 4, runs


def _add_slow_scanner(atomicscan: Atomicscan) -> None:
    """A scanner slow enough (1 s per batch) to act on the host between two batches."""
    atomicscan.add_scanner("slow", (
        'sleep 1; for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        """echo '{"Successful": "true"}' > "/scanout/$k/json"; done"""))


def _once_scanning(atomicscan: Atomicscan, *args: str) -> subprocess.Popen[str]:
    """Start a run of one target per batch, one batch at a time; return once the first
    scanner container is up."""
    proc = atomicscan.popen("--scanner", "slow", "--json", "-j", "1", "--batch-size", "1",
                            *args)
    deadline = time.monotonic() + 120
    while not atomicscan.engine.scanner_containers(atomicscan.state_dir):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    return proc


def _fails_alone(proc: subprocess.Popen[str], victim: str) -> None:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr
    results = {r["target"]: r for r in json.loads(stdout)["results"]}
    assert results[victim]["successful"] is False
    assert "cannot mount" in results[victim]["error"]
    assert all(r["successful"] for name, r in results.items() if name != victim)
    assert len(results) > 1
    assert victim in stderr


def test_a_container_removed_mid_run_fails_alone(
    atomicscan: Atomicscan, engine: Engine, busy_host: list[str]
) -> None:
    _add_slow_scanner(atomicscan)
    # The container the run reaches last: runtimes list containers in their own order.
    listed = engine("ps", "--all", "--format", "{{.Names}}").stdout.split()
    victim = [name for name in listed if name in busy_host][-1]
    before = snapshot(atomicscan.state_dir)
    proc = _once_scanning(atomicscan, "--containers")
    engine("rm", "--force", victim)

    _fails_alone(proc, victim)
    assert_no_leftovers(before, atomicscan.state_dir)


def test_an_image_deleted_mid_run_fails_alone(
    atomicscan: Atomicscan, engine: Engine, unique: str
) -> None:
    _add_slow_scanner(atomicscan)
    # An image of its own (a commit gives it a new ID), so deleting it really deletes it.
    holder = f"atomicscan-test-commit-{unique}"
    victim = f"localhost/atomicscan-test/deleted-{unique}:latest"
    engine("create", "--name", holder, DEBIAN, "true")
    try:
        engine("commit", holder, victim)
        engine("rm", holder)
        before = snapshot(atomicscan.state_dir)
        proc = _once_scanning(atomicscan, DEBIAN, ALPINE, victim)  # the victim comes last
        engine("rmi", "--force", victim)

        _fails_alone(proc, victim)
        assert_no_leftovers(before, atomicscan.state_dir)
    finally:
        engine("rm", "--force", holder, check=False)
        engine("rmi", "--force", victim, check=False)


@pytest.mark.parametrize(("name", "script", "args", "expected"), [
    ("hanger", "sleep 300", ["--timeout", "3"], "timed out after 3s"),
    # Not the shell itself: PID 1 of a container ignores the signals that would kill it.
    ("crasher", 'python3 -c "import os; os.abort()"; exit $?', [], "exited with status 134"),
    ("filler", 'head -c 700000000 /dev/zero > /scanout/fill; exit 1', [], "status 1"),
])
def test_misbehaving_scanners_fail_their_targets_and_the_run_completes(
    atomicscan: Atomicscan, host_before: HostSnapshot, name: str, script: str,
    args: list[str], expected: str,
) -> None:
    atomicscan.add_scanner(name, script)
    started = time.monotonic()

    run = atomicscan("--scanner", name, "--json", *args, DEBIAN, ALPINE)

    assert run.returncode == 1
    results = run.json()["results"]
    assert len(results) == 2
    assert all(expected in r["error"] for r in results), results
    assert time.monotonic() - started < 120
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_a_flooding_scanner_costs_bounded_memory(atomicscan: Atomicscan) -> None:
    atomicscan.add_scanner("flood", (
        "head -c 200000000 /dev/zero | tr '\\0' x; "
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        """echo '{"Successful": "true"}' > "/scanout/$k/json"; done"""))
    argv = ["/usr/bin/time", "-f", "%M", *atomicscan.argv("--scanner", "flood", "--json",
                                                        ALPINE)]
    done = subprocess.run(argv, capture_output=True, text=True, env=atomicscan.env,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    assert peak_kib < 200_000, f"atomicscan held {peak_kib} KiB for a 200 MB flood"


def test_two_concurrent_runs_leave_each_other_alone(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path
) -> None:
    other = Atomicscan(tmp_path / "second", atomicscan.runtime)
    other.state_dir = atomicscan.state_dir  # the same state root: they must not collide
    first = atomicscan.popen("--scanner", "packages", "--images", "--no-cache", "--json")
    second = other.popen("--scanner", "packages", "--images", "--no-cache", "--json")
    out1, err1 = first.communicate(timeout=600)
    out2, err2 = second.communicate(timeout=600)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    import json

    assert json.loads(out1)["run_id"] != json.loads(out2)["run_id"]
    packages = [{r["target_id"]: r["packages"] for r in json.loads(out)["results"]}
                for out in (out1, out2)]
    assert packages[0] == packages[1]
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_ctrl_c_during_all_stops_promptly_and_cleans_up(
    atomicscan: Atomicscan, busy_host: list[str]
) -> None:
    host_before = snapshot(atomicscan.state_dir)  # after the busy host's own mounts
    atomicscan.add_scanner("sleeper", "sleep 300")
    proc = atomicscan.popen("--scanner", "sleeper", "--all", "-j", "2")
    deadline = time.monotonic() + 120
    while len(atomicscan.engine.labelled_containers()) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert time.monotonic() - started < 15
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_retention_keeps_the_newest_runs(atomicscan: Atomicscan) -> None:
    for _ in range(3):
        assert atomicscan("--scanner", "packages", "--keep", "2", ALPINE).returncode == 0
    runs = [d for d in (atomicscan.results_dir / "packages").iterdir() if d.is_dir()]
    assert len(runs) == 2
