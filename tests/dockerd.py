"""A private dockerd for the real tier: its own data root and socket, no host network changes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

DATA_ROOT = Path("/var/lib/atomicscan-test-docker")
RUN_DIR = Path("/run/atomicscan-test-docker")
SOCKET = RUN_DIR / "docker.sock"
PIDFILE = RUN_DIR / "docker.pid"
DOCKER_HOST = f"unix://{SOCKET}"


def _config() -> dict[str, object]:
    return {
        "data-root": str(DATA_ROOT),
        "exec-root": str(RUN_DIR / "exec"),
        "pidfile": str(PIDFILE),
        "hosts": [DOCKER_HOST],
        "storage-driver": "overlay2",
        # Leave the host's network exactly as it is.
        "iptables": False, "ip-forward": False, "ip-masq": False, "bridge": "none",
        "exec-opts": ["native.cgroupdriver=cgroupfs"],
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _stop_stale() -> None:
    """A dockerd left by a test session that was killed: stop it by its pidfile."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        _stop_pid(int(PIDFILE.read_text().strip()))


def _unmount_under(root: Path) -> None:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(str(root) + "/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)


def docker(*args: str, check: bool = True, stdin: int | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOCKER_HOST=DOCKER_HOST)
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          env=env, timeout=300, stdin=stdin)


@contextlib.contextmanager
def private_dockerd() -> Iterator[str]:
    """Start dockerd, yield its DOCKER_HOST, and stop it by PID, whatever happened."""
    if shutil.which("dockerd") is None:
        raise RuntimeError("dockerd is missing: run scripts/setup (it installs docker.io)")
    _stop_stale()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    config = RUN_DIR / "daemon.json"
    config.write_text(json.dumps(_config()))
    log = (RUN_DIR / "dockerd.log").open("w")
    proc = subprocess.Popen(["dockerd", "--config-file", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while docker("version", check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"private dockerd did not start; see {RUN_DIR / 'dockerd.log'}")
            time.sleep(0.2)
        yield DOCKER_HOST
    finally:
        _stop_pid(proc.pid)
        proc.wait()
        log.close()
        _unmount_under(DATA_ROOT)
        _unmount_under(RUN_DIR)


def load_from_podman(image: str, podman_env: dict[str, str]) -> None:
    """Move an image built with podman into the private dockerd, unless it is there already."""
    podman_id = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", image],
                               capture_output=True, text=True, check=True,
                               env=podman_env).stdout.strip()
    have = docker("image", "inspect", "--format", "{{.Id}}", image, check=False).stdout.strip()
    if have.removeprefix("sha256:") == podman_id:
        return
    save = subprocess.Popen(["podman", "save", "--format", "docker-archive", image],
                            stdout=subprocess.PIPE, env=podman_env)
    assert save.stdout is not None
    docker("load", stdin=save.stdout.fileno())
    save.stdout.close()
    if save.wait() != 0:
        raise RuntimeError(f"podman save {image} failed")
