"""Helpers for the real tier: podman as the project configures it, the CLI, host snapshots."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atomicscan.state import root_tag

HOST_CONF = Path("/etc/atomicscan/containers.conf")

DEBIAN = "localhost/atomicscan-test/debian:bookworm"
RPM_SQLITE = "localhost/atomicscan-test/rpm-sqlite:latest"
RPM_BDB = "localhost/atomicscan-test/rpm-bdb:latest"
ALPINE = "localhost/atomicscan-test/alpine-like:latest"
PURGED = "localhost/atomicscan-test/debian-purged:latest"
PACKAGES_SCANNER = "localhost/atomicscan/packages:latest"
OPENSCAP_SCANNER = "localhost/atomicscan/openscap:latest"
CONFIGLINT_SCANNER = "localhost/atomicscan/configlint:latest"
LINT_BAD = "localhost/atomicscan-test/configlint-bad:latest"
LINT_CLEAN = "localhost/atomicscan-test/configlint-clean:1.0"
TESTBED_IMAGES = (DEBIAN, RPM_SQLITE, RPM_BDB, ALPINE, PURGED, PACKAGES_SCANNER,
                  OPENSCAP_SCANNER, CONFIGLINT_SCANNER, LINT_BAD, LINT_CLEAN)


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env and HOST_CONF.is_file():
        env["CONTAINERS_CONF"] = str(HOST_CONF)
    return env


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check,
                          env=podman_env(), timeout=300)


class Engine:
    """The CLI of one runtime under test: podman, or the private test dockerd."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = podman_env()
        if self.name == "docker":
            from dockerd import DOCKER_HOST

            env["DOCKER_HOST"] = DOCKER_HOST
        return subprocess.run([self.name, *args], capture_output=True, text=True, check=check,
                              env=env, timeout=300)

    def image_id(self, name: str) -> str:
        return self("image", "inspect", "--format", "{{.Id}}", name).stdout.strip().removeprefix(
            "sha256:")

    def labelled_containers(self) -> list[str]:
        out = self("ps", "--all", "--filter", "label=io.atomicscan.run", "--format",
                   "{{.ID}} {{.Names}}").stdout
        return [f"{self.name}:{line}" for line in out.splitlines() if line.strip()]

    def scanner_containers(self, state_dir: Path) -> list[str]:
        """Names of the scanner containers of runs under ``state_dir`` only: other runs on
        this host (other tests, other people) carry the same label with another root tag."""
        label = ('{{index .Labels "io.atomicscan.run"}}' if self.name == "podman"
                 else '{{.Label "io.atomicscan.run"}}')
        out = self("ps", "--all", "--filter", "label=io.atomicscan.run", "--format",
                   "{{.Names}} " + label).stdout
        suffix = "@" + root_tag(state_dir)
        return [name for name, _, value in (line.partition(" ") for line in out.splitlines())
                if value.strip().endswith(suffix)]

    @contextlib.contextmanager
    def image_root(self, name: str) -> Iterator[list[Path]]:
        """The directories that make up an image's filesystem, for before/after digests."""
        if self.name == "podman":
            with mounted_image(name) as path:
                yield [path]
            return
        data = json.loads(self("image", "inspect", "--format", "{{json .GraphDriver.Data}}",
                               name).stdout)
        layers = [data["UpperDir"], *data.get("LowerDir", "").split(":")]
        yield [Path(layer) for layer in layers if layer]

    @contextlib.contextmanager
    def container_root(self, name: str) -> Iterator[list[Path]]:
        """The directories that make up a container's filesystem, for before/after digests."""
        if self.name == "podman":
            path = Path(podman("mount", name).stdout.strip())
            try:
                yield [path]
            finally:
                podman("umount", name, check=False)
            return
        data = json.loads(self("inspect", "--format", "{{json .GraphDriver.Data}}", name).stdout)
        layers = [data["UpperDir"], *data.get("LowerDir", "").split(":")]
        yield [Path(layer) for layer in layers if layer]


def engine_for(runtime: str) -> Engine:
    """The CLI of ``runtime`` as the shared tests speak it (docker's forms)."""
    if runtime == "containerd":
        from ctr_engine import CtrEngine

        return CtrEngine()
    return Engine(runtime)


def image_id(name: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()


@contextlib.contextmanager
def mounted_image(name: str) -> Iterator[Path]:
    """The image's rootfs through podman itself, independent of atomicscan."""
    path = Path(podman("image", "mount", name).stdout.strip())
    try:
        yield path
    finally:
        podman("image", "umount", name, check=False)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.stdout)
        return document


class Atomicscan:
    """Runs the real `atomicscan` command with its state, results and config in a temp dir."""

    def __init__(self, base: Path, runtime: str = "podman") -> None:
        self.base = base
        self.runtime = runtime
        self.engine = engine_for(runtime)
        self.state_dir = base / "state"
        self.results_dir = base / "results"
        self.config_dir = base / "atomicscan.d"
        self.config_dir.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        env = podman_env()
        env.update({
            "ATOMICSCAN_STATE_DIR": str(self.state_dir),
            "ATOMICSCAN_RESULTS_DIR": str(self.results_dir),
            "ATOMICSCAN_CONFIG_DIR": str(self.config_dir),
        })
        return env

    def argv(self, *args: str) -> list[str]:
        # Scans name the runtime under test; commands that span runtimes don't.
        spans = bool(args) and (args[0] in {"cleanup", "doctor", "plugins", "history"}
                                or "--list" in args
                                or "--runtime" in args)
        chosen = [] if spans else ["--runtime", self.runtime]
        return [sys.executable, "-m", "atomicscan", *chosen, *args]

    def __call__(self, *args: str, timeout: float = 600) -> CliResult:
        done = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env,
                              timeout=timeout, check=False)
        return CliResult(done.returncode, done.stdout, done.stderr)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env)

    def add_scanner(self, name: str, script: str, image: str = PACKAGES_SCANNER) -> None:
        """A test scanner: a shell script run in the packages scanner's image."""
        (self.config_dir / f"{name}.toml").write_text(script_scanner(name, script, image))


