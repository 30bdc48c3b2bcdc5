"""The history on a real PostgreSQL 15 and on SQLite: many hosts at once, and every fault
the real CLI meets (unreachable, read-only, locked) leaves the run on disk and importable."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from helpers import DEBIAN, Atomicscan
from postgres import fresh_database

from atomicscan.history import schema, store
from atomicscan.history.dburl import redacted
from atomicscan.history.store import NewerSchemaError, Store
from atomicscan.results import Finding, Package, Report

PASSWORD = "n0t-Shown_Ever"  # noqa: S105 -- must never appear in any output
HOSTS = 8
RUNS_PER_HOST = 4
TARGETS_PER_RUN = 3


@pytest.fixture(scope="session")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The packages scanner's report of the Debian test image, from the real CLI."""
    run = Atomicscan(tmp_path_factory.mktemp("history-source"))
    done = run("--scanner", "packages", "--no-history", "--json", DEBIAN)
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    assert len(doc["results"][0]["packages"]) > 50
    return doc


def table_counts(url: str) -> dict[str, int]:
    with Store.open(url) as opened, opened.engine.connect() as connection:
        return {table.name: connection.execute(
            sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in schema.metadata.sorted_tables}


def backend_url(backend: str, pg_server: str, tmp_path: Path) -> str:
    if backend == "postgresql":
        return fresh_database(pg_server)
    return f"sqlite:///{tmp_path / 'history.db'}"


# -- the store on PostgreSQL -----------------------------------------------------------------


def test_record_and_import_on_postgresql(pg_url: str, real_report: dict[str, Any]) -> None:
    report = Report.from_json(real_report)
    with Store.open(pg_url) as opened:
        assert opened.record(report) is True
        assert opened.record(report) is False
    with Store.open(pg_url) as again:  # another process importing the report.json later
        assert again.record(Report.from_json(json.loads(json.dumps(real_report)))) is False
    rebuilt = dataclasses.replace(report, run_id=report.run_id + "-next")
    with Store.open(pg_url) as opened:
        assert opened.record(rebuilt) is True
        with opened.engine.connect() as connection:
            names = set(connection.execute(sa.select(schema.packages.c.name)).scalars())
            set_ids = set(connection.execute(sa.select(schema.targets.c.package_set_id)).scalars())
            stamps = list(connection.execute(sa.select(schema.runs.c.started_at)).scalars())
    counts = table_counts(pg_url)
    packages = real_report["results"][0]["packages"]
    assert names == {p["name"] for p in packages}
    assert counts["runs"] == 2
    assert counts["targets"] == 2
    assert counts["package_sets"] == 1  # one image ID, one package list, however many scans
    assert len(set_ids) == 1
    assert counts["packages"] == counts["package_set_members"] == len(packages)
    assert all(stamp.utcoffset() is not None for stamp in stamps)
    assert stamps[0] == store.to_utc(real_report["started_at"])


def test_hostile_text_on_postgresql(pg_url: str, real_report: dict[str, Any]) -> None:
    report = Report.from_json(real_report)
    nasty = "a\x00b\x1b]0;title\x07\ud800" + "x" * 10_000
    result = report.results[0]
    hostile = result.replace(
        target=nasty, target_id=nasty, runtime=nasty,
        packages=(*(result.packages or ()), Package(name=nasty, version=nasty, architecture=nasty,
                                                    type=nasty, purl=nasty, source=nasty)),
        findings=(Finding(id=nasty, title=nasty, severity=nasty,
                          details={"package": nasty, "path": nasty}, suppressed=nasty),),
        target_meta={"names": [nasty], "labels": {nasty: nasty}, "state": nasty,
                     "image_id": nasty},
        os={"id": nasty, "version_id": nasty, "pretty_name": nasty})
    report = dataclasses.replace(report, run_id=nasty, results=(hostile,),
                                 host={"hostname": nasty, "machine_id": nasty},
                                 scanner_args={nasty: nasty}, version=nasty)
    with Store.open(pg_url) as opened:
        assert opened.record(report) is True
        assert opened.record(report) is False
        with opened.engine.connect() as connection:
            (target_id,) = connection.execute(sa.select(schema.targets.c.target_id)).scalars()
            (finding_id,) = connection.execute(sa.select(schema.findings.c.finding_id)).scalars()
    assert target_id.startswith("a\\x00b\x1b]0;title\x07\\ud800")
    assert len(target_id) == len(finding_id) == schema.MAX_INDEXED_CHARS


def test_migrations_and_newer_schema_on_postgresql(pg_url: str) -> None:
    with Store.open(pg_url) as opened, opened.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), schema.metadata) == []
    with Store.open(pg_url) as opened, opened.engine.begin() as connection:
        config = store._config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        assert set(sa.inspect(connection).get_table_names()) == {"alembic_version"}
    with Store.open(pg_url) as opened:
        with opened.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection),
                                    schema.metadata) == []
        with opened.engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = 'from_2031'"))
    with pytest.raises(NewerSchemaError) as refused:
        Store.open(pg_url)
    assert "\n" not in str(refused.value)
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            assert connection.execute(
                sa.text("SELECT version_num FROM alembic_version")).all() == [("from_2031",)]
            assert "runs" in sa.inspect(connection).get_table_names()
    finally:
        engine.dispose()


