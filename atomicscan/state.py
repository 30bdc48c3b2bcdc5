"""Per-run state on the host (lock, journal, mounts), and cleanup after runs that were killed.

Every run owns ``<state root>/<run id>/`` and holds an exclusive ``flock`` on its ``lock``
file while alive; the kernel drops that lock when the process dies, even by SIGKILL. A run
directory whose lock can be taken therefore belongs to a dead run and may be cleaned.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from atomicscan import mounts, rootless, stamps
from atomicscan.errors import AtomicscanError

log = logging.getLogger(__name__)

DEFAULT_STATE_ROOT = Path("/run/atomicscan")
#: A run directory without a lock file younger than this may still be starting up.
_STARTUP_GRACE_SECONDS = 60.0


def state_root() -> Path:
    """``$ATOMICSCAN_STATE_DIR``, else /run/atomicscan for root and
    ``$XDG_RUNTIME_DIR/atomicscan`` for a user."""
    if os.environ.get("ATOMICSCAN_STATE_DIR"):
        return Path(os.environ["ATOMICSCAN_STATE_DIR"])
    return rootless.state_home() if rootless.rootless() else DEFAULT_STATE_ROOT


def root_tag(root: Path | None = None) -> str:
    """Which state root a run belongs to, for labels: runs under another root aren't ours."""
    return hashlib.sha256(str(root or state_root()).encode()).hexdigest()[:8]


def run_label_value(run_id: str) -> str:
    return f"{run_id}@{root_tag()}"


def is_run_id(text: str) -> bool:
    """Whether ``text`` is shaped like an ID :func:`new_run_id` gives."""
    return bool(stamps.RUN_ID_PATTERN.match(text))


def new_run_id() -> str:
    return f"{stamps.run_id_stamp()}-{secrets.token_hex(4)}"


@dataclass
class RunState:
    """The live state directory of one run."""

    run_id: str
    directory: Path
    _lock: IO[str] | None = field(default=None, repr=False)

    @classmethod
    @contextlib.contextmanager
    def create(cls, run_id: str, root: Path | None = None) -> Iterator[RunState]:
        """Create, lock and finally remove the run's directory."""
        base = root or state_root()
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        _require_private(base)
        directory = base / run_id
        directory.mkdir(mode=0o700)
        lock = (directory / "lock").open("w", encoding="utf-8")
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        state = cls(run_id, directory, lock)
        try:
            yield state
        finally:
            state._remove()

    def journal(self, record: Mapping[str, Any]) -> None:
        """Append a record saying how to undo something, before doing it."""
        with (self.directory / "journal.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(dict(record), sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def _remove(self) -> None:
        leftovers = mounts.mounts_under(self.directory)
        for point in leftovers:
            log.warning("unmounting leftover %s", point)
            mounts.unmount(point)
        if not mounts.mounts_under(self.directory):
            shutil.rmtree(self.directory, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()


def _require_private(base: Path) -> None:
    """The state root must be our own directory that no one else can write: its journals
    say what ``cleanup`` unmounts and removes."""
    info = base.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) \
            or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise StateDirError(f"run state directory {base} must be a directory of yours that "
                            "only you can write (it is not)")


class StateDirError(AtomicscanError):
    """The run state directory is not this user's own private directory."""


def read_journal(directory: Path) -> list[dict[str, Any]]:
    path = directory / "journal.jsonl"
    records: list[dict[str, Any]] = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
    return records


def live_run_ids(root: Path | None = None) -> set[str]:
    """Run IDs whose owner process still holds its lock."""
    base = root or state_root()
    alive: set[str] = set()
    if not base.is_dir():
        return alive
    for directory in base.iterdir():
        if _run_dir(directory) and not _is_stale(directory):
            alive.add(directory.name)
    return alive


def _is_stale(directory: Path) -> bool:
    lock_path = directory / "lock"
    try:
        handle = lock_path.open("r+", encoding="utf-8")
    except FileNotFoundError:
        age = time.time() - directory.stat().st_mtime
        return age > _STARTUP_GRACE_SECONDS
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def stale_runs(root: Path | None = None) -> list[Path]:
    """Run directories left behind by runs that are no longer alive."""
    base = root or state_root()
    if not base.is_dir():
        return []
    _require_private(base)
    return sorted(d for d in base.iterdir() if _run_dir(d) and _is_stale(d))


def _run_dir(path: Path) -> bool:
    """A run's directory: a real one (a symlink planted there would lead cleanup elsewhere)."""
    return path.is_dir() and not path.is_symlink()
