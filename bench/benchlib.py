"""Pieces every benchmark here shares: timing, statistics, tables, signal handling, mounts."""

from __future__ import annotations

import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol


@dataclass
class Done:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the tables)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


class Terminated(BaseException):
    """SIGTERM arrived: unwind so that every ``finally`` runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def mount_points_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first."""
    prefix = str(root).rstrip("/")
    found = []
    for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines():
        point = line.split()[4].replace("\\040", " ").replace("\\134", "\\")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def rotated(items: Sequence[Any], by: int) -> list[Any]:
    shift = by % len(items)
    return [*items[shift:], *items[:shift]]


def secs(value: float) -> str:
    return f"{value:.3f}"


def stopwatch() -> Callable[[], float]:
    started = time.perf_counter()
    return lambda: time.perf_counter() - started


class BenchError(Exception):
    """A step of the benchmark failed; the message says which command and why."""


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def stat_row(name: str, samples: Samples) -> list[str]:
    if not samples.values:
        return [name, "n/a", "n/a", "n/a"]
    return [name, secs(samples.median), secs(samples.low), secs(samples.high)]


class Runner(Protocol):
    """A script's ``run``: time ``argv``, keep stdout with ``capture``, raise
    :class:`BenchError` on failure unless ``check`` is false."""

    def __call__(self, argv: Sequence[str | Path], *, env: Mapping[str, str] | None = ...,
                 capture: bool = ..., check: bool = ...) -> Done: ...


def first_line(run: Runner, argv: Sequence[str | Path],
               env: Mapping[str, str] | None = None) -> str:
    """The first line a command prints (stdout, else stderr), for the machine facts."""
    try:
        done = run(argv, env=env, capture=True, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def _proc_field(path: str, prefix: str) -> str | None:
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith(prefix):
            return line.partition(":")[2].strip()
    return None


def cpu_model() -> str:
    return _proc_field("/proc/cpuinfo", "model name") or "unknown"


def memory_total() -> str:
    total = _proc_field("/proc/meminfo", "MemTotal:")
    return f"{int(total.split()[0]) / 1024 / 1024:.1f} GiB" if total else "unknown"


def syft_version(run: Runner, syft: Path, env: Mapping[str, str]) -> str:
    for line in run([syft, "version"], env=env, capture=True, check=False).stdout.splitlines():
        if line.startswith("Version:"):
            return line.partition(":")[2].strip()
    return "unknown"


class MountKeeper:
    """The scratch directories, image mounts and read-only binds a benchmark sets up, each
    remembered before it is made, so :meth:`release_mounts` can take down whatever a
    Ctrl-C left half done. A script's own janitor adds what else it sets up."""

    def __init__(self, workdir: Path, run: Runner, bind_options: str = "ro") -> None:
        self.workdir = workdir
        self.binds: list[Path] = []
        self.image_mounts: list[str] = []
        self._run = run
        self._bind_options = bind_options
        self._serial = 0

    def next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def scratch(self, prefix: str) -> Path:
        path = self.workdir / f"{prefix}-{self.next_serial()}"
        path.mkdir()
        return path

    def mount_image(self, image: str) -> Path:
        # Remembered first: a mount cut short by Ctrl-C may have happened and is undone too.
        self.image_mounts.append(image)
        try:
            merged = self._run(["podman", "image", "mount", image], capture=True).stdout.strip()
        except BenchError:
            self.image_mounts.remove(image)  # podman said it failed: nothing to undo
            raise
        return Path(merged)

    def unmount_image(self, image: str) -> None:
        self._run(["podman", "image", "unmount", image])
        self.image_mounts.remove(image)

    def bind_readonly(self, source: Path, mountpoint: Path) -> None:
        """A bind of ``source``, then remounted with the keeper's options (``ro``...)."""
        mountpoint.mkdir()
        self.binds.append(mountpoint)
        self._run(["mount", "--bind", source, mountpoint])
        self._run(["mount", "-o", f"remount,bind,{self._bind_options}", mountpoint])

    def unbind(self, mountpoint: Path) -> None:
        self._run(["umount", mountpoint])
        self.binds.remove(mountpoint)
        mountpoint.rmdir()

    def image_is_mounted(self, image: str) -> bool:
        """Whether podman lists ``image`` as mounted (by anyone)."""
        image_id = self._run(["podman", "image", "inspect", "--format", "{{.Id}}", image],
                             capture=True, check=False).stdout.strip()
        listed = self._run(["podman", "image", "mount"], capture=True, check=False).stdout
        return bool(image_id) and image_id in listed

    def force_unmount(self, point: Path) -> None:
        if self._run(["umount", point], check=False).returncode != 0:
            self._run(["umount", "--lazy", point], check=False)

    def release_mounts(self) -> list[str]:
        """Undo every bind and image mount still up; return the ones that failed."""
        problems: list[str] = []
        for mountpoint in reversed(self.binds):
            if mountpoint in mount_points_under(mountpoint):
                self.force_unmount(mountpoint)
        self.binds.clear()
        for image in reversed(self.image_mounts):
            done = self._run(["podman", "image", "unmount", image], check=False)
            if done.returncode != 0 and self.image_is_mounted(image):
                problems.append(f"podman image unmount {image}: {done.stderr.strip()}")
        self.image_mounts.clear()
        return problems

    def release_workdir(self) -> list[str]:
        """Unmount what is left below the work directory (an atomicscan run stopped half-way
        unmounts itself on SIGTERM: this is the last net) and remove it."""
        for point in mount_points_under(self.workdir):
            self.force_unmount(point)
        still = mount_points_under(self.workdir)
        problems = [f"still mounted: {point}" for point in still]
        if not still:  # never delete through a mount into image storage
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.workdir.exists():
            problems.append(f"could not remove {self.workdir}")
        return problems


def database_bytes(url: str, sqlite_file: Path | None) -> int:
    """What a history database takes on disk: SQLite's file and WAL after a checkpoint (the
    WAL is truncated then, so this is the steady size), PostgreSQL's ``pg_database_size``."""
    if sqlite_file is not None:
        import contextlib
        import sqlite3

        with contextlib.closing(sqlite3.connect(sqlite_file)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        parts = [sqlite_file, *(Path(f"{sqlite_file}{suffix}") for suffix in ("-wal", "-shm"))]
        return sum(part.stat().st_size for part in parts if part.exists())
    import psycopg  # only the history benches need it

    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT pg_database_size(current_database())").fetchone()
    if row is None:
        raise BenchError("pg_database_size returned nothing")
    return int(row[0])
