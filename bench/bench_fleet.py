#!/usr/bin/env python3
"""Fleet (issue 15): how many hosts one PostgreSQL takes, measured with concurrent writers.

W writer processes (W = 1, 4, 16, 32 by default) each pose as a different host and record
runs of a realistic host into one throwaway PostgreSQL (tests/postgres.py, started for the
run, stopped by its PID), as fast as they can, a fixed number of runs each. The alternative
line is SQLite with a single writer (what one host without a shared database does). All the
configurations run in one invocation on one machine, each on a fresh database, in rotating
order when repeated.

A host's run: ``--targets`` targets (50) of ``--packages`` packages (300). Half the targets
are images of 30 image families the whole fleet shares (the same package lists on every host
that runs them); the other half are the host's own applications, a family's list with 30
packages of their own. A family is rebuilt every 8 runs (staggered), which bumps 15 of its
packages, so package lists are partly new in every run, as on hosts that pull updates.

One recording is what each host's ``atomicscan`` does at the end of a run:
``Store.open(url)`` (connect, schema check), ``Store.record(report)`` and ``close``. Each
writer records its host's first run before the start signal (untimed: a new host's first
inventory), then ``--runs`` runs timed one by one. Measured: recordings per second overall
(from the start signal to the last writer's end), p50/p95/max latency of one recording,
the writers' CPU and the PostgreSQL server's CPU per recording (its processes' user+system
time, reaped backends included), and the database size per host-run (``pg_database_size``;
SQLite: its file and WAL after a checkpoint).

The server runs as tests/postgres.py starts it, with fsync off (its command line wins over
``ALTER SYSTEM``): commits do not wait for the disk. The script measures what one fdatasync
costs on the same disk (``pg_test_fsync``), so the text can say what fsync would add.

Run it as root from the repository:

    sudo .venv/bin/python bench/bench_fleet.py [--writers 1,4,16,32] [--runs N]
        [--repeat N] [--markdown]

The server, its directory and the SQLite files are removed on every exit path (Ctrl-C and
SIGTERM too); the host's own history database is never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from benchlib import (  # noqa: E402
    BenchError,
    Samples,
    Terminated,
    _on_sigterm,
    cpu_model,
    database_bytes,
    log,
    memory_total,
    render_table,
    rotated,
)

from atomicscan.history import schema  # noqa: E402
from atomicscan.history.store import HistoryError, Store  # noqa: E402
from atomicscan.results import Package, Report, ScanResult  # noqa: E402

SQLITE = "SQLite"
POSTGRESQL = "PostgreSQL"
#: How long a writer may take to start, and to finish its runs.
START_TIMEOUT = 600.0
FINISH_TIMEOUT = 1800.0
#: The share of a server's capacity a fleet may use on average (the rest absorbs bursts).
HEADROOM = 0.5
BASE_TIME = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- the workload


@dataclass(frozen=True)
class Workload:
    """What one host's run holds; the same on every backend."""

    targets: int = 50
    packages: int = 300
    families: int = 30
    #: Packages of its own in each of a host's applications.
    own_packages: int = 30
    #: Packages a family's rebuild updates.
    bumps: int = 15
    #: A family (and a host's application) is rebuilt every this many runs, staggered.
    rebuild_every: int = 8

    @property
    def own_apps(self) -> int:
        return self.targets // 2