def script_scanner(name: str, script: str, image: str = PACKAGES_SCANNER) -> str:
    """The definition of a test scanner that runs a shell script in ``image``."""
    return f"""\
type = "scanner"
scanner_name = "{name}"
image_name = "{image}"
default_scan = "test"
description = "test scanner {name}"

[[scans]]
name = "test"
args = ["sh", "-c", {json.dumps(script)}]
description = "test"
"""


def assert_locked_down(probe: Mapping[str, str]) -> None:
    """What the isolation probe scanners report: nothing written or removed in /scanin, a
    read-only root, uid 65534, no capabilities, no new privileges, no network."""
    assert probe["touch"] == "no", "a scanner could create a file in /scanin"
    assert probe["rm"] == "no", "a scanner could delete a file in /scanin"
    assert probe["rootfs_write"] == "no", "the scanner's own root is writable"
    assert probe["uid"] == "65534"
    assert probe["capeff"] == "0000000000000000"
    assert probe["nnp"] == "1"
    assert probe["nets"].split() == ["lo"], "the scanner must have no network"


@dataclass(frozen=True)
class HostSnapshot:
    """What atomicscan could leak: mounts, containers, podman mounts, state and temp files."""

    mounts: frozenset[str]
    containers: frozenset[str]
    podman_mounts: frozenset[str]
    state: frozenset[str]
    tmp: frozenset[str]
    snapshots: frozenset[str]
    """containerd snapshots atomicscan made (image views, scanner roots), when one is up."""


def _dockerd_up() -> bool:
    return os.environ.get("DOCKER_HOST", "").startswith("unix://")


def _containerd_up() -> bool:
    """The session's private containerd has been started (the containerd runtime's tests)."""
    return bool(os.environ.get("CONTAINERD_ADDRESS"))


def _podman_listing(*args: str) -> list[str]:
    """A podman listing, asked again when an image or container went away while podman read
    its storage (others' runs and builds on the same host make and remove them)."""
    for _attempt in range(4):
        done = podman(*args, check=False)
        if done.returncode == 0:
            return done.stdout.splitlines()
    raise AssertionError(f"podman {' '.join(args)} failed: {done.stderr}")


def snapshot(state_dir: Path) -> HostSnapshot:
    # Where atomicscan mounts itself; podman's own mounts are seen through its listings.
    from containerd import NAME as CONTAINERD_NAME
    from containerd import atomicscan_snapshots
    from dockerd import NAME as DOCKERD_NAME

    watched = (str(state_dir), "/run/atomicscan/", f"/var/lib/{DOCKERD_NAME}/",
               f"/var/lib/{CONTAINERD_NAME}/", f"/run/{CONTAINERD_NAME}/")
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    mounts = frozenset(f"{line.split()[4]} {line.split(' - ')[-1]}" for line in mountinfo
                       if line.split()[4].startswith(watched))
    containerd = _containerd_up()
    containers = frozenset(Engine("podman").labelled_containers()
                           + (Engine("docker").labelled_containers() if _dockerd_up() else [])
                           + (engine_for("containerd").labelled_containers() if containerd
                              else []))
    snapshots = frozenset(atomicscan_snapshots(os.environ["CONTAINERD_ADDRESS"]) if containerd
                          else [])
    podman_mounts = frozenset(_podman_listing("mount") + _podman_listing("image", "mount"))
    state = frozenset(str(p) for p in state_dir.rglob("*")) if state_dir.exists() else frozenset()
    tmp = frozenset(p.name for p in Path(tempfile.gettempdir()).glob("atomicscan*"))
    return HostSnapshot(mounts, containers, podman_mounts, state, tmp, snapshots)


def assert_no_leftovers(before: HostSnapshot, state_dir: Path) -> None:
    """Nothing new since ``before``: what vanished meanwhile was never ours to leak."""
    after = snapshot(state_dir)
    for kind in ("mounts", "containers", "podman_mounts", "state", "tmp", "snapshots"):
        added = getattr(after, kind) - getattr(before, kind)
        assert not added, f"{kind} left behind: {sorted(added)}"


def tree_digest(roots: list[Path]) -> dict[str, tuple[object, ...]]:
    """Every entry's type, mode, owner, size, mtime and content hash, without following links."""
    entries: dict[str, tuple[object, ...]] = {}
    for root in roots:
        entries.update({f"{root}:{k}": v for k, v in _tree_digest(root).items()})
    return entries


def _tree_digest(root: Path) -> dict[str, tuple[object, ...]]:
    entries: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            info = path.lstat()
            digest = ""
            if path.is_symlink():
                digest = os.readlink(path)
            elif path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            entries[str(path.relative_to(root))] = (
                info.st_mode, info.st_uid, info.st_gid, info.st_size, info.st_mtime_ns, digest)
    return entries


def packages_of(result: Mapping[str, object]) -> list[tuple[str, str, str]]:
    packages = result["packages"]
    assert isinstance(packages, list)
    return sorted((p["name"], p["version"], p["architecture"]) for p in packages)


def which(tool: str) -> str:
    found = shutil.which(tool)
    assert found, f"{tool} is missing: run scripts/setup"
    return found
