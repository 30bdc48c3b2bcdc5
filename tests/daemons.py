"""What the tests' private daemons (dockerd, containerd, PostgreSQL) share: stopping a
process by its PID, and undoing the mounts it left under its own directories."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, seconds: float = 30, step: float = 0.1) -> bool:
    """Whether ``pid`` ended within ``seconds``."""
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(step)
    return not alive(pid)


def stop_pid(pid: int) -> None:
    """SIGTERM, up to 30 s to end, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_stale(pidfile: Path) -> None:
    """A daemon left by a session that was killed: stop it by its pidfile."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        stop_pid(int(pidfile.read_text().strip()))


def unmount_under(root: Path) -> None:
    """Every mount below ``root``, deepest first (lazily: a busy one goes when it is free)."""
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(str(root) + "/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
