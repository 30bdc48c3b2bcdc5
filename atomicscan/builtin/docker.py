"""The docker runtime plugin: docker's CLI for targets and scanners, our own read-only mounts.

It drives the ``docker`` CLI rather than the docker SDK: one fewer dependency, the same
argv logging and error handling as podman, and the CLI (with ``DOCKER_HOST``, inherited
from the environment) is what docker users already have working.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from atomicscan import dockerfs, proc, rootless
from atomicscan.errors import (
    AtomicscanError,
    CommandError,
    MountError,
    RuntimeUnavailableError,
)
from atomicscan.hookspecs import hookimpl
from atomicscan.isolation import explain_exit, isolation_flags, tmpfs_spec
from atomicscan.listing import ListingRuntime
from atomicscan.proc import Cancelled
from atomicscan.runtime import (
    RuntimeRegistry,
    ScannerContainer,
    Target,
    iter_nonempty,
    last_line,
)
from atomicscan.targets import Candidate

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def daemon_address() -> str:
    """Which daemon the CLI talks to, in words for error messages."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return f"DOCKER_HOST={host}"
    return f"the default socket {DEFAULT_SOCKET} (DOCKER_HOST is not set)"


def qualified_name(name: str) -> str:
    """docker's short image name (``debian:12``) as podman spells it (``docker.io/library/...``).

    Matching against the qualified form makes a reference resolve the same in both runtimes.
    """
    first, slash, _ = name.partition("/")
    if not slash:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def _json_lines(text: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in iter_nonempty(text)]
    return [row for row in rows if isinstance(row, dict)]


def _image_names(row: Mapping[str, Any]) -> list[str]:
    repository, tag, digest = (str(row.get(key) or "<none>")
                               for key in ("Repository", "Tag", "Digest"))
    if repository == "<none>":
        return []
    if tag != "<none>":
        return [f"{repository}:{tag}"]
    return [f"{repository}@{digest}"] if digest != "<none>" else []


