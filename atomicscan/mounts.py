"""Host mounts atomicscan makes itself: read-only binds and size-limited scratch tmpfs."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from atomicscan import proc
from atomicscan.errors import CommandError, MountError

log = logging.getLogger(__name__)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return (field.replace("\\040", " ").replace("\\011", "\t")
            .replace("\\012", "\n").replace("\\134", "\\"))


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first (the order to unmount them)."""
    prefix = str(root).rstrip("/")
    found: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:  # noqa: PTH123
        for line in mountinfo:
            point = _unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def is_mountpoint(path: Path) -> bool:
    return path in mounts_under(path)


def unmount(path: Path) -> None:
    """Unmount ``path``; fall back to a lazy unmount if something still holds it busy."""
    result = proc.run(["umount", str(path)], check=False)
    if result.ok:
        return
    log.warning("umount %s failed (%s); detaching lazily", path, result.stderr.strip())
    proc.run(["umount", "--lazy", str(path)], check=False)


def _require_inode(source: Path, mountpoint: Path, expect: tuple[int, int]) -> None:
    shown = mountpoint.stat()
    if (shown.st_dev, shown.st_ino) != expect:
        raise CommandError(("mount", "--bind"), 1, f"{source} changed while it was being mounted")


@contextlib.contextmanager
def readonly_bind(source: Path, mountpoint: Path, *,
                  expect: tuple[int, int] | None = None) -> Iterator[Path]:
    """Present ``source`` read-only (and nosuid, nodev) at ``mountpoint`` until exit.

    A regular file is bound onto a file. With ``expect`` (a device and inode number), the
    bind is undone and refused unless it shows exactly that inode: a path swapped for a
    symlink between the caller's check and the mount is caught here.
    """
    is_file = source.is_file()
    if is_file:
        mountpoint.parent.mkdir(parents=True, exist_ok=True)
        mountpoint.touch(mode=0o444, exist_ok=True)
    else:
        mountpoint.mkdir(parents=True, exist_ok=True)
    remove = mountpoint.unlink if is_file else mountpoint.rmdir
    try:
        proc.run(["mount", "--bind", str(source), str(mountpoint)])
        if expect is not None:
            _require_inode(source, mountpoint, expect)
        # A bind inherits the source's flags; read-only needs its own remount.
        proc.run(["mount", "-o", "remount,bind,ro,nosuid,nodev", str(mountpoint)])
        # Keep later mounts inside the target from propagating back to the host.
        proc.run(["mount", "--make-rprivate", str(mountpoint)])
    except CommandError as exc:
        if is_mountpoint(mountpoint):
            unmount(mountpoint)
        with contextlib.suppress(OSError):
            remove()
        raise MountError(f"cannot bind {source} read-only: {exc}") from exc
    try:
        yield mountpoint
    finally:
        unmount(mountpoint)
        with contextlib.suppress(OSError):
            remove()


@contextlib.contextmanager
def scratch_tmpfs(mountpoint: Path, size_bytes: int, uid: int, gid: int, *,
                  inodes: int | None = None) -> Iterator[Path]:
    """A tmpfs of at most ``size_bytes`` (and ``inodes`` entries) owned by the scanner's user:
    its /scanout. The inode cap stops a flood of empty directories, which cost no bytes."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    options = f"size={size_bytes},mode=0700,uid={uid},gid={gid},nosuid,nodev,noexec"
    if inodes is not None:
        options += f",nr_inodes={inodes}"
    try:
        proc.run(["mount", "-t", "tmpfs", "-o", options, "atomicscan-scanout", str(mountpoint)])
    except CommandError as exc:
        raise MountError(f"cannot mount scratch space for /scanout: {exc}") from exc
    try:
        yield mountpoint
    finally:
        unmount(mountpoint)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def require_root() -> None:
    """Raise unless this process may mount: root, or a user inside podman's namespaces."""
    if os.geteuid() != 0:
        raise MountError("atomicscan mounts root filesystems: run it as root, or as a user "
                         "through the atomicscan command (it joins podman's user namespace)")
