#!/usr/bin/env python3
"""History (issue 13): what recording a run costs, and how the history answers at scale.

Side by side in one run, on SQLite and on PostgreSQL (a private server from
``tests/postgres.py``, started for the run and stopped by its PID at the end):

R  A real 50-target run. Fifty throw-away images are built with bench_host.py's code
   (``FROM localhost/atomicscan-test/debian:bookworm`` plus a label, so distinct IDs),
   tagged ``localhost/atomicscan-bench/history:<i>`` (not bench_host's own tags, which another
   benchmark may be using). Then ``atomicscan --runtime podman --scanner packages --json
   --no-cache --output-dir DIR`` with the 50 references on its command line, three ways:
   ``--no-history`` (off), ``--db sqlite:///...`` and ``--db postgresql://...``. One
   untimed run of each first (for the databases: the first run, which creates the schema),
   then N repetitions, the three in rotating order. The ratio of the medians, on / off, is
   held against the issue's target, under 1.10. Every recorded run is counted back from its
   database. In-process, the same report is then recorded again (``Store.open`` +
   ``Store.record``), which is the hook's own work without the noise of a whole run, and
   fresh processes import the CLI's modules with and without the history store.

S  Synthetic history: 10,000 targets of 300 packages each, as Reports fed to
   ``Store.record``, one run after the other in time order. 8 hosts, each with 30 images
   and 20 containers; runs of 10 to 50 of them spread over 90 days; 60 image families
   rebuilt weekly, each holding 300 of 360 package names, at the versions released by its
   build day (a few hundred distinct versions, so package sets repeat partly). Then
   "which targets had package X at time T" through
   ``atomicscan.history.queries.targets_with_package_at`` (what ``history package NAME
   --at WHEN`` runs) for several X and T, the same on both databases (their answers must
   agree), against the target of under 1 s; the recording throughput; and the database
   size per recorded target (SQLite: the file with its WAL after a checkpoint;
   PostgreSQL: ``pg_database_size``).

Run it as root from the repository:

    sudo .venv/bin/python bench/bench_history.py [--repeat N] [--count N] [--targets N]
        [--markdown]

State, results, config, databases and the 50 images are removed before it exits, also on
Ctrl-C or SIGTERM; it never touches the host's own history database.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Not resolved: a venv's python is a symlink, and its scripts sit beside the link.
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import bench_host  # noqa: E402 - after the sys.path set-up, like atomicscan
import postgres as throwaway  # noqa: E402 - tests/postgres.py
import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from bench_host import (  # noqa: E402
    Janitor,
    build_images,
    compile_bytecode,
    interpreter_of,
    other_processes,
    parse_report,
    require_images,
    run,
    source_revision,
    verdict,
)
from benchlib import (  # noqa: E402
    BenchError,
    Samples,
    Terminated,
    _on_sigterm,
    cpu_model,
    database_bytes,
    first_line,
    log,
    memory_total,
    render_table,
    rotated,
    secs,
    stopwatch,
)

from atomicscan.history import schema  # noqa: E402
from atomicscan.history.queries import targets_with_package_at  # noqa: E402
from atomicscan.history.store import Store  # noqa: E402
from atomicscan.history.versions import VersionSpec, parse_spec  # noqa: E402
from atomicscan.results import Package, Report, ScanResult  # noqa: E402

SCANNER_IMAGE = "localhost/atomicscan/packages:latest"
HOST_CONF = Path("/etc/atomicscan/containers.conf")
#: The bench images' own tags and label: bench_host.py's would collide with a concurrent run.
HISTORY_REPO = "localhost/atomicscan-bench/history"
HISTORY_LABEL = "io.atomicscan.bench-history"

#: From the issue: recording may add under 10 % to a 50-target run.
RECORDING_TARGET = 1.10
#: From the issue: "which targets had package X at time T" answers in under a second.
QUERY_TARGET = 1.0

OFF = "off"
SQLITE = "SQLite"
POSTGRESQL = "PostgreSQL"
BACKENDS = (SQLITE, POSTGRESQL)
VARIANTS = (OFF, *BACKENDS)

# The synthetic history.
SYNTHETIC_END = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
DAYS = 90
HOSTS = 8
FAMILIES = 60
POOL_IMAGES = 30
POOL_CONTAINERS = 20
REBUILD_DAYS = 7.0
RUN_SIZES = (10, 50)
#: In every image, so "which targets had X" has its largest answer for these.
CORE = ("openssl", "libssl3", "zlib1g", "libc6", "bash", "coreutils")
STEMS = ("acl", "attr", "audit", "blkid", "bz2", "cap", "crypt", "curl", "db", "ffi", "gcrypt",
         "gmp", "gnutls", "idn", "lz4", "lzma", "mount", "ncurses", "nettle", "pam", "pcre",
         "seccomp", "selinux", "sqlite", "systemd", "tasn", "tinfo", "udev", "uuid", "xml",
         "xxhash", "zstd")


# --------------------------------------------------------------------------- databases


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    sqlite_file: Path | None = None
    """The SQLite database file (its WAL and shared memory sit beside it)."""


def sqlite_backend(path: Path) -> Backend:
    return Backend(SQLITE, f"sqlite:///{path}", path)


def postgresql_backend(server_url: str) -> Backend:
    return Backend(POSTGRESQL, throwaway.fresh_database(server_url))



def count_rows(store: Store) -> dict[str, int]:
    with store.engine.connect() as connection:
        return {table.name: int(connection.execute(
                    sa.select(sa.func.count()).select_from(table)).scalar_one())
                for table in (schema.runs, schema.targets, schema.package_sets,
                              schema.package_set_members, schema.packages)}


def recorded_targets(store: Store, run_id: str) -> int:
    """How many targets the database holds for the run ``run_id``."""
    query = (sa.select(sa.func.count(schema.targets.c.id))
             .select_from(schema.targets.join(schema.runs,
                                              schema.targets.c.run_id == schema.runs.c.id))
             .where(schema.runs.c.run_id == run_id))
    with store.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


# --------------------------------------------------------------------------- R: real runs


@contextlib.contextmanager
def history_tags() -> Iterator[None]:
    """bench_host.build_images with this script's own tags and label: its images stay
    distinct from those of a bench_host.py run on the same machine (a different label gives
    a different image, not another tag of the same one)."""
    saved = bench_host.BENCH_REPO, bench_host.BENCH_LABEL
    bench_host.BENCH_REPO, bench_host.BENCH_LABEL = HISTORY_REPO, HISTORY_LABEL
    try:
        yield
    finally:
        bench_host.BENCH_REPO, bench_host.BENCH_LABEL = saved


def scan_env(trap: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("ATOMICSCAN_RESULTS_DIR", "ATOMICSCAN_STATE_DIR", "ATOMICSCAN_CACHE_DIR",
                 "ATOMICSCAN_CONFIG_DIR", "ATOMICSCAN_BLOCK_PLUGINS"):
        env.pop(name, None)  # each run gets its own; the history plugin is never blocked
    if "CONTAINERS_CONF" not in env and HOST_CONF.is_file():
        env["CONTAINERS_CONF"] = str(HOST_CONF)
    # --db wins over this; a run that recorded despite --no-history would create the trap
    # (checked at the end), never the host's /var/lib/atomicscan/history.db.
    env["ATOMICSCAN_DB"] = f"sqlite:///{trap}"
    return env


@dataclass
class ScanBench:
    janitor: Janitor
    env: dict[str, str]
    tags: list[str]
    ids: list[str]
    stores: dict[str, Store]
    recorded: dict[str, int] = field(default_factory=dict)
    last_report: str = ""

    def argv(self, variant: str, out: Path) -> list[str | Path]:
        history: list[str | Path] = (["--no-history"] if variant == OFF
                                     else ["--db", self.stores[variant].url])
        return [VENV_BIN / "atomicscan", "--runtime", "podman", "--scanner", "packages",
                "--json", "--no-cache", "--output-dir", out, *history, *self.tags]

    def once(self, variant: str) -> float:
        """One run over the images; checked, and counted back from its database."""
        home = self.janitor.scratch("scan")
        config = home / "config"
        config.mkdir()
        env = {**self.env, "ATOMICSCAN_RESULTS_DIR": str(home / "results"),
               "ATOMICSCAN_STATE_DIR": str(home / "state"),
               "ATOMICSCAN_CONFIG_DIR": str(config)}
        try:
            done = run(self.argv(variant, home / "out"), env=env, capture=True)
        finally:
            self.janitor.discard(home)
        doc = parse_report(done.stdout)
        self.janitor.run_ids.add(doc.run_id)
        if doc.failed:
            raise BenchError(f"{len(doc.failed)} target(s) failed: {doc.failed[0]}")
        if set(doc.packages) != set(self.ids) or doc.cached:
            raise BenchError("the report's targets are not the bench images, scanned afresh")
        if variant != OFF:
            found = recorded_targets(self.stores[variant], doc.run_id)
            if found != len(self.ids):
                raise BenchError(f"{variant} holds {found} targets of run {doc.run_id}, "
                                 f"not {len(self.ids)}")
            self.recorded[variant] = self.recorded.get(variant, 0) + 1
            self.last_report = done.stdout
        return done.seconds


@dataclass
class ScanTimes:
    first: dict[str, float]
    seconds: dict[str, Samples]
    record: dict[str, Samples]
    """In-process Store.open + Store.record of the run's own report."""
    imports: tuple[Samples, Samples]
    """Fresh processes importing the CLI's modules, without and with the history store."""
    packages: int


