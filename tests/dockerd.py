"""A private dockerd for the real tier: its own data root and socket, no host network changes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from daemons import stop_stale, unmount_under

#: ATOMICSCAN_TEST_DOCKERD gives parallel test sessions (one per engineer) a dockerd each.
NAME = os.environ.get("ATOMICSCAN_TEST_DOCKERD", "atomicscan-test-docker")
DATA_ROOT = Path("/var/lib") / NAME
RUN_DIR = Path("/run") / NAME
DOCKER_HOST = f"unix://{RUN_DIR / 'docker.sock'}"


class Paths:
    """Where one private dockerd keeps everything; a name per user (tests, benchmarks)."""

    def __init__(self, name: str = NAME) -> None:
        self.data_root = Path("/var/lib") / name
        self.run_dir = Path("/run") / name
        self.pidfile = self.run_dir / "docker.pid"
        self.docker_host = f"unix://{self.run_dir / 'docker.sock'}"


def _config(paths: Paths) -> dict[str, object]:
    return {
        "data-root": str(paths.data_root),
        "exec-root": str(paths.run_dir / "exec"),
        "pidfile": str(paths.pidfile),
        "hosts": [paths.docker_host],
        "storage-driver": "overlay2",
        # Leave the host's network exactly as it is.
        "iptables": False, "ip-forward": False, "ip-masq": False, "bridge": "none",
        "exec-opts": ["native.cgroupdriver=cgroupfs"],
    }


def docker(*args: str, check: bool = True, stdin: int | None = None,
           host: str = DOCKER_HOST) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOCKER_HOST=host)
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          env=env, timeout=300, stdin=stdin)


@contextlib.contextmanager
def private_dockerd(name: str = NAME) -> Iterator[str]:
    """Start dockerd, yield its DOCKER_HOST, and stop it by PID, whatever happened."""
    if shutil.which("dockerd") is None:
        raise RuntimeError("dockerd is missing: run scripts/setup (it installs docker.io)")
    paths = Paths(name)
    stop_stale(paths.pidfile)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.data_root.mkdir(parents=True, exist_ok=True)
    config = paths.run_dir / "daemon.json"
    config.write_text(json.dumps(_config(paths)))
    log = (paths.run_dir / "dockerd.log").open("w")
    proc = subprocess.Popen(["dockerd", "--config-file", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while docker("version", check=False, host=paths.docker_host).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"private dockerd did not start; see {paths.run_dir / 'dockerd.log'}")
            time.sleep(0.2)
        yield paths.docker_host
    finally:
        # Our own child: wait() reaps it, where a kill(0) probe would see the zombie as alive.
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        unmount_under(paths.data_root)
        unmount_under(paths.run_dir)


def load_from_podman(image: str, podman_env: dict[str, str], host: str = DOCKER_HOST) -> None:
    """Move an image built with podman into a private dockerd, unless it is there already."""
    podman_id = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", image],
                               capture_output=True, text=True, check=True,
                               env=podman_env).stdout.strip()
    have = docker("image", "inspect", "--format", "{{.Id}}", image, check=False,
                  host=host).stdout.strip()
    if have.removeprefix("sha256:") == podman_id:
        return
    save = subprocess.Popen(["podman", "save", "--format", "docker-archive", image],
                            stdout=subprocess.PIPE, env=podman_env)
    assert save.stdout is not None
    docker("load", stdin=save.stdout.fileno(), host=host)
    save.stdout.close()
    if save.wait() != 0:
        raise RuntimeError(f"podman save {image} failed")