def _rng(seed: str) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible test data, not secrets


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _stamp(when: dt.datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Fleet:
    """Deterministic package lists: every writer builds the same ones for the same family."""

    workload: Workload
    _names: dict[int, list[str]] = field(default_factory=dict)
    _versions: dict[tuple[int, int], dict[str, str]] = field(default_factory=dict)
    _packages: dict[tuple[str, str], Package] = field(default_factory=dict)

    def family_names(self, family: int) -> list[str]:
        if family not in self._names:
            pool = [f"lib{index:03d}" for index in range(self.workload.packages * 3 // 2)]
            self._names[family] = sorted(_rng(str(family)).sample(
                pool, self.workload.packages))
        return self._names[family]

    def versions(self, family: int, build: int) -> dict[str, str]:
        """Each name's version in the family's build: bumped once per rebuild that chose it."""
        key = (family, build)
        if key not in self._versions:
            if build <= 0:
                self._versions[key] = {name: "1.0-1" for name in self.family_names(family)}
            else:
                previous = dict(self.versions(family, build - 1))
                chooser = _rng(f"{family}:{build}")
                for name in chooser.sample(self.family_names(family), self.workload.bumps):
                    major, _, rest = previous[name].partition(".")
                    previous[name] = f"{major}.{int(rest.partition('-')[0]) + 1}-1"
                self._versions[key] = previous
        return self._versions[key]

    def package(self, name: str, version: str) -> Package:
        key = (name, version)
        if key not in self._packages:
            self._packages[key] = Package(
                name=name, version=version, architecture="amd64", type="deb",
                purl=f"pkg:deb/debian/{name}@{version}?arch=amd64&distro=debian-12",
                source=name)
        return self._packages[key]

    def build(self, serial: int, run: int) -> int:
        return (run + serial) // self.workload.rebuild_every

    def image(self, family: int, run: int, when: dt.datetime) -> ScanResult:
        build = self.build(family, run)
        image_id = _digest(f"family-{family}:{build}")
        packages = tuple(self.package(name, version)
                         for name, version in sorted(self.versions(family, build).items()))
        ref = f"registry.example.com/base/app-{family:02d}:latest"
        return _result(ref, image_id, "image", packages, when,
                       {"names": [ref], "labels": {"build": str(build)}})

    def application(self, host: int, app: int, run: int, when: dt.datetime) -> ScanResult:
        family = (host + app) % self.workload.families
        build = self.build(family, run)
        shared = sorted(self.versions(family, build).items())
        own_build = self.build(host * 97 + app, run)
        packages = [self.package(name, version)
                    for name, version in shared[:self.workload.packages
                                                - self.workload.own_packages]]
        packages += [self.package(f"host{host}-app{app}-lib{index:02d}", f"{own_build}.0-1")
                     for index in range(self.workload.own_packages)]
        target_id = _digest(f"host-{host}:container-{app}")
        return _result(f"app-{app:02d}", target_id, "container", tuple(packages), when,
                       {"names": [f"app-{app:02d}"], "state": "running",
                        "image_id": _digest(f"host-{host}:app-{app}:{own_build}")})

    def report(self, host: int, run: int) -> Report:
        """Host ``host``'s run number ``run`` (an hour after the one before)."""
        when = BASE_TIME + dt.timedelta(hours=run, seconds=host)
        images = self.workload.targets - self.workload.own_apps
        chooser = _rng(f"host-{host}")
        if images <= self.workload.families:
            families = chooser.sample(range(self.workload.families), images)
        else:
            families = chooser.choices(range(self.workload.families), k=images)
        results = [self.image(family, run, when) for family in families]
        results += [self.application(host, app, run, when)
                    for app in range(self.workload.own_apps)]
        run_id = f"{when:%Y%m%d-%H%M%S}-{host:04d}"
        return Report(run_id=run_id, scanner="packages", scan_type="inventory",
                      started_at=_stamp(when),
                      finished_at=_stamp(when + dt.timedelta(seconds=30)),
                      results_dir=Path(f"/var/lib/atomicscan/results/{run_id}"),
                      results=tuple(results), host=host_identity(host), scanner_args={},
                      version="bench")


def host_identity(host: int) -> dict[str, str]:
    return {"hostname": f"node{host:03d}.fleet.example", "machine_id": _digest(str(host))[:32]}


def _result(target: str, target_id: str, kind: str, packages: tuple[Package, ...],
            when: dt.datetime, meta: dict[str, Any]) -> ScanResult:
    return ScanResult(
        target=target, target_id=target_id, target_type=kind, runtime="podman",
        scanner="packages", scan_type="inventory", successful=True, started_at=_stamp(when),
        finished_at=_stamp(when + dt.timedelta(seconds=1)),
        os={"id": "debian", "version_id": "12", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
        packages=packages, target_meta=meta, scanner_image_id="5" * 64)


# --------------------------------------------------------------------------- one writer


def writer_main(spec_text: str) -> int:
    """A writer process: record the host's first run, signal ready, wait, record the rest."""
    spec = json.loads(spec_text)
    fleet = Fleet(Workload(**spec["workload"]))
    host, runs = int(spec["host"]), int(spec["runs"])
    reports = [fleet.report(host, run) for run in range(runs + 1)]
    errors: list[str] = []
    # The untimed first run, a new host's inventory; retried as `atomicscan history import`
    # would be after a lock timeout, so that the timed part starts with every host known.
    for _attempt in range(5):
        try:
            with Store.open(spec["url"]) as store:
                store.record(reports[0])
            break
        except HistoryError as exc:
            errors.append(f"first run: {exc}")
    Path(spec["ready"]).touch()
    go = Path(spec["go"])
    while not go.exists():
        time.sleep(0.002)
    latencies, failed, cpu = [], [], 0.0
    for report in reports[1:]:
        started, cpu_started = time.monotonic(), time.process_time()
        try:
            with Store.open(spec["url"]) as store:
                recorded = store.record(report)
        except HistoryError as exc:  # a real run keeps its report on disk for an import
            failed.append(time.monotonic() - started)
            errors.append(str(exc))
            continue
        finally:
            cpu += time.process_time() - cpu_started
        latencies.append(time.monotonic() - started)
        if not recorded:
            raise BenchError(f"host {host}: run {report.run_id} recorded twice")
    print(json.dumps({"latencies": latencies, "failed": failed, "errors": errors[-3:],
                      "first_run_errors": sum(e.startswith("first run") for e in errors),
                      "end": time.monotonic(), "cpu": cpu}))
    return 0


# --------------------------------------------------------------------------- databases


@dataclass(frozen=True)
class Database:
    backend: str
    url: str
    sqlite_file: Path | None = None



def count_rows(url: str) -> dict[str, int]:
    tables = (schema.hosts, schema.runs, schema.targets, schema.package_sets)
    with Store.open(url) as store, store.engine.connect() as connection:
        return {table.name: int(connection.execute(
                    sa.select(sa.func.count()).select_from(table)).scalar_one())
                for table in tables}


def _ticks(stat_line: str) -> tuple[int, list[int]]:
    """(parent PID, [utime, stime, cutime, cstime]) from a /proc/PID/stat line."""
    rest = stat_line.rpartition(")")[2].split()
    return int(rest[1]), [int(value) for value in rest[11:15]]


def server_cpu_seconds(postmaster: int) -> float:
    """CPU time of the postmaster, its live children and the children it has reaped."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = sum(_ticks(Path(f"/proc/{postmaster}/stat").read_text())[1])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == str(postmaster):
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent, values = _ticks((entry / "stat").read_text())
            if parent == postmaster:
                total += values[0] + values[1]
    return total / ticks


def postmaster_pid(server_url: str) -> int:
    with psycopg.connect(server_url) as connection:
        row = connection.execute("SHOW data_directory").fetchone()
    if row is None:
        raise BenchError("SHOW data_directory returned nothing")
    return int((Path(str(row[0])) / "postmaster.pid").read_text().split()[0])


SETTINGS = ("fsync", "synchronous_commit", "shared_buffers", "max_connections")


def server_settings(server_url: str) -> str:
    """The settings that matter here, as the server reports them."""
    with psycopg.connect(server_url) as connection:
        shown = [connection.execute(f"SHOW {name}").fetchone() for name in SETTINGS]
    return ", ".join(f"{name} {row[0] if row else '?'}"
                     for name, row in zip(SETTINGS, shown, strict=True))


def disk_sync_cost(scratch: Path) -> str:
    """What one fdatasync of an 8 kB write costs on the disk below ``scratch`` (the server's
    directory is there too): ``pg_test_fsync``, the server's own tool, one second a test."""
    import postgres as throwaway  # tests/postgres.py

    try:
        done = subprocess.run([str(throwaway.bindir() / "pg_test_fsync"), "-s", "1", "-f",
                               str(scratch / "fsync-probe")], capture_output=True, text=True,
                              timeout=120, check=False)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    for line in done.stdout.splitlines():
        fields = line.split()
        if fields[:1] == ["fdatasync"] and "usecs/op" in fields:
            usecs = fields[fields.index("usecs/op") - 1]
            return f"{usecs} us per fdatasync of 8 kB (pg_test_fsync)"
    return "unavailable (pg_test_fsync printed no fdatasync line)"


# --------------------------------------------------------------------------- one configuration


@dataclass
class Outcome:
    backend: str
    writers: int
    runs: int
    seconds: float
    latencies: list[float]
    #: Seconds until each failed recording gave up (a lock timeout, say).
    failed: list[float]
    errors: list[str]
    client_cpu: float
    server_cpu: float | None
    bytes_empty: int
    bytes_first: int
    bytes_full: int
    rows: dict[str, int]

    @property
    def recordings(self) -> int:
        """Recordings attempted in the timed part."""
        return self.writers * self.runs

    @property
    def rate(self) -> float:
        """Successful recordings per second."""
        return len(self.latencies) / self.seconds


def _spawn(spec: dict[str, Any], children: list[subprocess.Popen[str]]) -> None:
    child = subprocess.Popen([sys.executable, __file__, "--writer", json.dumps(spec)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    children.append(child)


def _stop_all(children: Sequence[subprocess.Popen[str]]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def measure(database: Database, writers: int, runs: int, workload: Workload, scratch: Path,
            postmaster: int | None) -> Outcome:
    Store.open(database.url).close()  # the schema, before any writer starts
    empty = database_bytes(database.url, database.sqlite_file)
    gate = Path(tempfile.mkdtemp(prefix="gate-", dir=scratch))
    go = gate / "go"
    children: list[subprocess.Popen[str]] = []
    try:
        for host in range(writers):
            _spawn({"url": database.url, "host": host, "runs": runs, "ready": str(
                gate / f"ready-{host}"), "go": str(go), "workload": dataclasses.asdict(workload)},
                children)
        deadline = time.monotonic() + START_TIMEOUT
        while sum((gate / f"ready-{host}").exists() for host in range(writers)) < writers:
            failed = [child for child in children if child.poll() is not None]
            if failed or time.monotonic() > deadline:
                detail = failed[0].communicate()[1][-800:] if failed else "timed out"
                raise BenchError(f"{database.backend}: a writer did not start: {detail}")
            time.sleep(0.01)
        first = database_bytes(database.url, database.sqlite_file)
        cpu_before = server_cpu_seconds(postmaster) if postmaster else None
        started = time.monotonic()
        go.touch()
        outputs = [child.communicate(timeout=FINISH_TIMEOUT) for child in children]
    finally:
        _stop_all(children)
    reports = []
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        if child.returncode != 0:
            raise BenchError(f"{database.backend}: a writer failed: {stderr.strip()[-800:]}")
        reports.append(json.loads(stdout))
    seconds = max(float(report["end"]) for report in reports) - started
    server = (server_cpu_seconds(postmaster) - cpu_before
              if postmaster and cpu_before is not None else None)
    full = database_bytes(database.url, database.sqlite_file)
    rows = count_rows(database.url)
    gave_up = [float(value) for report in reports for value in report["failed"]]
    recorded = writers * (runs + 1) - len(gave_up) - sum(
        1 for report in reports if int(report["first_run_errors"]) >= 5)
    expected = {"runs": recorded, "targets": recorded * workload.targets}
    for table, count in expected.items():
        if rows[table] != count:
            raise BenchError(f"{database.backend} W={writers}: {rows[table]} {table}, "
                             f"not {count}")
    errors = [str(error) for report in reports for error in report["errors"]]
    return Outcome(database.backend, writers, runs, seconds,
                   [float(value) for report in reports for value in report["latencies"]],
                   gave_up, errors, sum(float(report["cpu"]) for report in reports), server,
                   empty, first, full, rows)


# --------------------------------------------------------------------------- output


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile: the smallest value with ``share`` of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def size_text(value: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def label(backend: str, writers: int) -> str:
    return f"{backend}, {writers} writer{'s' if writers > 1 else ''}"


@dataclass
class Line:
    """One configuration over the repetitions."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def rate(self) -> Samples:
        return Samples([outcome.rate for outcome in self.outcomes])

    @property
    def latencies(self) -> list[float]:
        return [value for outcome in self.outcomes for value in outcome.latencies]

    @property
    def recordings(self) -> int:
        return sum(outcome.recordings for outcome in self.outcomes)

    def per_recording(self, pick: str) -> float | None:
        values = [getattr(outcome, pick) for outcome in self.outcomes]
        if any(value is None for value in values):
            return None
        return float(sum(values)) / self.recordings

    @property
    def last(self) -> Outcome:
        return self.outcomes[-1]


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f}"


def tables(lines: dict[tuple[str, int], Line], markdown: bool, heading: str) -> list[str]:
    out = [f"\n{heading}Recording throughput and latency (one recording = Store.open + "
           "record + close of one host's run)"]
    rows = []
    for (backend, writers), line in lines.items():
        latencies = line.latencies
        failed = sum(len(outcome.failed) for outcome in line.outcomes)
        rows.append([label(backend, writers), str(line.recordings), str(failed),
                     f"{line.rate.median:.2f}", f"{line.rate.low:.2f}-{line.rate.high:.2f}",
                     ms(percentile(latencies, 0.5)), ms(percentile(latencies, 0.95)),
                     ms(max(latencies, default=None)), ms(line.per_recording("client_cpu")),
                     ms(line.per_recording("server_cpu"))])
    out.append(render_table(["writers", "recordings", "failed", "recordings/s (median)",
                             "min-max",
                             "p50 ms", "p95 ms", "max ms", "writer CPU ms/rec",
                             "server CPU ms/rec"], rows, markdown))
    reference = lines.get((SQLITE, 1))
    if reference is not None:
        out.append("\nAgainst SQLite with a single writer (ratio of medians; p50 latency):\n")
        rows = []
        base_p50 = percentile(reference.latencies, 0.5)
        for (backend, writers), line in lines.items():
            if (backend, writers) == (SQLITE, 1):
                continue
            p50 = percentile(line.latencies, 0.5)
            rows.append([label(backend, writers),
                         f"{line.rate.median / reference.rate.median:.2f}x",
                         f"{p50 / base_p50:.2f}x" if p50 and base_p50 else "n/a"])
        out.append(render_table(["writers", "throughput / SQLite's", "p50 latency / SQLite's"],
                                rows, markdown))
    out.append(f"\n{heading}Database size (last repetition of each)")
    rows = []
    for (backend, writers), line in lines.items():
        last = line.last
        rows.append([label(backend, writers), size_text(last.bytes_empty),
                     size_text((last.bytes_first - last.bytes_empty) / writers),
                     size_text((last.bytes_full - last.bytes_first) / last.recordings),
                     size_text(last.bytes_full),
                     f"{last.rows['package_sets']:,}"])
    out.append(render_table(["writers", "empty schema", "a new host's first run",
                             "per further host-run", "full", "package sets"], rows, markdown))
    errors = [f"{label(backend, writers)}: {error}" for (backend, writers), line in lines.items()
              for outcome in line.outcomes for error in outcome.errors[:2]]
    if errors:
        out.append("\nFailed recordings (a few, as the writers reported them):\n")
        out += [f"- {error[:300]}" for error in errors[:8]]
    return out


def capacity(lines: dict[tuple[str, int], Line], markdown: bool, heading: str) -> list[str]:
    """Hosts one PostgreSQL takes at an interval, from the measured numbers."""
    postgres = {writers: line for (backend, writers), line in lines.items()
                if backend == POSTGRESQL}
    if not postgres:
        return []
    peak_writers, peak = max(postgres.items(), key=lambda item: item[1].rate.median)
    server_cpu = min((cpu for line in postgres.values()
                      if (cpu := line.per_recording("server_cpu")) is not None), default=None)
    # The most hosts measured share the most package lists, as a fleet does.
    widest = postgres[max(postgres)].last
    growth = (widest.bytes_full - widest.bytes_first) / widest.recordings
    cores = os.cpu_count() or 1
    out = [f"\n{heading}Hosts one PostgreSQL takes (at {HEADROOM:.0%} of capacity on average)"]
    rows = []
    for name, every in (("hourly", 3600), ("daily", 86400)):
        measured = peak.rate.median * HEADROOM * every
        dedicated = (cores / server_cpu * HEADROOM * every) if server_cpu else None
        yearly = growth * (86400 * 365 / every)
        rows.append([name, f"{measured:,.0f}",
                     "n/a" if dedicated is None else f"{dedicated:,.0f}",
                     size_text(yearly)])
    out.append(render_table(
        ["scans", f"hosts, measured peak ({peak.rate.median:.1f}/s at W={peak_writers})",
         f"hosts, server CPU only ({cores} cores, {ms(server_cpu)} ms/recording)",
         f"database growth per host and year (W={max(postgres)})"], rows, markdown))
    return out


def machine_facts(server_url: str, settings: str) -> dict[str, str]:
    with psycopg.connect(server_url) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return {
        "date (UTC)": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": str(os.cpu_count()),
        "CPU": cpu_model(),
        "memory": memory_total(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "PostgreSQL": f"{row[0] if row else '?'} (private, {settings})",
        "SQLite": f"{sqlite3.sqlite_version} (WAL, synchronous NORMAL, as atomicscan sets it)",
        "SQLAlchemy, psycopg": f"{sa.__version__}, {psycopg.__version__}",
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time W concurrent hosts recording into one PostgreSQL, against SQLite "
                    "with one writer (run as root).")
    parser.add_argument("--writers", default="1,4,16,32",
                        help="PostgreSQL writer counts, comma-separated (default: 1,4,16,32)")
    parser.add_argument("--runs", type=int, default=5, metavar="N",
                        help="timed runs each writer records (default: 5)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="repetitions of every configuration (default: 1)")
    parser.add_argument("--targets", type=int, default=50, help="targets per run (50)")
    parser.add_argument("--packages", type=int, default=300, help="packages per target (300)")
    parser.add_argument("--skip-sqlite", action="store_true", help="leave out SQLite")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args(argv)
    try:
        args.writer_counts = [int(part) for part in args.writers.split(",") if part.strip()]
    except ValueError:
        parser.error("--writers takes comma-separated numbers")
    if not args.writer_counts or min(args.writer_counts) < 1 or max(args.writer_counts) > 90:
        parser.error("--writers: between 1 and 90 each (the server allows 100 connections)")
    if args.runs < 1 or args.repeat < 1 or args.targets < 2 or args.packages < 40:
        parser.error("--runs and --repeat at least 1, --targets 2, --packages 40")
    return args


@contextlib.contextmanager
def server() -> Iterator[str]:
    import postgres as throwaway  # tests/postgres.py

    with throwaway.throwaway_postgresql() as url:
        yield url


def run_all(args: argparse.Namespace, server_url: str, scratch: Path,
            workload: Workload) -> dict[tuple[str, int], Line]:
    import postgres as throwaway

    postmaster = postmaster_pid(server_url)
    configs = [] if args.skip_sqlite else [(SQLITE, 1)]
    configs += [(POSTGRESQL, writers) for writers in args.writer_counts]
    lines = {config: Line() for config in configs}
    for repetition in range(args.repeat):
        for backend, writers in rotated(configs, repetition):
            if backend == SQLITE:
                path = scratch / f"history-{repetition}-{writers}.db"
                database = Database(SQLITE, f"sqlite:///{path}", path)
            else:
                database = Database(POSTGRESQL, throwaway.fresh_database(server_url))
            outcome = measure(database, writers, args.runs, workload, scratch,
                              postmaster if backend == POSTGRESQL else None)
            lines[(backend, writers)].outcomes.append(outcome)
            log(f"{repetition + 1}/{args.repeat} {label(backend, writers)}: "
                f"{outcome.rate:.2f} recordings/s, p50 "
                f"{ms(percentile(outcome.latencies, 0.5))} ms, "
                f"{len(outcome.failed)} failed, server CPU "
                f"{ms((outcome.server_cpu or 0) / outcome.recordings)} ms/rec, "
                f"writers' CPU {outcome.client_cpu:.1f} s, "
                f"{(outcome.bytes_full - outcome.bytes_first) / outcome.recordings:.0f} "
                "bytes per host-run")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--writer":
        return writer_main(sys.argv[2])
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench_fleet: run as root (the throwaway PostgreSQL runs as user postgres)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Never the host's own history: nothing here reads ATOMICSCAN_DB, but a writer's
    # environment should not point at it either.
    os.environ.pop("ATOMICSCAN_DB", None)
    workload = Workload(targets=args.targets, packages=args.packages)
    scratch = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    heading = "### " if args.markdown else "== "
    try:
        with server() as server_url:
            settings = server_settings(server_url)
            facts = machine_facts(server_url, settings)
            facts["disk"] = disk_sync_cost(scratch)
            log(f"PostgreSQL up ({settings}); disk: {facts['disk']}")
            lines = run_all(args, server_url, scratch, workload)
            facts["load average at end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except (KeyboardInterrupt, Terminated):
        log("interrupted; cleaning up")
        return 130
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    facts["workload"] = (f"{workload.targets} targets x {workload.packages} packages per run; "
                         f"{workload.targets - workload.own_apps} images of "
                         f"{workload.families} shared families, {workload.own_apps} apps of "
                         f"the host's own ({workload.own_packages} own packages each); a "
                         f"rebuild every {workload.rebuild_every} runs bumps "
                         f"{workload.bumps} packages; {args.runs} timed runs per writer after "
                         "one untimed first run")
    out = [f"{heading}Machine",
           render_table(["what", "value"], [[k, v] for k, v in facts.items()], args.markdown)]
    out += tables(lines, args.markdown, heading)
    out += capacity(lines, args.markdown, heading)
    leftover = scratch.exists()
    out.append("\nLeft behind: " + (f"{scratch}" if leftover else "nothing") + ".")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