# -- many hosts, one database ---------------------------------------------------------------

WORKER = """
import dataclasses, json, random, sys, time
from pathlib import Path
from atomicscan.history.store import Store
from atomicscan.results import Package, Report

url, source, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
index, runs, per_run = (int(arg) for arg in sys.argv[4:7])
base = Report.from_json(json.loads(source.read_text()))
result = base.results[0]
reports = []
for run in range(runs):
    targets = []
    for position in range(per_run):
        packages = list(result.packages or ())
        packages.append(Package(name=f"host{index}-extra-{position}", version=str(run),
                                architecture="all", type="deb", purl="", source=None))
        random.Random(index * 100 + run).shuffle(packages)  # every host in its own order
        targets.append(result.replace(target_id=f"{index}-{run}-{position}",
                                      packages=tuple(packages)))
    reports.append(dataclasses.replace(
        base, run_id=f"run-{run}", results=tuple(targets),
        host={"hostname": f"host-{index}", "machine_id": f"{index:032x}"}))
while not go.exists():
    time.sleep(0.01)
with Store.open(url) as store:
    for report in reports:
        assert store.record(report) is True
print("recorded", len(reports))
"""


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_eight_hosts_record_at_once_and_nothing_is_lost(
        backend: str, pg_server: str, tmp_path: Path, real_report: dict[str, Any]) -> None:
    url = backend_url(backend, pg_server, tmp_path)  # empty: the migrations race as well
    source = tmp_path / "report.json"
    source.write_text(json.dumps(real_report))
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    go = tmp_path / "go"
    processes = [subprocess.Popen(
        [sys.executable, str(worker), url, str(source), str(go), str(index), str(RUNS_PER_HOST),
         str(TARGETS_PER_RUN)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for index in range(HOSTS)]
    go.touch()
    outcomes = [(process.wait(timeout=300), *process.communicate()) for process in processes]
    for code, stdout, stderr in outcomes:
        assert code == 0, stderr
        assert stdout.strip() == f"recorded {RUNS_PER_HOST}"
        assert "locked" not in stderr
        assert "deadlock" not in stderr
    counts = table_counts(url)
    assert counts["hosts"] == HOSTS
    assert counts["runs"] == HOSTS * RUNS_PER_HOST
    assert counts["targets"] == HOSTS * RUNS_PER_HOST * TARGETS_PER_RUN
    base_packages = len(real_report["results"][0]["packages"])
    extra = HOSTS * RUNS_PER_HOST * TARGETS_PER_RUN  # one package of its own per target
    assert counts["packages"] == base_packages + extra
    assert counts["package_sets"] == extra
    with Store.open(url) as opened, opened.engine.connect() as connection:
        per_host = connection.execute(
            sa.select(schema.hosts.c.hostname, sa.func.count(schema.runs.c.id))
            .join(schema.runs).group_by(schema.hosts.c.hostname)).all()
    assert sorted(per_host) == sorted((f"host-{index}", RUNS_PER_HOST) for index in range(HOSTS))


# -- the real CLI ---------------------------------------------------------------------------


class Scan(Atomicscan):
    """The real CLI with a few more environment variables."""

    def __init__(self, base: Path, extra: dict[str, str] | None = None) -> None:
        super().__init__(base, "podman")
        self.extra = extra or {}

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **self.extra}


def recorded_run_ids(url: str) -> set[str]:
    with Store.open(url) as opened, opened.engine.connect() as connection:
        return set(connection.execute(sa.select(schema.runs.c.run_id)).scalars())


def the_report(scan: Scan) -> Path:
    (report,) = scan.results_dir.glob("packages/*/report.json")
    return report


def check_not_recorded(scan: Scan, url: str) -> list[str]:
    """Scan with an unusable database: exit 1, results on disk, one line that says so and
    gives the import command; returns that command's argv."""
    done = scan("--scanner", "packages", "--db", url, DEBIAN)
    assert done.returncode == 1, done.stderr
    report = the_report(scan)
    assert json.loads(report.read_text())["successful"] is True
    assert PASSWORD not in done.stdout
    assert PASSWORD not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "not recorded" in line]
    assert len(lines) == 1, done.stderr
    head, _, redo = lines[0].partition("; record it later with: ")
    assert "the run was not recorded in the history (" in head
    assert "[SQL" not in head
    argv = shlex.split(redo)
    assert argv == ["atomicscan", "history", "import", "--db", redacted(url), str(report)]
    return argv