class DockerRuntime(ListingRuntime):
    """A docker daemon on this host, as root, through the docker CLI."""

    name = "docker"

    def __init__(self, binary: str = "docker") -> None:
        self.binary = binary
        self._checked = False
        self._storage_info: dockerfs.DockerStorage | None = None
        self._image_volumes: dict[str, list[str]] = {}

    def _docker(self, *args: str, check: bool = True, timeout: float = 300.0
                ) -> proc.Completed:
        return proc.run([self.binary, *args], check=check, timeout=timeout)

    def check(self) -> None:
        if self._checked:
            return
        if shutil.which(self.binary) is None:
            raise RuntimeUnavailableError(
                "docker: binary not found on PATH (apt install docker.io)")
        try:
            result = self._docker("version", "--format", "{{.Server.APIVersion}}",
                                  check=False, timeout=15.0)
        except CommandError as exc:  # only a timeout gets here
            raise RuntimeUnavailableError(
                f"docker: no daemon answered at {daemon_address()} within 15s ({exc})") from exc
        if not result.ok or not result.stdout.strip():
            raise RuntimeUnavailableError(self._daemon_problem(result.stderr))
        if not rootless.real_root():
            raise RuntimeUnavailableError(
                "docker: atomicscan needs root to mount docker's image storage; as a user, "
                "scan your own podman images and containers (--runtime podman)")
        self._checked = True

    @staticmethod
    def _daemon_problem(stderr: str) -> str:
        text = stderr.lower()
        if "permission denied" in text:
            return (f"docker: permission denied on the docker daemon at {daemon_address()}; "
                    "run atomicscan as root")
        if "cannot connect" in text or "is the docker daemon running" in text \
                or "no such file" in text or "connection refused" in text:
            return (f"docker: cannot reach a docker daemon at {daemon_address()}; "
                    "is dockerd running?")
        return f"docker: the daemon at {daemon_address()} is not usable: {last_line(stderr)}"

    # -- targets ---------------------------------------------------------------------

    def _containers(self) -> list[Candidate]:
        rows = _json_lines(self._docker("ps", "--all", "--no-trunc", "--format", "{{json .}}"
                                        ).stdout)
        # Names with a slash are legacy link aliases, not names a user gives.
        return [
            Candidate(
                id=str(row["ID"]),
                names=tuple(n for n in str(row.get("Names") or "").split(",")
                            if n and "/" not in n),
                running=row.get("State") == "running",
            )
            for row in rows
        ]

    def _images(self) -> list[Candidate]:
        # One row per tag: rows of one image are grouped by its ID (64 hex).
        rows = _json_lines(self._docker("images", "--all", "--no-trunc", "--format",
                                        "{{json .}}").stdout)
        images: dict[str, set[str]] = {}
        for row in rows:
            images.setdefault(str(row["ID"]).removeprefix("sha256:"), set()).update(
                _image_names(row))
        # docker lists the tags of one image in no stable order.
        return [Candidate(id=image_id, names=tuple(sorted(names)))
                for image_id, names in images.items()]

    def _matchable(self, image: Candidate) -> Candidate:
        return Candidate(id=image.id, names=tuple(qualified_name(n) for n in image.names))

    @staticmethod
    def _created_from(inspect: Mapping[str, Any]) -> str | None:
        config = inspect.get("Config")
        return str(config.get("Image") or "") or None if isinstance(config, dict) else None

    # -- mounts ----------------------------------------------------------------------

    def _inspect_many(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        # docker prints what it found and exits non-zero when any of them is unknown.
        found: dict[str, dict[str, Any]] = {}
        if not ids:
            return found
        result = self._docker(kind, "inspect", "--", *ids, check=False)
        try:
            rows = json.loads(result.stdout or "[]")
        except json.JSONDecodeError:
            rows = []
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and row.get("Id"):
                found[str(row["Id"]).removeprefix("sha256:")] = row
        return found

    def _inspect(self, target: Target) -> dict[str, Any]:
        # Always fresh: the layer directories to mount are read from it. /scanmeta reuses
        # an image's (see ListingRuntime.target_configs).
        kind = "container" if target.type == "container" else "image"
        try:
            found = json.loads(self._docker(kind, "inspect", target.id).stdout)
        except CommandError as exc:
            raise MountError(f"docker cannot inspect {target.ref}: {exc}") from exc
        if not isinstance(found, list) or not found or not isinstance(found[0], dict):
            raise MountError(f"docker inspect gave nothing usable for {target.ref}")
        (self._image_inspects if kind == "image" else self._container_inspects)[target.id] = \
            found[0]
        return found[0]

    def _storage(self) -> dockerfs.DockerStorage:
        # The daemon's storage driver and data root are fixed while it runs: ask once.
        if self._storage_info is None:
            try:
                info = json.loads(self._docker("info", "--format", "{{json .}}").stdout)
            except CommandError as exc:
                raise MountError(f"docker info failed: {exc}") from exc
            self._storage_info = dockerfs.DockerStorage.from_info(info)
        return self._storage_info

    @contextlib.contextmanager
    def mount_rootfs(
        self, target: Target, journal: Callable[[dict[str, Any]], None], workdir: Path
    ) -> Iterator[Path]:
        if target.type not in ("image", "container"):
            raise MountError(f"docker cannot mount a {target.type}")
        with self._mount(target, self._inspect(target), journal, workdir) as rootfs:
            yield rootfs

    @contextlib.contextmanager
    def mount_rootfs_batch(self, targets: Sequence[Target],
                           journal: Callable[[dict[str, Any]], None], workdir: Path, *,
                           cancel: threading.Event | None = None
                           ) -> Iterator[dict[str, Path | AtomicscanError]]:
        # The mounts are our own; the docker CLI is only asked for the layer directories,
        # with one inspect per kind for the whole batch (fresh: they are read to mount).
        inspects = {
            kind: self._inspect_many(kind, [t.id for t in targets if t.type == kind])
            for kind in ("image", "container")
        }
        self._image_inspects.update(inspects["image"])
        self._container_inspects.update(inspects["container"])
        mounted: dict[str, Path | AtomicscanError] = {}
        with contextlib.ExitStack() as stack:
            for target in targets:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("run cancelled")
                try:
                    if target.type not in ("image", "container"):
                        raise MountError(f"docker cannot mount a {target.type}")
                    # Left out of the batch's answer: asked alone, for its own error.
                    inspect = inspects[target.type].get(target.id) or self._inspect(target)
                    mounted[target.key] = stack.enter_context(
                        self._mount(target, inspect, journal, workdir / target.key))
                except AtomicscanError as exc:
                    mounted[target.key] = exc
            yield mounted

    @contextlib.contextmanager
    def _mount(self, target: Target, inspect: Mapping[str, Any],
               journal: Callable[[dict[str, Any]], None], workdir: Path) -> Iterator[Path]:
        plan = dockerfs.plan_rootfs(inspect, target.type, self._storage())
        # Inside the run's own directory: a dead run's mounts are found and undone there.
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        destination = workdir / "rootfs"

        def record(entry: dict[str, Any]) -> None:
            journal({"runtime": self.name, "id": target.id, **entry})

        with dockerfs.mounted(plan, destination, record) as rootfs:
            yield rootfs

    def undo(self, record: Mapping[str, Any]) -> None:
        dockerfs.undo(record)

    # -- scanners --------------------------------------------------------------------

    def image_id(self, image: str) -> str | None:
        result = self._docker("image", "inspect", "--format", "{{.Id}}", image, check=False)
        if not result.ok:
            return None
        return result.stdout.strip().removeprefix("sha256:") or None

    def run_scanner(self, container: ScannerContainer) -> proc.Completed:
        # docker's default seccomp profile already refuses new namespaces to a scanner,
        # which never holds CAP_SYS_ADMIN; podman's needs atomicscan.seccomp.
        argv = [
            self.binary, "run", "--rm", "--pull", "never", "--name", container.name,
            *isolation_flags(container), *self._volume_tmpfs(container),
            container.image, *container.args,
        ]
        return explain_exit(proc.run_bounded(argv, timeout=container.timeout,
                                             cancel=container.cancel), container)

    def _volume_tmpfs(self, container: ScannerContainer) -> list[str]:
        """A sized tmpfs over each VOLUME the scanner's image declares: docker would give
        each an anonymous volume on its own disk, with no size limit at all."""
        if container.image not in self._image_volumes:
            result = self._docker("image", "inspect", "--format", "{{json .Config.Volumes}}",
                                  "--", container.image, check=False)
            try:
                declared = json.loads(result.stdout or "null") if result.ok else None
            except json.JSONDecodeError:
                declared = None
            self._image_volumes[container.image] = sorted(declared or {})
        flags: list[str] = []
        for path in self._image_volumes[container.image]:
            if not path.startswith("/") or any(c in path for c in ',:="') or \
                    not path.isprintable():
                raise MountError(f"scanner image {container.image} declares VOLUME "
                                 f"{path!r}, which can't be covered safely")
            flags += ["--tmpfs", tmpfs_spec(path, container.tmpfs_bytes)]
        return flags

    def remove_container(self, name: str) -> None:
        self._docker("rm", "--force", name, check=False)

    def labelled_containers(self, label: str) -> list[tuple[str, str]]:
        template = "{{.Names}}\t{{.Label " + json.dumps(label) + "}}"
        result = self._docker("ps", "--all", "--no-trunc", "--filter", f"label={label}",
                              "--format", template, check=False)
        if not result.ok:
            return []
        found = []
        for line in iter_nonempty(result.stdout):
            names, _, value = line.partition("\t")
            found.append((names.split(",")[0], value.strip()))
        return found

    def build_image(self, context: Path, tag: str) -> None:
        # The classic builder: it needs no buildx plugin and honours --network none.
        proc.run([self.binary, "build", "--network", "none", "--quiet",
                  "--file", str(context / "Containerfile"), "--tag", tag, str(context)],
                 env={"DOCKER_BUILDKIT": "0"}, timeout=1800)

    def build_hint(self, image: str) -> str:
        return (f"build it with podman and move it: `podman save --format docker-archive "
                f"{image} | docker load`, or `docker build -t {image} scanners/<name>`")


@hookimpl
def atomicscan_add_runtimes(registry: RuntimeRegistry) -> None:
    registry.add("docker", DockerRuntime)
