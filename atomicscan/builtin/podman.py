"""The podman runtime plugin: podman's own image and container mounts, and its CLI."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from atomicscan import proc, rootless
from atomicscan.builtin import podman_store
from atomicscan.errors import (
    AtomicscanError,
    CommandError,
    MountError,
    RuntimeUnavailableError,
)
from atomicscan.hookspecs import hookimpl
from atomicscan.isolation import (
    HOST_CONTAINERS_CONF,
    PIDS_LIMIT,
    explain_exit,
    host_containers_conf,
    isolation_flags,
    shipped_containers_conf,
)
from atomicscan.listing import ListingRuntime
from atomicscan.proc import Cancelled
from atomicscan.runtime import (
    RuntimeRegistry,
    ScannerContainer,
    Target,
    last_line,
)
from atomicscan.seccomp import SCANNER_PROFILE
from atomicscan.targets import Candidate, fully_qualified

log = logging.getLogger(__name__)

#: References per inspect command: far below any argv limit, few calls on a big host.
INSPECT_CHUNK = 200
#: Open files per scanner process when it runs rootless (root's runs take the host's).
NOFILE_LIMIT = 1024
#: Stack of each rootless scanner process (the usual default, made hard).
STACK_LIMIT = 8 * 1024 * 1024
#: How podman mounts each kind of target, as journal records name it.
MOUNT_ACTIONS = {"image": "image-mount", "container": "container-mount"}


def mount_points(text: str, ids: Sequence[str]) -> dict[str, Path]:
    """The mount point of each of ``ids`` in podman's JSON listing of mounts; anything not
    shaped like one (or for an ID not asked about) is left out."""
    try:
        rows = json.loads(text or "[]")
    except json.JSONDecodeError:
        return {}
    wanted = set(ids)
    found: dict[str, Path] = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        row_id, point = row.get("id"), row.get("mountpoint")
        if isinstance(row_id, str) and row_id in wanted and isinstance(point, str) \
                and point.startswith("/") and "\n" not in point:
            found[str(row_id)] = Path(point)
    return found


def podman_environment() -> dict[str, str]:
    """Extra environment for podman: the host fix-up config, unless the user chose one."""
    conf = host_containers_conf()
    return {} if conf is None else {"CONTAINERS_CONF": str(conf)}


def rootless_limits(container: ScannerContainer) -> list[str]:
    """Per-process limits for a rootless scanner: on a host whose cgroups podman can't
    delegate to a user (cgroups v1, or v2 without delegation) rootless podman ignores
    --memory, --pids-limit and --cpu-shares, so the kernel's rlimits bound it instead.

    ``nproc`` counts the processes of the scanner's (subordinate) uid, ``data`` caps each
    process's heap and private anonymous memory, ``stack`` its stack (not counted in
    ``data``), ``cpu`` the CPU seconds each may burn. Shared memory is not bounded this
    way: such a scan runs only when the user asks for it (``--allow-rlimits-only``).
    """
    memory = str(container.memory_bytes)
    limits = [f"nproc={PIDS_LIMIT}:{PIDS_LIMIT}", f"data={memory}:{memory}",
              f"stack={STACK_LIMIT}:{STACK_LIMIT}", f"nofile={NOFILE_LIMIT}:{NOFILE_LIMIT}"]
    if container.timeout is not None:
        seconds = max(1, math.ceil(container.timeout))
        limits.append(f"cpu={seconds}:{seconds}")
    return [flag for limit in limits for flag in ("--ulimit", limit)]


def podman_flags(container: ScannerContainer) -> list[str]:
    """The shared lock-down plus what podman alone needs."""
    return [
        *isolation_flags(container),
        *(rootless_limits(container) if rootless.rootless() else ()),
        # --read-only would add unsized tmpfs on /tmp, /var/tmp and /run: ours are sized.
        "--read-only-tmpfs=false",
        # podman's default profile lets a scanner unshare into a user namespace of its own.
        "--security-opt", f"seccomp={SCANNER_PROFILE.path()}",
        # A VOLUME in the scanner's image would be unbounded host disk: leave it out, so
        # the path stays part of the read-only root.
        "--image-volume", "ignore",
    ]


class PodmanRuntime(ListingRuntime):
    """podman through its command line: root's storage as root, a user's own storage from
    inside that user's podman namespace."""

    name = "podman"
    rootless = True

    def __init__(self, binary: str = "podman") -> None:
        self.binary = binary
        self.env = podman_environment()
        self._checked: str | None = None
        self._store_lock = threading.Lock()
        #: Held around every mount and unmount command: they take the storage's write lock,
        #: and batches that queue on it inside podman all wait far longer than batches that
        #: take turns here (1,001 images: 54 s with 4 jobs queuing in podman, 18.5 s with
        #: turns; docs/benchmarks.md, "Scale"). Scanner containers still run side by side.
        self._storage_writes = threading.Lock()
        #: This run's image index (where it is, its rows by ID), once read.
        self._store_rows: tuple[podman_store.StoreFacts, dict[str, dict[str, Any]]] | None \
            = None
        self._store_read = False
        self._facts: podman_store.StoreFacts | None = None

    def _podman(self, *args: str, check: bool = True, timeout: float = 300.0
                ) -> proc.Completed:
        return proc.run([self.binary, *args], env=self.env, check=check, timeout=timeout)

    def check(self) -> None:
        if self._checked == "ok":
            return
        if shutil.which(self.binary) is None:
            raise RuntimeUnavailableError("podman: binary not found on PATH (apt install podman)")
        result = self._podman("version", "--format", "{{.Client.Version}}", check=False)
        if not result.ok:
            raise RuntimeUnavailableError(f"podman: not working: {last_line(result.stderr)}")
        self._checked = "ok"

    def user_storage_note(self) -> tuple[str, str] | None:
        result = self._podman("info", "--format", "{{.Store.GraphDriverName}}", check=False)
        driver = result.stdout.strip()
        if not result.ok or driver in ("overlay", ""):
            return None
        return (f"your podman storage uses the {driver} driver: every layer is a full copy, "
                "so images take more disk and time (scans stay read-only)",
                "mkdir -p ~/.config/containers && printf '[storage]\\ndriver = \"overlay\"\\n' > "
                "~/.config/containers/storage.conf && podman system reset "
                "(this removes your images and containers)")

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
        listed = self._images_from_store()
        if listed is not None:
            return listed
        return self._images_from_cli()

    def _images_from_store(self) -> list[Candidate] | None:
        """The image list from containers/storage's own index of images (``images.json``
        in the storage podman reports), or None to ask podman's CLI instead.

        ``podman images`` computes sizes, parents and container counts of every image: at
        1,000 images it takes about 13 s, where reading the index takes milliseconds. The
        index is used only when it holds exactly as many images as ``podman info`` counts
        (one cheap command): anything else (an additional image store, a load or removal
        in between) falls back to the CLI.
        """
        for _attempt in range(2):
            store = self._store_facts(fresh=_attempt > 0)
            if store is None:
                return None
            rows = podman_store.read_index(store.index)
            if rows is not None and len(rows) == store.images:
                with self._store_lock:
                    self._store_rows, self._store_read = (store, rows), True
                return podman_store.candidates(rows)
            log.info("podman's image index %s disagrees with podman info (%s vs %d images); "
                     "%s", store.index, "unreadable" if rows is None else len(rows),
                     store.images, "reading it again" if _attempt == 0 else "listing instead")
        return None

    def _store_facts(self, *, fresh: bool = False) -> podman_store.StoreFacts | None:
        """Where the image index is and how many images podman counts: asked once a run
        (``fresh`` asks again)."""
        if self._facts is None or fresh:
            result = self._podman("info", "--format", "{{json .Store}}", check=False)
            self._facts = podman_store.store_facts(result.stdout) if result.ok else None
        return self._facts

    def _new_run(self) -> None:
        super()._new_run()
        with self._store_lock:
            self._store_rows, self._store_read, self._facts = None, False, None

    def _image_inspects_from_store(self, refs: Sequence[str]
                                   ) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Image inspects read from the storage (see :mod:`podman_store`), by image ID, for
        the references (IDs, or names exactly as the index holds them) it can answer, and
        which references those were; the rest is left to ``podman image inspect``."""
        with self._store_lock:
            if not self._store_read:
                store = self._store_facts()
                rows = None if store is None else podman_store.read_index(store.index)
                self._store_rows = None if store is None or rows is None else (store, rows)
                self._store_read = True
            known = self._store_rows
        if known is None:
            return {}, set()
        store, rows = known
        by_name = {name: image_id for image_id, row in rows.items() for name in row["names"]}
        found: dict[str, dict[str, Any]] = {}
        answered: set[str] = set()
        for ref in refs:
            image_id = ref if ref in rows else by_name.get(ref)
            inspect = None if image_id is None else podman_store.inspect_from_store(
                store.images_dir, rows[image_id])
            if image_id is not None and inspect is not None:
                found[image_id] = inspect
                answered.add(ref)
        return found, answered

    def _images_from_cli(self) -> list[Candidate]:
        try:
            text = self._podman("images", "--all", "--format", "json").stdout
        except CommandError as exc:
            # Someone removing an image while podman lists them fails the whole listing
            # ("image not known"); a second listing no longer sees that image.
            log.info("podman images failed, listing once more: %s", exc)
            text = self._podman("images", "--all", "--format", "json").stdout
        rows = json.loads(text or "[]")
        return [
            Candidate(id=row["Id"], names=tuple(row.get("Names") or row.get("RepoTags") or ()))
            for row in rows
        ]

    def _inspect_many(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found, answered = self._image_inspects_from_store(ids) if kind == "image" \
            else ({}, set())
        rest = [ref for ref in ids if ref not in answered]
        if rest:
            found.update(self._inspect_with_cli(kind, rest))
        return found

    def _inspect_with_cli(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
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
        action = MOUNT_ACTIONS.get(target.type)
        if action is None:
            raise MountError(f"podman cannot mount a {target.type}")
        journal({"runtime": self.name, "action": action, "id": target.id})
        path = self._mount_one(action, target)
        try:
            yield path
        finally:
            self.undo({"action": action, "id": target.id})

    @contextlib.contextmanager
    def mount_rootfs_batch(self, targets: Sequence[Target],
                           journal: Callable[[dict[str, Any]], None], workdir: Path, *,
                           cancel: threading.Event | None = None
                           ) -> Iterator[dict[str, Path | AtomicscanError]]:
        # One mount command per kind for the whole batch, one unmount per kind after it:
        # every podman command reads the whole storage's metadata, so a command per target
        # would make each target cost more as the host holds more images.
        mounted: dict[str, Path | AtomicscanError] = {}
        held: dict[str, list[str]] = {action: [] for action in MOUNT_ACTIONS.values()}
        try:
            for kind, action in MOUNT_ACTIONS.items():
                group = [target for target in targets if target.type == kind]
                if not group:
                    continue
                if cancel is not None and cancel.is_set():
                    raise Cancelled("run cancelled")
                mounted.update(self._mount_group(action, group, journal, held[action]))
            for target in targets:
                if target.type not in MOUNT_ACTIONS:
                    mounted[target.key] = MountError(f"podman cannot mount a {target.type}")
            yield mounted
        finally:
            for action, ids in held.items():
                self._unmount(action, ids)

    def _mount_group(self, action: str, group: Sequence[Target],
                     journal: Callable[[dict[str, Any]], None], held: list[str]
                     ) -> dict[str, Path | AtomicscanError]:
        """Mount targets of one kind with one command; a batch that fails is undone and
        mounted again one target at a time, so a target that can't be mounted fails alone.
        ``held`` gets each ID before its mount starts: the caller unmounts them all."""
        ids = list(dict.fromkeys(target.id for target in group))
        paths: dict[str, Path] = {}
        if len(ids) > 1:
            journal({"runtime": self.name, "action": action, "ids": ids})
            held.extend(ids)
            try:
                paths = self._mount_many(action, ids)
            except AtomicscanError as exc:
                log.info("podman %s of %d targets failed, mounting one by one: %s",
                         action, len(ids), exc)
            unsure = [target_id for target_id in ids if target_id not in paths]
            if unsure:
                # What a failed command left mounted is unknown: undo it all, start over.
                self._unmount(action, unsure)
                held[:] = [target_id for target_id in held if target_id not in unsure]
        mounted: dict[str, Path | AtomicscanError] = {}
        for target in group:
            if target.id not in paths:
                journal({"runtime": self.name, "action": action, "id": target.id})
                held.append(target.id)
                try:
                    paths[target.id] = self._mount_one(action, target)
                except MountError as exc:
                    held.remove(target.id)
                    mounted[target.key] = exc
                    continue
            mounted[target.key] = paths[target.id]
        return mounted

    def _mount_one(self, action: str, target: Target) -> Path:
        args = ("image", "mount") if action == "image-mount" else ("mount",)
        try:
            with self._storage_writes:
                text = self._podman(*args, "--", target.id).stdout.strip()
        except CommandError as exc:
            raise MountError(f"podman could not mount {target.ref}: {exc}") from exc
        if not text.startswith("/") or "\n" in text:
            raise MountError(f"podman gave no usable mount point for {target.ref}")
        return Path(text)

    def _mount_many(self, action: str, ids: Sequence[str]) -> dict[str, Path]:
        """Mount ``ids`` with one command; their mount points, by ID, as podman reports them.

        ``podman image mount`` says which image went where in JSON; ``podman mount`` prints
        bare paths, so its own listing of mounted containers (one more command) says it.
        """
        with self._storage_writes:
            if action == "image-mount":
                rows = self._podman("image", "mount", "--format", "json", "--", *ids).stdout
            else:
                self._podman("mount", "--", *ids)
                rows = self._podman("mount", "--format", "json").stdout
        return mount_points(rows, ids)

    def _unmount(self, action: str, ids: Sequence[str]) -> None:
        """Unmount ``ids`` with one command, or one by one if it fails (podman unmounts none
        of them when one is unknown). Best effort: a failure here is logged, never raised."""
        if not ids:
            return
        args = ("image", "unmount") if action == "image-mount" else ("unmount",)
        with self._storage_writes:
            result = self._podman(*args, "--", *ids, check=False)
            if result.ok or len(ids) == 1:
                return
            for target_id in ids:
                self._podman(*args, "--", target_id, check=False)

    def undo(self, record: Mapping[str, Any]) -> None:
        action = str(record.get("action", ""))
        if action not in MOUNT_ACTIONS.values():
            return
        listed = record.get("ids")
        ids = listed if isinstance(listed, list) else [record.get("id")]
        self._unmount(action, [str(i) for i in ids if isinstance(i, str) and i])

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
        if rootless.rootless():
            return (f"copy root's: sudo podman save {image} | podman load; or build it as "
                    f"yourself: podman build --network host -t {image} scanners/<name>")
        return (f"build it with `podman build --network host -t {image} scanners/<name>` "
                "or run tests/testbed/build-images")


@hookimpl
def atomicscan_add_runtimes(registry: RuntimeRegistry) -> None:
    registry.add("podman", PodmanRuntime)