def run_import(scan: Scan, argv: list[str]) -> None:
    assert argv[:3] == ["atomicscan", "history", "import"]
    done = subprocess.run([sys.executable, "-m", "atomicscan", *argv[1:]], capture_output=True,
                          text=True, env=scan.env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_postgresql_loses_nothing(tmp_path: Path, pg_url: str) -> None:
    scan = Scan(tmp_path, {"ATOMICSCAN_DB_TIMEOUT": "3"})
    url = f"postgresql://atomicscan:{PASSWORD}@127.0.0.1:{closed_port()}/history"
    argv = check_not_recorded(scan, url)
    # The same command against a server that answers (trust auth: any password).
    argv[argv.index("--db") + 1] = pg_url
    run_import(scan, argv)
    run_id = json.loads(the_report(scan).read_text())["run_id"]
    assert recorded_run_ids(pg_url) == {run_id}


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``path`` read-only even for root (who ignores file modes)."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_sqlite_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db" / "history.db"
    url = f"sqlite:///{path}"
    Store.open(url).close()
    scan = Scan(tmp_path / "scan", {"ATOMICSCAN_DB_TIMEOUT": "2"})
    with immutable(path):
        argv = check_not_recorded(scan, url)
        assert recorded_run_ids(url) == set()
    run_import(scan, argv)
    assert recorded_run_ids(url) == {json.loads(the_report(scan).read_text())["run_id"]}


def test_locked_sqlite_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db" / "history.db"
    url = f"sqlite:///{path}"
    Store.open(url).close()
    scan = Scan(tmp_path / "scan", {"ATOMICSCAN_DB_TIMEOUT": "1"})
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        argv = check_not_recorded(scan, url)
    finally:
        holder.close()
    run_import(scan, argv)
    assert recorded_run_ids(url) == {json.loads(the_report(scan).read_text())["run_id"]}


def test_two_local_runs_at_once_are_both_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'history.db'}"  # new: both runs create and migrate it
    scans = [Scan(tmp_path / f"scan{index}") for index in range(2)]
    processes = [scan.popen("--scanner", "packages", "--db", url, DEBIAN) for scan in scans]
    outcomes = [(process.wait(timeout=600), *process.communicate()) for process in processes]
    for code, _stdout, stderr in outcomes:
        assert code == 0, stderr
        assert "locked" not in stderr
    assert recorded_run_ids(url) == {json.loads(the_report(scan).read_text())["run_id"]
                                     for scan in scans}
