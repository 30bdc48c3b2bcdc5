"""A private containerd for the real tier: its own root, state and socket, stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from daemons import stop_stale, unmount_under

#: One containerd per test session, named after the session's private dockerd.
NAME = os.environ.get("ATOMICSCAN_TEST_DOCKERD", "atomicscan-test-docker") + "-containerd"
#: The keys of the snapshots atomicscan makes: an image's view, a scanner's root.
OUR_SNAPSHOT = re.compile(r"^atomicscan-(?:[0-9a-f]{32}|scanner-\S+)$")
#: The namespace Kubernetes' CRI uses: the test images and containers live there.
K8S = "k8s.io"


class Paths:
    """Where one private containerd keeps everything."""

    def __init__(self, name: str = NAME) -> None:
        self.root = Path("/var/lib") / name
        self.run_dir = Path("/run") / name
        self.state = self.run_dir / "state"
        self.address = str(self.run_dir / "containerd.sock")
        self.pidfile = self.run_dir / "containerd.pid"
        self.config = self.run_dir / "config.toml"


def _config(paths: Paths) -> str:
    # The CRI plugin would want CNI and a pause image: the tests need neither.
    return (f'version = 2\nroot = "{paths.root}"\nstate = "{paths.state}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{paths.address}"\n'
            f'[ttrpc]\n  address = "{paths.address}.ttrpc"\n')


def ctr(*args: str, address: str, namespace: str = K8S, check: bool = True,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ctr", "--address", address, "--namespace", namespace, *args],
                          capture_output=True, text=True, check=check, timeout=timeout)


def _kill_tasks(address: str) -> None:
    """Stop every task (and its shim) of the private containerd before it goes."""
    namespaces = ctr("namespaces", "ls", "-q", address=address, check=False).stdout.split()
    for namespace in namespaces:
        for cid in ctr("containers", "ls", "-q", address=address, namespace=namespace,
                       check=False).stdout.split():
            ctr("tasks", "kill", "--signal", "SIGKILL", cid, address=address,
                namespace=namespace, check=False)
            ctr("tasks", "delete", "--force", cid, address=address, namespace=namespace,
                check=False)


@contextlib.contextmanager
def private_containerd(name: str = NAME) -> Iterator[str]:
    """Start containerd, yield its address (a socket path), stop it by PID afterwards."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        raise RuntimeError("containerd is missing: run scripts/setup (docker.io pulls it in)")
    paths = Paths(name)
    stop_stale(paths.pidfile)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(_config(paths))
    log = (paths.run_dir / "containerd.log").open("w")
    proc = subprocess.Popen(["containerd", "--config", str(paths.config)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    paths.pidfile.write_text(f"{proc.pid}\n")
    try:
        deadline = time.monotonic() + 60
        while ctr("version", address=paths.address, check=False, timeout=10).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"private containerd did not start; see {paths.run_dir / 'containerd.log'}")
            time.sleep(0.2)
        yield paths.address
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _kill_tasks(paths.address)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        paths.pidfile.unlink(missing_ok=True)
        unmount_under(paths.root)
        unmount_under(paths.run_dir)


def image_config_id(image: str, address: str, namespace: str = K8S) -> str | None:
    """The image's config digest (its ID, as podman gives it), or None when it is missing."""
    listed = ctr("images", "ls", address=address, namespace=namespace).stdout.splitlines()
    digest = next((line.split()[2] for line in listed if line.split()[:1] == [image]), None)
    if digest is None:
        return None
    manifest = json.loads(ctr("content", "get", digest, address=address,
                              namespace=namespace).stdout)
    return str(manifest["config"]["digest"]).removeprefix("sha256:")


def import_from_podman(image: str, podman_env: Mapping[str, str], address: str,
                       namespace: str = K8S) -> None:
    """``podman save`` an image and ``ctr images import`` it, unless it is there already."""
    podman_id = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", image],
                               capture_output=True, text=True, check=True,
                               env=dict(podman_env)).stdout.strip()
    if image_config_id(image, address, namespace) == podman_id:
        return
    with tempfile.TemporaryDirectory(prefix="ctrd-import-", dir="/var/tmp") as scratch:
        archive = Path(scratch) / "image.tar"
        subprocess.run(["podman", "save", "--format", "docker-archive", "-o", str(archive),
                        image], capture_output=True, check=True, env=dict(podman_env))
        ctr("images", "import", str(archive), address=address, namespace=namespace)


def run_container(name: str, image: str, labels: Mapping[str, str], address: str, *,
                  command: tuple[str, ...] = ("sleep", "3600"), namespace: str = K8S) -> None:
    """A detached container, like a Kubernetes pod's, with ``labels``."""
    flags = [item for key, value in labels.items() for item in ("--label", f"{key}={value}")]
    ctr("run", "--detach", *flags, image, name, *command, address=address, namespace=namespace)


def remove_container(name: str, address: str, namespace: str = K8S) -> None:
    ctr("tasks", "kill", "--signal", "SIGKILL", name, address=address, namespace=namespace,
        check=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = ctr("tasks", "delete", name, address=address, namespace=namespace, check=False)
        if done.returncode == 0 or "not found" in done.stderr:
            break
        time.sleep(0.1)  # the task is still going down after SIGKILL
    ctr("containers", "delete", name, address=address, namespace=namespace, check=False)


def atomicscan_snapshots(address: str) -> list[str]:
    """Every snapshot atomicscan made: image views and scanner roots (docs/containerd.md)."""
    found = []
    namespaces = ctr("namespaces", "ls", "-q", address=address).stdout.split()
    for namespace in namespaces:
        for line in ctr("snapshots", "ls", address=address, namespace=namespace
                        ).stdout.splitlines():
            key = line.split()[0] if line.split() else ""
            if OUR_SNAPSHOT.match(key):
                found.append(f"{namespace}/{key}")
    return found