def measure_scans(bench: ScanBench, repeat: int) -> ScanTimes:
    first = {variant: bench.once(variant) for variant in VARIANTS}
    log("first runs: " + ", ".join(f"{v} {secs(s)} s" for v, s in first.items()))
    seconds = {variant: Samples() for variant in VARIANTS}
    for index in range(repeat):
        for variant in rotated(VARIANTS, index):
            seconds[variant].add(bench.once(variant))
        log(f"repetition {index + 1}/{repeat}: "
            + ", ".join(f"{v} {secs(seconds[v].values[-1])} s" for v in VARIANTS)
            + f"; load {os.getloadavg()[0]:.2f}; others: {other_processes()}")
    for variant in BACKENDS:
        runs = count_rows(bench.stores[variant])["runs"]
        if runs != bench.recorded.get(variant):
            raise BenchError(f"{variant} holds {runs} runs, {bench.recorded.get(variant)} "
                             "were recorded into it")
    report = Report.from_json(json.loads(bench.last_report))
    packages = sum(len(result.packages or ()) for result in report.results)
    record = {variant: Samples() for variant in BACKENDS}
    for index in range(max(repeat, 5)):
        for variant in rotated(BACKENDS, index):
            again = dataclasses.replace(report, run_id=f"{report.run_id}-again-{index}")
            elapsed = stopwatch()
            with Store.open(bench.stores[variant].url) as store:
                if not store.record(again):
                    raise BenchError(f"{variant}: run {again.run_id} was already recorded")
            record[variant].add(elapsed())
    return ScanTimes(first, seconds, record, history_import_cost(max(repeat, 5)), packages)


