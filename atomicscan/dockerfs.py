"""Presenting a docker image's or container's root filesystem on the host, per storage driver.

docker has no ``mount`` command, so atomicscan reads where the layers are from
``docker inspect`` (``GraphDriver``) and ``docker info`` (``DockerRootDir``, ``DriverStatus``)
and mounts them read-only itself. Planning (which mount, with which options) is separate
from doing it, so the plans can be tested without a daemon or root. Supported drivers are
overlay2, vfs and devicemapper; any other driver is refused with a clear message.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atomicscan import mounts, proc
from atomicscan.errors import CommandError, MountError

log = logging.getLogger(__name__)

SUPPORTED_DRIVERS = ("overlay2", "vfs", "devicemapper")
#: Device-mapper devices atomicscan creates start with this, so cleanup can tell them apart.
DEVICE_PREFIX = "atomicscan-"
#: The source field of our overlay mounts: makes leftovers recognisable in mountinfo.
OVERLAY_SOURCE = "atomicscan-overlay"

Journal = Callable[[dict[str, Any]], None]
IsMounted = Callable[[Path], bool]


def _options_limit() -> int:
    # The kernel copies at most one page of mount options (docker checks the same limit).
    return os.sysconf("SC_PAGE_SIZE") - 1


@dataclass(frozen=True)
class DockerStorage:
    """Where and how a docker daemon keeps its layers, from ``docker info``."""

    driver: str
    root_dir: Path
    status: Mapping[str, str]

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> DockerStorage:
        pairs = info.get("DriverStatus") or []
        status = {
            str(pair[0]): str(pair[1])
            for pair in pairs
            if isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2
        }
        return cls(
            driver=str(info.get("Driver") or ""),
            root_dir=Path(str(info.get("DockerRootDir") or "/var/lib/docker")),
            status=status,
        )


@dataclass(frozen=True)
class BindPlan:
    """A directory that already holds the whole root filesystem: bind it read-only."""

    source: Path


@dataclass(frozen=True)
class OverlayPlan:
    """A read-only overlay of layer directories, topmost first (no upper, no workdir)."""

    lowerdirs: tuple[str, ...]
    cwd: Path | None = None
    """Set when ``lowerdirs`` are relative (docker's ``l/`` short links) to this directory."""

    @property
    def options(self) -> str:
        return "ro,lowerdir=" + ":".join(self.lowerdirs)

    def argv(self, destination: Path) -> list[str]:
        mount = ["mount", "-t", "overlay", "-o", self.options, OVERLAY_SOURCE, str(destination)]
        # Relative lowerdirs are resolved by the kernel against the caller's working
        # directory; `env -C` gives mount(8) one without a shell.
        return mount if self.cwd is None else ["env", "-C", str(self.cwd), *mount]


@dataclass(frozen=True)
class ThinDevicePlan:
    """A devicemapper thin device to activate read-only and mount; the rootfs is a subdir."""

    pool: str
    device_id: int
    sectors: int
    fs_type: str | None
    subdir: str = "rootfs"

    @property
    def table(self) -> str:
        return f"0 {self.sectors} thin /dev/mapper/{self.pool} {self.device_id}"

    @property
    def mount_options(self) -> str:
        # Every thin snapshot shares the base device's xfs UUID (nouuid), and a read-only
        # device cannot have a dirty log replayed (norecovery, ext4: noload).
        if self.fs_type == "xfs":
            return "ro,nouuid,norecovery"
        if self.fs_type in ("ext4", "ext3"):
            return "ro,noload"
        return "ro"


MountPlan = BindPlan | OverlayPlan | ThinDevicePlan


# -- planning ------------------------------------------------------------------------------

def unsupported(driver: str) -> MountError:
    return MountError(
        f"docker storage driver {driver or '(none)'} is not supported; "
        f"supported: {', '.join(SUPPORTED_DRIVERS)}"
    )


def plan_rootfs(
    inspect: Mapping[str, Any],
    kind: str,
    storage: DockerStorage,
    *,
    is_mounted: IsMounted = mounts.is_mountpoint,
) -> MountPlan:
    """How to present the rootfs of ``inspect`` (one ``docker inspect`` object) read-only.

    ``kind`` is ``image`` or ``container``. ``is_mounted`` tells whether a path is a mount
    point (a running container's live filesystem is bound rather than rebuilt).
    """
    graph = inspect.get("GraphDriver") or {}
    driver = str(graph.get("Name") or storage.driver)
    data: Mapping[str, Any] = graph.get("Data") or {}
    state = inspect.get("State") or {}
    running = kind == "container" and bool(state.get("Running"))
    if driver == "overlay2":
        return plan_overlay2(data, running=running, is_mounted=is_mounted)
    if driver == "vfs":
        return plan_vfs(inspect, kind, storage)
    if driver == "devicemapper":
        return plan_devicemapper(data, storage, running=running, is_mounted=is_mounted)
    raise unsupported(driver)


def plan_overlay2(data: Mapping[str, Any], *, running: bool = False,
                  is_mounted: IsMounted = mounts.is_mountpoint,
                  limit: int | None = None) -> MountPlan:
    """overlay2: bind a live MergedDir, bind a lone layer, or overlay all layers read-only."""
    merged = str(data.get("MergedDir") or "")
    if running and merged and is_mounted(Path(merged)):
        # Re-layering a live upper dir is undefined for overlayfs; its own merge is not.
        return BindPlan(Path(merged))
    upper = str(data.get("UpperDir") or "")
    if not upper:
        raise MountError("docker inspect shows no overlay2 UpperDir for this target")
    lower = [part for part in str(data.get("LowerDir") or "").split(":") if part]
    if not lower:
        # One layer (every `docker import`): a one-lowerdir overlay is refused by the kernel.
        return BindPlan(Path(upper))
    return fit_overlay([upper, *lower], limit=limit)


def fit_overlay(layers: Sequence[str], *, limit: int | None = None) -> OverlayPlan:
    """An overlay plan whose options fit in one page: full paths, else docker's ``l/`` links.

    ``layers`` are ``<overlay2>/<id>/diff`` directories, topmost first; each ``<id>`` has a
    ``link`` file naming its short symlink ``<overlay2>/l/<short>`` (docker uses them the
    same way when its own option string gets too long).
    """
    limit = _options_limit() if limit is None else limit
    plan = OverlayPlan(tuple(layers))
    if len(plan.options) <= limit:
        return plan
    shorts = [_short_link(Path(layer)) for layer in layers]
    plan = OverlayPlan(tuple(str(short) for short in shorts))
    if len(plan.options) <= limit:
        return plan
    bases = {short.parent.parent for short in shorts}
    if len(bases) == 1:
        plan = OverlayPlan(tuple(f"l/{short.name}" for short in shorts), cwd=bases.pop())
        if len(plan.options) <= limit:
            return plan
    raise MountError(
        f"the image has {len(layers)} layers: even with docker's short layer links the "
        f"overlay mount options exceed the kernel's {limit + 1}-byte limit"
    )


def _short_link(layer: Path) -> Path:
    """``<overlay2>/l/<short>`` for ``<overlay2>/<id>/diff``, checked to point at it."""
    layer_dir = layer.parent
    try:
        short = (layer_dir / "link").read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise MountError(
            f"overlay mount options too long and {layer_dir}/link is unreadable: {exc}"
        ) from exc
    link = layer_dir.parent / "l" / short
    if not short or "/" in short or os.path.realpath(link) != os.path.realpath(layer):
        raise MountError(f"overlay mount options too long and {link} does not lead to {layer}")
    return link


def chain_id(diff_ids: Sequence[str]) -> str:
    """The layer DB key of a stack of layers (``sha256:...``), as docker computes it."""
    if not diff_ids:
        raise MountError("the image has no layers")
    chain = diff_ids[0]
    for diff_id in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
    return chain


def _read_id(path: Path, what: str, storage: DockerStorage) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise MountError(
            f"cannot read the {what} at {path} ({exc.strerror}); is docker's data root "
            f"{storage.root_dir} on this host?"
        ) from exc
    if not value or "/" in value or value in (".", ".."):
        raise MountError(f"unexpected {what} {value!r} in {path}")
    return value


def plan_vfs(inspect: Mapping[str, Any], kind: str, storage: DockerStorage) -> BindPlan:
    """vfs keeps every layer as a full copy in ``<root>/vfs/dir/<id>``: bind the top one."""
    layerdb = storage.root_dir / "image" / "vfs" / "layerdb"
    if kind == "container":
        container_id = str(inspect.get("Id") or "")
        cache_id = _read_id(layerdb / "mounts" / container_id / "mount-id", "mount id", storage)
    else:
        layers = [str(layer) for layer in (inspect.get("RootFS") or {}).get("Layers") or ()]
        top = chain_id(layers).removeprefix("sha256:")
        cache_id = _read_id(layerdb / "sha256" / top / "cache-id", "cache id", storage)
    return BindPlan(storage.root_dir / "vfs" / "dir" / cache_id)


def plan_devicemapper(data: Mapping[str, Any], storage: DockerStorage, *, running: bool = False,
                      is_mounted: IsMounted = mounts.is_mountpoint) -> MountPlan:
    """devicemapper: bind a running container's live mount, else activate its thin device."""
    name = str(data.get("DeviceName") or "")
    if running and "-" in name:
        # DeviceName is "docker-<maj>:<min>-<inode>-<layer id>"; docker mounts it at mnt/<id>.
        live = storage.root_dir / "devicemapper" / "mnt" / name.rsplit("-", 1)[1]
        if is_mounted(live):
            return BindPlan(live / "rootfs")
    pool = storage.status.get("Pool Name")
    if not pool:
        raise MountError("docker info shows no devicemapper \"Pool Name\"")
    try:
        device_id = int(str(data["DeviceId"]))
        size = int(str(data["DeviceSize"]))
    except (KeyError, ValueError) as exc:
        raise MountError(f"docker inspect shows no usable DeviceId/DeviceSize: {exc}") from exc
    fs_type = storage.status.get("Backing Filesystem") or None
    return ThinDevicePlan(pool=pool, device_id=device_id, sectors=size // 512, fs_type=fs_type)


# -- mounting ------------------------------------------------------------------------------

def mounted_rootfs(inspect: Mapping[str, Any], kind: str, storage: DockerStorage,
                   destination: Path, journal: Journal
                   ) -> contextlib.AbstractContextManager[Path]:
    """Plan and mount in one step; see :func:`mounted`."""
    return mounted(plan_rootfs(inspect, kind, storage), destination, journal)


@contextlib.contextmanager
def mounted(plan: MountPlan, destination: Path, journal: Journal) -> Iterator[Path]:
    """Carry out ``plan`` at ``destination`` (created, then removed) and yield the rootfs.

    Every step is journaled before it is taken and undone on every exit path, including a
    failure halfway through.
    """
    if isinstance(plan, BindPlan):
        if not plan.source.is_dir():
            raise MountError(f"docker's layer directory {plan.source} is not on this host")
        journal({"action": "mount", "path": str(destination)})
        with mounts.readonly_bind(plan.source, destination) as path:
            yield path
    elif isinstance(plan, OverlayPlan):
        with _overlay(plan, destination, journal) as path:
            yield path
    else:
        with _thin_device(plan, destination, journal) as path:
            yield path


@contextlib.contextmanager
def _overlay(plan: OverlayPlan, destination: Path, journal: Journal) -> Iterator[Path]:
    missing = [d for d in plan.lowerdirs if not (plan.cwd or Path("/")).joinpath(d).is_dir()]
    if missing:
        raise MountError(f"docker's layer directory {missing[0]} is not on this host")
    journal({"action": "mount", "path": str(destination)})
    destination.mkdir(parents=True, exist_ok=True)
    try:
        try:
            proc.run(plan.argv(destination))
        except CommandError as exc:
            raise MountError(f"cannot mount the docker layers read-only: {exc}") from exc
        try:
            yield destination
        finally:
            mounts.unmount(destination)
    finally:
        with contextlib.suppress(OSError):
            destination.rmdir()


@contextlib.contextmanager
def _thin_device(plan: ThinDevicePlan, destination: Path, journal: Journal) -> Iterator[Path]:
    name = f"{DEVICE_PREFIX}{plan.device_id}-{secrets.token_hex(4)}"
    device = f"/dev/mapper/{name}"
    journal({"action": "dm-device", "name": name})
    try:
        try:
            proc.run(["dmsetup", "create", name, "--readonly", "--table", plan.table])
        except CommandError as exc:
            raise MountError(
                f"cannot activate docker's thin device {plan.device_id} (pool {plan.pool}) "
                f"read-only: {exc}"
            ) from exc
        journal({"action": "mount", "path": str(destination)})
        destination.mkdir(parents=True, exist_ok=True)
        fs_args = ["-t", plan.fs_type] if plan.fs_type else []
        try:
            proc.run(["mount", *fs_args, "-o", plan.mount_options, device, str(destination)])
        except CommandError as exc:
            raise MountError(f"cannot mount {device} read-only: {exc}") from exc
        try:
            rootfs = destination / plan.subdir
            if not rootfs.is_dir():
                raise MountError(f"docker's thin device {plan.device_id} has no {plan.subdir}/")
            yield rootfs
        finally:
            mounts.unmount(destination)
    finally:
        with contextlib.suppress(OSError):
            destination.rmdir()
        remove_device(name)


def remove_device(name: str) -> None:
    """Remove one of our device-mapper devices; never touches anyone else's."""
    if not name.startswith(DEVICE_PREFIX):
        log.warning("not removing device-mapper device %s: not created by atomicscan", name)
        return
    result = proc.run(["dmsetup", "remove", "--retry", name], check=False)
    if not result.ok:
        log.debug("dmsetup remove %s: %s", name, result.stderr.strip())


def undo(record: Mapping[str, Any]) -> None:
    """Undo one journal record written by :func:`mounted` (best effort, idempotent)."""
    action = record.get("action")
    if action == "mount" and record.get("path"):
        path = Path(str(record["path"]))
        for point in mounts.mounts_under(path):
            mounts.unmount(point)
        with contextlib.suppress(OSError):
            path.rmdir()
    elif action == "dm-device" and record.get("name"):
        remove_device(str(record["name"]))
