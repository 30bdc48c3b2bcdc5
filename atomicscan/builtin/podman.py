"""The podman runtime plugin: podman's own image and container mounts, and its CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from atomicscan import proc
from atomicscan.errors import CommandError, MountError, RuntimeUnavailableError
from atomicscan.hookspecs import hookimpl
from atomicscan.isolation import (
    HOST_CONTAINERS_CONF,
    explain_exit,
    host_containers_conf,
    isolation_flags,
    shipped_containers_conf,
)
from atomicscan.listing import ListingRuntime
from atomicscan.runtime import (
    RuntimeRegistry,
    ScannerContainer,
    Target,
    last_line,
)
from atomicscan.seccomp import SCANNER_PROFILE
from atomicscan.targets import Candidate, fully_qualified

#: References per inspect command: far below any argv limit, few calls on a big host.
INSPECT_CHUNK = 200


def podman_environment() -> dict[str, str]:
    """Extra environment for podman: the host fix-up config, unless the user chose one."""
    conf = host_containers_conf()
    return {} if conf is None else {"CONTAINERS_CONF": str(conf)}


def podman_flags(container: ScannerContainer) -> list[str]:
    """The shared lock-down plus what podman alone needs."""
    return [
        *isolation_flags(container),
        # --read-only would add unsized tmpfs on /tmp, /var/tmp and /run: ours are sized.
        "--read-only-tmpfs=false",
        # podman's default profile lets a scanner unshare into a user namespace of its own.
        "--security-opt", f"seccomp={SCANNER_PROFILE.path()}",
        # A VOLUME in the scanner's image would be unbounded host disk: leave it out, so
        # the path stays part of the read-only root.
        "--image-volume", "ignore",
    ]


class PodmanRuntime(ListingRuntime):
    """podman as root, through its command line."""

    name = "podman"

    def __init__(self, binary: str = "podman") -> None:
        self.binary = binary
        self.env = podman_environment()
        self._checked: str | None = None

    def _podman(self, *args: str, check: bool = True, timeout: float = 300.0
                ) -> proc.Completed:
        return proc.run([self.binary, *args], env=self.env, check=check, timeout=timeout)

    def check(self) -> None:
        if self._checked == "ok":
            return
        if shutil.which(self.binary) is None:
            raise RuntimeUnavailableError("podman: binary not found on PATH (apt install podman)")
        if os.geteuid() != 0:
            raise RuntimeUnavailableError("podman: atomicscan needs root to mount images")
        result = self._podman("version", "--format", "{{.Client.Version}}", check=False)
        if not result.ok:
            raise RuntimeUnavailableError(f"podman: not working: {last_line(result.stderr)}")
        self._checked = "ok"

    # -- targets ---------------------------------------------------------------------

    def _containers(self) -> list[Candidate]:
        rows = json.loads(self._podman("ps", "--all", "--format", "json").stdout or "[]")
        return [
            Candidate(
                id=row["Id"],
                names=tuple(row.get("Names") or ()),
                running=row.get("State") == "running",
            )
            for row in rows
        ]

    def _images(self) -> list[Candidate]:
        rows = json.loads(self._podman("images", "--all", "--format", "json").stdout or "[]")
        return [
            Candidate(id=row["Id"], names=tuple(row.get("Names") or row.get("RepoTags") or ()))
            for row in rows
        ]

    def _inspect_many(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        # podman prints what it found and exits non-zero when any reference is unknown,
        # so a target removed since it was listed costs only its own entry. After "--" a
        # user's reference can never be taken for an option.
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), INSPECT_CHUNK):
            result = self._podman(kind, "inspect", "--", *ids[start:start + INSPECT_CHUNK],
                                  check=False)
            try:
                rows = json.loads(result.stdout or "[]")
            except json.JSONDecodeError:
                continue
            for row in rows if isinstance(rows, list) else []:
                if isinstance(row, dict) and row.get("Id"):
                    found[str(row["Id"])] = row
        return found

    def _images_by_name(self, refs: Sequence[str]) -> dict[str, Candidate]:
        # A fully qualified name can match one image only: one inspect of all of them
        # together is much cheaper than listing every image on a busy host.
        by_name: dict[str, Candidate] = {}
        for image_id, row in self._inspect_images([r for r in refs if fully_qualified(r)]
                                                  ).items():
            names = tuple(str(name) for name in row.get("RepoTags") or ())
            by_name.update((name, Candidate(id=image_id, names=names)) for name in names)
        return by_name

    @staticmethod
    def _created_from(inspect: Mapping[str, Any]) -> str | None:
        return str(inspect.get("ImageName") or "") or None

    # -- mounts ----------------------------------------------------------------------

    @contextlib.contextmanager
    def mount_rootfs(
        self, target: Target, journal: Callable[[dict[str, Any]], None], workdir: Path
    ) -> Iterator[Path]:
        if target.type == "image":
            mount_args: tuple[str, ...] = ("image", "mount", target.id)
            action = "image-mount"
        elif target.type == "container":
            mount_args = ("mount", target.id)
            action = "container-mount"
        else:
            raise MountError(f"podman cannot mount a {target.type}")
        journal({"runtime": self.name, "action": action, "id": target.id})
        try:
            path = Path(self._podman(*mount_args).stdout.strip())
        except CommandError as exc:
            raise MountError(f"podman could not mount {target.ref}: {exc}") from exc
        try:
            yield path
        finally:
            self.undo({"action": action, "id": target.id})

    def undo(self, record: Mapping[str, Any]) -> None:
        target_id = str(record.get("id", ""))
        if record.get("action") == "image-mount":
            self._podman("image", "umount", target_id, check=False)
        elif record.get("action") == "container-mount":
            self._podman("umount", target_id, check=False)

    # -- scanners --------------------------------------------------------------------

    def image_id(self, image: str) -> str | None:
        result = self._podman("image", "inspect", "--format", "{{.Id}}", image, check=False)
        return result.stdout.strip() or None if result.ok else None

    def run_scanner(self, container: ScannerContainer) -> proc.Completed:
        argv = [
            self.binary, "run", "--rm", "--pull", "never", "--name", container.name,
            *podman_flags(container), container.image, *container.args,
        ]
        # conmon writes a file named "oom" into its working directory when the scanner is
        # killed for memory: run it in the batch's own directory, removed with the run.
        return explain_exit(proc.run_bounded(argv, env=self.env, timeout=container.timeout,
                                             cancel=container.cancel, cwd=container.workdir),
                            container)

    def remove_container(self, name: str) -> None:
        self._podman("rm", "--force", "--ignore", "--time", "0", name, check=False)

    def labelled_containers(self, label: str) -> list[tuple[str, str]]:
        result = self._podman("ps", "--all", "--filter", f"label={label}", "--format", "json",
                              check=False)
        if not result.ok:
            return []
        rows = json.loads(result.stdout or "[]")
        return [
            ((row.get("Names") or [row["Id"]])[0], (row.get("Labels") or {}).get(label, ""))
            for row in rows
        ]

    def build_image(self, context: Path, tag: str) -> None:
        self._podman("build", "--network", "none", "--pull=never", "--quiet",
                     "--file", str(context / "Containerfile"), "--tag", tag, str(context),
                     timeout=1800)

    def run_failure_hint(self) -> str:
        if "CONTAINERS_CONF" in os.environ:
            return ""
        return (f"if this host's cgroups or rlimits are the cause, run: install -D -m 0644 "
                f"{shipped_containers_conf()} {HOST_CONTAINERS_CONF}")

    def build_hint(self, image: str) -> str:
        return (f"build it with `podman build --network host -t {image} scanners/<name>` "
                "or run tests/testbed/build-images")


@hookimpl
def atomicscan_add_runtimes(registry: RuntimeRegistry) -> None:
    registry.add("podman", PodmanRuntime)
