"""Ctrl-C, SIGTERM and SIGKILL in the middle of a scan leave nothing of ours behind."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from helpers import DEBIAN, Atomicscan, HostSnapshot, assert_no_leftovers, snapshot

SLEEPER = "sleep 300"


def _wait_for_scanner_container(atomicscan: Atomicscan, proc: subprocess.Popen[str],
                                timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        names = atomicscan.engine.labelled_containers()
        if names:
            return names[0]
        time.sleep(0.2)
    raise AssertionError("the scanner container never started")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_mid_scan_cleans_up_and_exits_130(
    atomicscan: Atomicscan, host_before: HostSnapshot, signum: int
) -> None:
    atomicscan.add_scanner("sleeper", SLEEPER)
    proc = atomicscan.popen("--scanner", "sleeper", DEBIAN)
    _wait_for_scanner_container(atomicscan, proc)

    started = time.monotonic()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 130
    assert time.monotonic() - started < 30
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0], stderr
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_after_sigkill_cleanup_removes_what_the_dead_run_left(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    atomicscan.add_scanner("sleeper", SLEEPER)
    proc = atomicscan.popen("--scanner", "sleeper", DEBIAN)
    _wait_for_scanner_container(atomicscan, proc)
    proc.kill()
    proc.communicate(timeout=30)
    leaked = snapshot(atomicscan.state_dir)
    assert leaked.mounts != host_before.mounts, "the killed run should have left its mounts"

    run = atomicscan("cleanup", "--json")

    assert run.returncode == 0, run.stderr
    removed = run.json()
    assert removed["containers"] and removed["runs"]
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_next_scan_cleans_up_after_a_killed_run(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    atomicscan.add_scanner("sleeper", SLEEPER)
    proc = atomicscan.popen("--scanner", "sleeper", DEBIAN)
    _wait_for_scanner_container(atomicscan, proc)
    proc.kill()
    proc.communicate(timeout=30)

    run = atomicscan("--scanner", "packages", "--json", DEBIAN)

    assert run.returncode == 0, run.stderr
    assert_no_leftovers(host_before, atomicscan.state_dir)
