"""The host side of a batch as a small protocol (bind read-only, scratch tmpfs, pin a path,
copy a host file) and its real implementation: :mod:`atomicscan.mounts` and inode pinning."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Protocol

from atomicscan import hostpaths, mounts
from atomicscan.errors import UsageError

#: A file's identity: its device and inode numbers.
Inode = tuple[int, int]


class Host(Protocol):
    """What a batch asks of the host; fast tests pass a fake that uses plain directories."""

    def require_root(self) -> None:
        """Raise when this process can't mount (atomicscan needs root)."""

    def bind_readonly(self, source: Path, mountpoint: Path, *, expect: Inode | None = None
                      ) -> contextlib.AbstractContextManager[Path]:
        """Present ``source`` read-only at ``mountpoint`` until exit; with ``expect``, only
        if the bind shows that very inode."""

    def scratch_tmpfs(self, mountpoint: Path, size_bytes: int, uid: int, gid: int, *,
                      inodes: int | None = None) -> contextlib.AbstractContextManager[Path]:
        """A size- and inode-capped scratch filesystem owned by ``uid:gid`` until exit."""

    def pin(self, path: Path) -> tuple[Path, Inode, int]:
        """Where ``path`` really is, its inode and mode (raises OSError; ELOOP on a symlink)."""

    def pin_host_path(self, source: str, what: str) -> tuple[Path, Inode]:
        """A definition's host path, checked, as its real path and inode (raises
        :class:`atomicscan.hostpaths.HostPathError`)."""

    def copy_host_file(self, value: str, what: str, copy: Path, limit: int) -> None:
        """Check the host file ``value`` again and copy it into the new file ``copy``."""


def pin(path: Path) -> tuple[Path, Inode, int]:
    """Where ``path`` really is, its inode and mode, read from an open file of it (not
    following a last symlink): the path the kernel gives can't be a name swapped later."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        pinned = Path(f"/proc/self/fd/{fd}").readlink()
    finally:
        os.close(fd)
    if stat.S_ISLNK(info.st_mode):
        raise OSError(errno.ELOOP, "a symlink", str(path))
    return pinned, (info.st_dev, info.st_ino), info.st_mode


def pin_host_path(source: str, what: str) -> tuple[Path, Inode]:
    """The real path of ``source`` and its inode, judged on what an open file points at.

    The path is opened (without following a last symlink) and judged by the path the
    kernel gives for that open file, so a directory swapped for a symlink after a check
    can't slip through; the bind is then required to show that very inode.
    """
    real = hostpaths.check_host_path(source, what=what)
    try:
        pinned, inode, mode = pin(real)
    except OSError as exc:
        raise hostpaths.HostPathError(f"{what} {source}: {exc.strerror}") from None
    reason = hostpaths.refused_reason(pinned)
    if reason is None and not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        reason = f"{pinned} is not a directory or a regular file"
    if reason is not None or pinned != real:
        raise hostpaths.HostPathError(
            f"{what} {source}: refused: {reason or 'it changed while being checked'}")
    return pinned, inode


def copy_regular(source: Path, copy: Path, limit: int) -> None:
    """Copy a regular file (never a FIFO or a device, never through a swapped-in symlink)
    into a new file the scanner's user can read but not change."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise UsageError(f"{source}: not a regular file")
        out_fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
        with os.fdopen(out_fd, "wb") as out:
            copied = 0
            for chunk in iter(lambda: src.read(1 << 20), b""):
                copied += len(chunk)
                if copied > limit:
                    raise UsageError(f"{source}: over the {limit}-byte limit for host files")
                out.write(chunk)
    copy.chmod(0o444)


class RealHost:
    """The host as it is: real mounts (as root) and real pinning."""

    def require_root(self) -> None:
        mounts.require_root()

    def bind_readonly(self, source: Path, mountpoint: Path, *, expect: Inode | None = None
                      ) -> contextlib.AbstractContextManager[Path]:
        return mounts.readonly_bind(source, mountpoint, expect=expect)

    def scratch_tmpfs(self, mountpoint: Path, size_bytes: int, uid: int, gid: int, *,
                      inodes: int | None = None) -> contextlib.AbstractContextManager[Path]:
        return mounts.scratch_tmpfs(mountpoint, size_bytes, uid, gid, inodes=inodes)

    def pin(self, path: Path) -> tuple[Path, Inode, int]:
        return pin(path)

    def pin_host_path(self, source: str, what: str) -> tuple[Path, Inode]:
        return pin_host_path(source, what)

    def copy_host_file(self, value: str, what: str, copy: Path, limit: int) -> None:
        # Judged again at use: the path may have been swapped since the first check.
        source = hostpaths.check_host_path(value, what=what)
        copy_regular(source, copy, limit)