def history_import_cost(repeat: int) -> tuple[Samples, Samples]:
    """Fresh processes that import the CLI's modules, without and with the history store
    (SQLAlchemy and the schema), in turn: the difference is what a recording run loads."""
    cli = "import atomicscan.cli, atomicscan.builtin.history"
    without, with_store = Samples(), Samples()
    for index in range(repeat + 1):
        for code in rotated([cli, cli + "; import atomicscan.history.store"], index):
            done = run([sys.executable, "-c", code])
            if index:  # the first round warms the page cache
                (with_store if "store" in code else without).add(done.seconds)
    return without, with_store


# --------------------------------------------------------------------------- S: synthetic


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def _stamp(when: dt.datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Family:
    """An image that is rebuilt every week; its builds hold the versions of their day."""

    index: int
    names: tuple[str, ...]
    offset: float

    @property
    def ref(self) -> str:
        return f"registry.example.com/team/app-{self.index:02d}:latest"

    def build(self, day: float) -> int:
        return int((day - self.offset) // REBUILD_DAYS)

    def image_id(self, build: int) -> str:
        return hashlib.sha256(f"app-{self.index}:{build}".encode()).hexdigest()


@dataclass(frozen=True)
class Slot:
    """One target on one host: an image, or a container of one."""

    family: Family
    container: str | None = None
    """The container's name (its ID is derived from it and the host)."""


@dataclass
class Universe:
    """Package names with release days, image families, and hosts with their targets."""

    releases: dict[str, tuple[float, ...]]
    bases: dict[str, tuple[int, int, int]]
    families: list[Family]
    hosts: list[tuple[str, str, str, list[Slot]]]
    """(hostname, machine ID, runtime, targets)."""
    _packages: dict[tuple[str, int], Package] = field(default_factory=dict)
    _sets: dict[tuple[int, int], tuple[Package, ...]] = field(default_factory=dict)

    def version(self, name: str, release: int) -> str:
        major, minor, patch = self.bases[name]
        return f"{major}.{minor}.{patch + release}-{1 + release % 3}"

    def package(self, name: str, release: int) -> Package:
        key = (name, release)
        if key not in self._packages:
            version = self.version(name, release)
            arch = "all" if name.endswith("-data") else "amd64"
            self._packages[key] = Package(
                name=name, version=version, architecture=arch, type="deb",
                purl=f"pkg:deb/debian/{name}@{version}?arch={arch}&distro=debian-12",
                source=name.removesuffix("-data"))
        return self._packages[key]

    def packages(self, family: Family, build: int) -> tuple[Package, ...]:
        key = (family.index, build)
        if key not in self._sets:
            built = family.offset + build * REBUILD_DAYS
            self._sets[key] = tuple(
                self.package(name, sum(1 for day in self.releases[name] if day <= built))
                for name in family.names)
        return self._sets[key]

    def builds(self) -> int:
        """Image builds scanned so far (each a package list)."""
        return len(self._sets)

    def distinct_versions(self) -> int:
        return sum(1 + len(days) for days in self.releases.values())


def make_universe(rng: random.Random, per_target: int) -> Universe:
    extra = [f"lib{STEMS[i % len(STEMS)]}{i // len(STEMS) + 1}"
             + ("-data" if i % 11 == 0 else "") for i in range(per_target + per_target // 5)]
    names = [*CORE, *extra][:max(per_target + per_target // 5, len(CORE))]
    releases = {name: tuple(sorted(rng.uniform(0, DAYS)
                                   for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 2, 3)))))
                for name in names}
    bases = {name: (rng.randint(0, 9), rng.randint(0, 20), rng.randint(0, 30)) for name in names}
    core = [name for name in names if name in CORE]
    rest = [name for name in names if name not in CORE]
    families = [Family(index, tuple(sorted(
                    core + rng.sample(rest, max(0, min(per_target - len(core), len(rest)))))),
                    rng.uniform(0, REBUILD_DAYS))
                for index in range(1, FAMILIES + 1)]
    hosts = []
    for number in range(1, HOSTS + 1):
        images = rng.sample(families, POOL_IMAGES)
        slots = [Slot(family) for family in images]
        slots += [Slot(rng.choice(images), f"app-{slot:02d}") for slot in range(POOL_CONTAINERS)]
        hosts.append((f"node{number:02d}.example.com", _hex(rng, 32),
                      "podman" if number % 2 else "docker", slots))
    return Universe(releases, bases, families, hosts)


def _result(universe: Universe, host: tuple[str, str, str, list[Slot]], slot: Slot,
            day: float, when: dt.datetime) -> ScanResult:
    hostname, _machine_id, runtime, _slots = host
    family = slot.family
    build = family.build(day)
    image_id = family.image_id(build)
    if slot.container is None:
        target, target_id, kind = family.ref, image_id, "image"
        meta: dict[str, object] = {
            "names": [family.ref],
            "digests": [f"{family.ref.partition(':')[0]}@sha256:{image_id[::-1]}"],
            "labels": {"org.opencontainers.image.version": str(build)}}
    else:
        target, kind = slot.container, "container"
        target_id = hashlib.sha256(f"{hostname}:{slot.container}".encode()).hexdigest()
        meta = {"names": [slot.container], "image_id": image_id, "state": "running",
                "labels": {"app": f"app-{family.index:02d}"}}
    return ScanResult(
        target=target, target_id=target_id, target_type=kind, runtime=runtime,
        scanner="packages", scan_type="inventory", successful=True, started_at=_stamp(when),
        finished_at=_stamp(when + dt.timedelta(seconds=1)),
        os={"id": "debian", "version_id": "12",
            "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
        packages=universe.packages(family, build), target_meta=meta,
        scanner_image_id="5" * 64)


def synthetic_reports(universe: Universe, rng: random.Random, total: int) -> list[Report]:
    """Runs of 10 to 50 targets over the last 90 days, in time order, ``total`` targets."""
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(min(rng.randint(*RUN_SIZES), total - sum(sizes)))
    days = sorted(rng.uniform(0, DAYS) for _ in sizes)
    start = SYNTHETIC_END - dt.timedelta(days=DAYS)
    reports = []
    for size, day in zip(sizes, days, strict=True):
        host = rng.choice(universe.hosts)
        when = start + dt.timedelta(days=day)
        run_id = f"{when:%Y%m%d-%H%M%S}-{_hex(rng, 8)}"
        results = tuple(_result(universe, host, slot, day, when)
                        for slot in rng.sample(host[3], min(size, len(host[3]))))
        reports.append(Report(
            run_id=run_id, scanner="packages", scan_type="inventory", started_at=_stamp(when),
            finished_at=_stamp(when + dt.timedelta(seconds=5 + size)),
            results_dir=Path(f"/var/lib/atomicscan/results/{run_id}"), results=results,
            host={"hostname": host[0], "machine_id": host[1]}, scanner_args={},
            version="bench"))
    return reports


@dataclass(frozen=True)
class Query:
    name: str
    at: dt.datetime
    spec: VersionSpec | None = None

    @property
    def label(self) -> str:
        return (f"{self.name}{' ' + self.spec.op + self.spec.version if self.spec else ''} "
                f"at {self.at:%Y-%m-%d %H:%M}")


def query_plan(universe: Universe, rng: random.Random, count: int) -> list[Query]:
    """Names in every image (the largest answers), in some and in few, at times spread over
    the 90 days; every third with a version condition."""
    in_families = {name: sum(1 for f in universe.families if name in f.names)
                   for name in universe.releases}
    by_reach = sorted(in_families, key=lambda n: (-in_families[n], n))
    picks = [by_reach[0], by_reach[len(by_reach) // 2], by_reach[-1]]
    start = SYNTHETIC_END - dt.timedelta(days=DAYS)
    plan = []
    for index in range(count):
        name = picks[index % len(picks)] if index % 4 else CORE[index // 4 % len(CORE)]
        at = start + dt.timedelta(days=rng.uniform(3, DAYS))
        spec = (parse_spec(f"<{universe.version(name, 1)}") if index % 3 == 2 else None)
        plan.append(Query(name, at, spec))
    return plan


@dataclass
class Synthetic:
    backend: str
    seconds: float
    runs: int
    targets: int
    rows: dict[str, int]
    empty_bytes: int
    full_bytes: int
    first_query: float
    queries: Samples
    hits: list[int]


def measure_synthetic(backend: Backend, reports: Sequence[Report],
                      plan: Sequence[Query]) -> Synthetic:
    with Store.open(backend.url) as store:
        empty = database_bytes(backend.url, backend.sqlite_file)
        elapsed = stopwatch()
        for number, report in enumerate(reports, 1):
            if not store.record(report):
                raise BenchError(f"{backend.name}: run {report.run_id} recorded twice")
            if number % 100 == 0:
                log(f"{backend.name}: {number}/{len(reports)} runs recorded, "
                    f"{elapsed():.1f} s")
        seconds = elapsed()
        rows = count_rows(store)
    full = database_bytes(backend.url, backend.sqlite_file)
    targets = sum(len(report.results) for report in reports)
    if rows["runs"] != len(reports) or rows["targets"] != targets:
        raise BenchError(f"{backend.name} holds {rows['runs']} runs and {rows['targets']} "
                         f"targets, not {len(reports)} and {targets}")
    # A fresh engine, as `history package` opens one.
    with Store.open(backend.url) as store:
        elapsed = stopwatch()
        targets_with_package_at(store.engine, plan[0].name, plan[0].at, plan[0].spec)
        first = elapsed()
        samples = Samples()
        hits = []
        for query in plan:
            elapsed = stopwatch()
            found = targets_with_package_at(store.engine, query.name, query.at, query.spec)
            samples.add(elapsed())
            hits.append(len(found))
    log(f"{backend.name}: {targets} targets in {seconds:.1f} s; queries: median "
        f"{samples.median * 1000:.0f} ms")
    return Synthetic(backend.name, seconds, len(reports), targets, rows, empty, full, first,
                     samples, hits)


# --------------------------------------------------------------------------- output


def size_text(value: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def stat(samples: Samples, scale: str = "s") -> list[str]:
    show = secs if scale == "s" else ms
    return [show(samples.median), show(samples.low), show(samples.high)]


def postgresql_version(url: str) -> str:
    with psycopg.connect(url) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def machine_facts(workdir: Path, server_url: str) -> dict[str, str]:
    return {
        "date (UTC)": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "atomicscan": f"{first_line(run, [VENV_BIN / 'atomicscan', '--version'])}, commit "
                      f"{source_revision()}",
        "CPU": f"{cpu_model()}, {os.cpu_count()} cores; {memory_total()}",
        "kernel, Python, podman": f"{platform.release()}, {platform.python_version()}, "
                                  f"{first_line(run, ['podman', '--version'])}",
        "SQLite, PostgreSQL, SQLAlchemy, psycopg":
            f"{sqlite3.sqlite_version}, {postgresql_version(server_url)} (private server, "
            f"fsync off), {sa.__version__}, {psycopg.__version__}",
        "temp dir": f"{workdir.parent} ("
                    + first_line(run, ["findmnt", "--noheadings", "--output", "FSTYPE",
                                       "--target", str(workdir)]) + ")",
        "other processes at start": other_processes(),
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def scan_tables(times: ScanTimes, count: int, repeat: int, markdown: bool,
                heading: str) -> list[str]:
    out = [f"\n{heading}One run over {count} images, recording off and on (seconds; median, "
           f"min, max of {repeat}, interleaved)"]
    what = {OFF: "--no-history", SQLITE: "--db sqlite:///…", POSTGRESQL: "--db postgresql://…"}
    rows = [[f"{variant}: {what[variant]}", *stat(times.seconds[variant]),
             secs(times.first[variant])] for variant in VARIANTS]
    out.append(render_table(["run", "median", "min", "max", "warm-up (untimed)"], rows,
                            markdown))
    off = times.seconds[OFF]
    rows = []
    for variant in BACKENDS:
        on = times.seconds[variant]
        ratio = on.median / off.median
        paired = ", ".join(f"{a / b:.2f}" for a, b in zip(on.values, off.values, strict=True))
        rows.append([f"{variant} / off", f"**{ratio:.2f}x**", paired,
                     f"< {RECORDING_TARGET:.2f}x", verdict(ratio < RECORDING_TARGET)])
    out.append(f"\n{heading}Recording on / off (ratio of the medians)")
    out.append(render_table(["pair", "ratio", "per repetition", "target", "verdict"], rows,
                            markdown))
    out.append(f"\n{heading}The hook's own work, without the noise of whole runs (ms; "
               f"median, min, max of {len(times.imports[0].values)})")
    rows = [[f"{variant}: Store.open + Store.record of the run's report ({count} targets, "
             f"{times.packages} packages)", *stat(times.record[variant], "ms")]
            for variant in BACKENDS]
    without, with_store = times.imports
    rows.append(["python -c 'import atomicscan.cli' (and the history plugin)",
                 *stat(without, "ms")])
    rows.append(["the same and atomicscan.history.store (SQLAlchemy, the schema)",
                 *stat(with_store, "ms")])
    out.append(render_table(["what", "median", "min", "max"], rows, markdown))
    out.append(f"\nImporting the store adds {ms(with_store.median - without.median)} ms "
               "(difference of the medians).")
    return out


def synthetic_tables(results: Sequence[Synthetic], universe: Universe, plan: Sequence[Query],
                     per_target: int, markdown: bool, heading: str) -> list[str]:
    out = []
    first = results[0]
    out.append(f"\n{heading}Synthetic history: {first.targets:,} targets of {per_target} "
               f"packages in {first.runs} runs ({HOSTS} hosts, {DAYS} days, "
               f"{universe.builds()} image builds, {universe.distinct_versions()} distinct package "
               "versions)")
    def each(show: Callable[[Synthetic], str]) -> list[str]:
        return [show(r) for r in results]

    rows = [
        ["recording, all runs one after the other (s)", *each(lambda r: f"{r.seconds:.1f}")],
        ["targets recorded per second", *each(lambda r: f"{r.targets / r.seconds:.0f}")],
        ["runs recorded per second", *each(lambda r: f"{r.runs / r.seconds:.1f}")],
        ["rows: package sets / packages / set members",
         *each(lambda r: f"{r.rows['package_sets']:,} / {r.rows['packages']:,} / "
                         f"{r.rows['package_set_members']:,}")],
        ["database size, empty schema", *each(lambda r: size_text(r.empty_bytes))],
        ["database size, full", *each(lambda r: size_text(r.full_bytes))],
        ["per recorded target (full / targets)",
         *each(lambda r: f"**{size_text(r.full_bytes / r.targets)}**")],
        ["per recorded target, without the empty schema",
         *each(lambda r: size_text((r.full_bytes - r.empty_bytes) / r.targets))],
    ]
    out.append(render_table(["measure", *(r.backend for r in results)], rows, markdown))
    out.append(f"\n{heading}\"Which targets had package X at time T\" "
               f"(targets_with_package_at; ms, {len(plan)} queries)")
    rows = []
    for index, query in enumerate(plan):
        rows.append([query.label, str(results[0].hits[index]),
                     *(ms(r.queries.values[index]) for r in results)])
    out.append(render_table(["query", "hits", *(r.backend for r in results)], rows, markdown))
    rows = [[r.backend, *stat(r.queries, "ms"), ms(r.first_query),
             f"< {QUERY_TARGET * 1000:.0f}", verdict(r.queries.median < QUERY_TARGET)]
            for r in results]
    out.append("")
    out.append(render_table(["database", "median", "min", "max", "first query, new engine",
                             "target", "verdict"], rows, markdown))
    return out


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time recording runs in the history and querying it, on SQLite and "
                    "PostgreSQL side by side (run as root).")
    parser.add_argument("--repeat", type=int, default=5, metavar="N",
                        help="timed repetitions of each 50-target run (default: 5)")
    parser.add_argument("--count", type=int, default=50, metavar="N",
                        help="bench images to build and scan (default: 50)")
    parser.add_argument("--targets", type=int, default=10_000, metavar="N",
                        help="synthetic targets to record (default: 10000)")
    parser.add_argument("--packages", type=int, default=300, metavar="N",
                        help="packages per synthetic target (default: 300)")
    parser.add_argument("--queries", type=int, default=12, metavar="N",
                        help="package-at-time queries (default: 12)")
    parser.add_argument("--seed", type=int, default=13, help="of the synthetic history")
    parser.add_argument("--skip-scans", action="store_true", help="leave out the real runs")
    parser.add_argument("--skip-synthetic", action="store_true",
                        help="leave out the synthetic history")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args(argv)
    if min(args.repeat, args.count, args.targets, args.queries) < 1 or args.packages < 10:
        parser.error("--repeat, --count, --targets and --queries must be >= 1, "
                     "--packages >= 10")
    return args


@dataclass
class Outcome:
    facts: dict[str, str] = field(default_factory=dict)
    times: ScanTimes | None = None
    synthetic: list[Synthetic] = field(default_factory=list)
    universe: Universe | None = None
    plan: list[Query] = field(default_factory=list)


def bench_scans(args: argparse.Namespace, janitor: Janitor, stores: contextlib.ExitStack,
                server_url: str) -> ScanTimes:
    trap = janitor.workdir / "must-not-exist.db"
    env = scan_env(trap)
    os.environ["CONTAINERS_CONF"] = env["CONTAINERS_CONF"]  # podman calls made here too
    require_images([bench_host.BASE_IMAGE, SCANNER_IMAGE])
    compile_bytecode(interpreter_of(VENV_BIN / "atomicscan"), REPO / "atomicscan")
    with history_tags():
        images = build_images(janitor, args.count)
    log(f"{args.count} images built in {images.build_seconds:.1f} s")
    # Created (migrated) here: the runs find the schema in place, as a host's runs do.
    scan_stores = {
        SQLITE: stores.enter_context(Store.open(sqlite_backend(janitor.workdir / "scans.db").url)),
        POSTGRESQL: stores.enter_context(Store.open(postgresql_backend(server_url).url))}
    times = measure_scans(ScanBench(janitor, env, images.tags, images.ids, scan_stores),
                          args.repeat)
    if trap.exists():
        raise BenchError("a --no-history run recorded itself (into the trap database)")
    return times


def bench_synthetic(args: argparse.Namespace, workdir: Path, server_url: str,
                    outcome: Outcome) -> None:
    rng = random.Random(args.seed)  # noqa: S311 - reproducible test data, not secrets
    universe = make_universe(rng, args.packages)
    reports = synthetic_reports(universe, rng, args.targets)
    plan = query_plan(universe, rng, args.queries)
    log(f"synthetic history: {len(reports)} runs, {args.targets} targets")
    backends = [sqlite_backend(workdir / "synthetic.db"), postgresql_backend(server_url)]
    results = [measure_synthetic(backend, reports, plan) for backend in backends]
    if results[0].hits != results[1].hits:
        raise BenchError(f"SQLite and PostgreSQL disagree: {results[0].hits} against "
                         f"{results[1].hits} hits")
    outcome.synthetic, outcome.universe, outcome.plan = results, universe, plan


def render(args: argparse.Namespace, outcome: Outcome, leftovers: Sequence[str]) -> str:
    heading = "#### " if args.markdown else "== "
    out = [f"{heading}Machine",
           render_table(["machine", "value"], [[k, v] for k, v in outcome.facts.items()],
                        args.markdown)]
    if outcome.times is not None:
        out += scan_tables(outcome.times, args.count, args.repeat, args.markdown, heading)
    if outcome.synthetic and outcome.universe is not None:
        out += synthetic_tables(outcome.synthetic, outcome.universe, outcome.plan,
                                args.packages, args.markdown, heading)
        hits = outcome.synthetic[0].hits
        out.append(f"\nHits per query: median {statistics.median(hits):.0f}, "
                   f"{min(hits)} to {max(hits)}; SQLite and PostgreSQL gave the same answers.")
    out.append("\nLeft behind: " + ("; ".join(leftovers) if leftovers else "nothing") + ".")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench_history: run as root (podman storage, a private PostgreSQL)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Also when started in the background by a shell that ignores SIGINT for its jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="atomicscan-bench-history-", dir="/var/tmp"))
    janitor = Janitor(workdir)
    server = contextlib.ExitStack()
    stores = contextlib.ExitStack()
    leftovers: list[str] = []
    outcome = Outcome()
    elapsed = stopwatch()
    try:
        server_url = server.enter_context(throwaway.throwaway_postgresql())
        outcome.facts = machine_facts(workdir, server_url)
        if not args.skip_scans:
            outcome.times = bench_scans(args, janitor, stores, server_url)
        if not args.skip_synthetic:
            bench_synthetic(args, workdir, server_url, outcome)
        outcome.facts["other processes at end"] = other_processes()
        outcome.facts["load average at end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
        outcome.facts["benchmark wall time"] = f"{elapsed() / 60:.1f} min"
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except (KeyboardInterrupt, Terminated):
        log("interrupted; cleaning up")
        return 130
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stores.close()
        try:
            server.close()  # stops the private PostgreSQL by its PID
        except (RuntimeError, OSError) as exc:
            leftovers.append(f"PostgreSQL: {exc}")
        leftovers += janitor.close()
        for problem in leftovers:
            log(f"left behind: {problem}")
    print(render(args, outcome, leftovers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
