"""Where a run's results go on the host: private, and checked so no one else can redirect them."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO

from atomicscan import rootless, stamps
from atomicscan.errors import AtomicscanError, UsageError

DEFAULT_RESULTS_ROOT = Path("/var/lib/atomicscan")


class ResultsWriteError(AtomicscanError):
    """The results directory cannot be written (a full disk, a read-only filesystem)."""


def default_results_root() -> Path:
    """/var/lib/atomicscan for root, ``$XDG_DATA_HOME/atomicscan`` for a user."""
    return rootless.data_home() if rootless.rootless() else DEFAULT_RESULTS_ROOT


def results_root(output_dir: Path | None) -> Path:
    """``--output-dir``, else ``$ATOMICSCAN_RESULTS_DIR``, else the default."""
    if output_dir:
        return output_dir
    value = os.environ.get("ATOMICSCAN_RESULTS_DIR")
    return Path(value) if value else default_results_root()


def _unmapped_owner(path: Path) -> tuple[int, ...]:
    """Inside a rootless run's user namespace, root's directories (``/``, ``/home``) show as
    owned by the kernel's overflow uid, and so do every other user's. A path that
    :func:`check_chain` judged with the real owners before the run joined the namespace may
    show that uid; no other path may."""
    if not rootless.in_user_namespace() or path not in _CHECKED_BEFORE_JOINING:
        return ()
    try:
        return (int(Path("/proc/sys/kernel/overflowuid").read_text(encoding="ascii")),)
    except (OSError, ValueError):
        return (65534,)


#: Directories whose chain :func:`check_chain` judged before this process joined a user
#: namespace, where owners can no longer be told apart.
_CHECKED_BEFORE_JOINING: set[Path] = set()


def _foreign_link(path: Path) -> str | None:
    """Why following ``path`` as written is unsafe: a symlink on the way that neither root
    nor we own (someone else's link, in a directory they can write, decides where our
    results go), or None."""
    current = Path(path.anchor or "/")
    for part in path.parts[1:] if path.is_absolute() else (Path.cwd() / path).parts[1:]:
        current = current / part
        try:
            info = current.lstat()
        except OSError:
            return None  # the rest is created by us
        if stat.S_ISLNK(info.st_mode):
            if info.st_uid not in (0, os.geteuid(), *_unmapped_owner(current)):
                return f"{current} is a symlink owned by uid {info.st_uid}"
            # Ours, but in a directory others may write: they could replace it.
            holder = _unsafe_dir(current.parent, mine=False)
            if holder is not None:
                return f"{current} is a symlink in a directory others can change ({holder})"
            current = Path(os.path.realpath(current))
    return None


def check_chain(root: Path) -> None:
    """Refuse ``root`` when someone else could swap it or a directory above it, judged
    with the real owners: a user's run calls this before it joins podman's namespace."""
    real_root = root.resolve()
    _refuse_unsafe_chain(root, real_root)
    if not rootless.in_user_namespace():
        given = root if root.is_absolute() else Path.cwd() / root
        _CHECKED_BEFORE_JOINING.update([real_root, *real_root.parents, given, *given.parents])


def _unsafe_dir(path: Path, *, mine: bool) -> str | None:
    """Why someone else could swap or plant entries in ``path``, or None.

    Every directory on the way must be root's or ours and not writable by others, unless
    sticky (as /tmp is: others can't rename what is ours there); the results directories
    themselves must be ours and writable by us alone.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    owners = {os.geteuid()} if mine else {0, os.geteuid(), *_unmapped_owner(path)}
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symlink"
    if info.st_uid not in owners:
        return f"{path} belongs to uid {info.st_uid}"
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and (mine or not info.st_mode & stat.S_ISVTX):
        return f"{path} is writable by others"
    return None


def scanner_results_dir(root: Path, scanner: str) -> Path:
    """``root/scanner``, after checking the name can't lead out of ``root`` (``..``, ``/``)
    and that no one else can swap a directory on the way for a symlink of theirs."""
    real_root = root.resolve()
    candidate = (real_root / scanner).resolve()
    if candidate.parent != real_root or candidate.name != scanner:
        raise UsageError(f"scanner name {scanner!r} would put results outside {root}")
    _refuse_unsafe_chain(root, real_root, candidate)
    return candidate


def _refuse_unsafe_chain(root: Path, real_root: Path, *ours: Path) -> None:
    """Refuse ``root`` when a link on its way is someone else's, or a directory on the way
    (``real_root``'s parents), ``real_root`` or any of ``ours`` could be swapped by others."""
    problems = (
        _foreign_link(root),
        *(_unsafe_dir(parent, mine=False) for parent in reversed(real_root.parents)),
        *(_unsafe_dir(path, mine=True) for path in (real_root, *ours)),
    )
    problem = next((p for p in problems if p is not None), None)
    if problem is not None:
        raise UsageError(f"results directory {root}: {problem}; choose a directory only you "
                         "can write (mkdir -m 0700 DIR)")


def results_directory(base: Path | None, scanner: str) -> Path:
    """This run's (not yet created) results directory: ``root/scanner/<start time>``."""
    return scanner_results_dir(results_root(base), scanner) / stamps.results_dir_name()


def shared_bits(root: Path) -> int:
    """The group read (and search) bits an admin gave the results root, which its runs
    inherit: results are private unless the root is shared with a group, and never with
    everyone (they may hold what a scanner read: secrets in findings, mounted host files)."""
    try:
        return root.stat().st_mode & 0o050
    except OSError:
        return 0


def make_results_dir(root: Path, run_dir: Path) -> None:
    """Create a run's results directory as private as the results root; a new root is
    readable by its owner only."""
    try:
        if not root.exists():
            root.mkdir(parents=True, mode=0o700)
        mode = 0o700 | shared_bits(root)
        if not run_dir.parent.exists():
            run_dir.parent.mkdir(mode=mode)
            run_dir.parent.chmod(mode)
        run_dir.mkdir(mode=mode)
        run_dir.chmod(mode)
    except OSError as exc:
        raise ResultsWriteError(f"cannot create the results directory {run_dir}: "
                                f"{exc.strerror or exc}") from exc


def share_like_root(root: Path, run_dir: Path) -> None:
    """Files the scanner left get the results root's group bits, or none (0600/0700)."""
    bits = shared_bits(root)
    for directory, subdirs, files in os.walk(run_dir):
        for name, mode in [*((d, 0o700 | bits) for d in subdirs),
                           *((f, 0o600 | (bits & 0o040)) for f in files)]:
            path = Path(directory, name)
            if not path.is_symlink():  # the copy makes none; never chmod through one
                path.chmod(mode)


def write_private(path: Path, text: str | Callable[[IO[str]], None], *,
                  shared: int = 0) -> None:
    """Write ``path`` (a new file, never through a symlink) readable by its owner, and by
    the group when ``shared`` has its read bit. ``text`` is the content, or a function that
    writes it to the open file (a big report streamed, not built as one string first)."""
    mode = 0o600 | (shared & 0o040)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), mode)
        if callable(text):
            text(out)
        else:
            out.write(text)
