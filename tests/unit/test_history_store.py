"""The history store on SQLite: what a run becomes in the database, and every way it fails."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from atomicscan.builtin import history as history_plugin
from atomicscan.context import RunContext
from atomicscan.errors import AtomicscanError
from atomicscan.history import dburl, schema, store
from atomicscan.history.dburl import redacted, resolve_url
from atomicscan.history.store import (
    HistoryError,
    NewerSchemaError,
    Store,
    fingerprint,
    to_utc,
)
from atomicscan.results import Finding, Package, Report, ScanResult

IMAGE_ID = "677dc75d6fb42c782600a577fc62531ab3d0e09d0e5f0e183f61a43709bd3786"
CONTAINER_ID = "c0ffee" * 10 + "abcd"
PASSWORD = "Sup3r$ecret/pw@x"  # noqa: S105 -- a test password that must never be printed
QUOTED_PASSWORD = "Sup3r%24ecret%2Fpw%40x"  # noqa: S105 -- the same, as URLs write it


def deb(name: str, version: str, arch: str = "amd64") -> Package:
    return Package(name=name, version=version, architecture=arch, type="deb",
                   purl=f"pkg:deb/debian/{name}@{version}?arch={arch}&distro=debian-12",
                   source=name)


BASE_PACKAGES = (deb("adduser", "3.134", "all"), deb("apt", "2.6.1"), deb("bash", "5.2.15-2+b2"),
                 deb("libc6", "2.36-9+deb12u4"), deb("libssl3", "3.0.11-1~deb12u2"),
                 deb("openssl", "3.0.11-1~deb12u2"), deb("zlib1g", "1:1.2.13.dfsg-1"))


def image_result(packages: tuple[Package, ...] = BASE_PACKAGES, image_id: str = IMAGE_ID,
                 findings: tuple[Finding, ...] | None = None) -> ScanResult:
    return ScanResult(
        target="localhost/atomicscan-test/debian:bookworm", target_id=image_id,
        target_type="image", runtime="podman", scanner="packages", scan_type="inventory",
        successful=True, started_at="2026-11-01T10:00:00.100Z",
        finished_at="2026-11-01T10:00:01.900Z",
        findings=findings if findings is not None else (
            Finding(id="CVE-2023-5678", title="openssl: DoS in DH checks", severity="medium",
                    details={"package": "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64"}),
            Finding(id="CVE-2011-3374", title="apt: weak signature check", severity="low",
                    details={"package": "apt"}, suppressed="accepted risk, no fix upstream"),
        ),
        os={"id": "debian", "version_id": "12", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
        packages=packages,
        target_meta={"names": ["localhost/atomicscan-test/debian:bookworm"],
                     "labels": {"io.atomicscan.testbed": "1"},
                     "digests": ["localhost/atomicscan-test/debian@sha256:" + "6" * 64]},
        scanner_image_id="684b38eb351d38c1c6ce9f35a0230de11157375230e787f047c48ff09fc0dc45")


def container_result() -> ScanResult:
    return image_result().replace(
        target="web-1", target_id=CONTAINER_ID, target_type="container",
        findings=(Finding(id="world-writable", title="world-writable file", severity="high",
                          details={"path": "/etc/app.conf"}),),
        target_meta={"names": ["web-1"], "labels": {"app": "web"}, "image_id": IMAGE_ID,
                     "state": "running"})


def failed_result() -> ScanResult:
    return ScanResult(target="/srv/rootfs", target_id="/srv/rootfs", target_type="rootfs",
                      runtime=None, scanner="packages", scan_type="inventory", successful=False,
                      started_at="2026-11-01T10:00:00Z", finished_at="2026-11-01T10:00:02Z",
                      error="scanner exited 2: no package database")


def make_report(run_id: str = "20261101100000-aaaa0001", *, hostname: str = "scan-host-1",
                machine_id: str = "3d1219c7c4c5404aaa1f6d2a48adfda4",
                started_at: str = "2026-11-01T10:00:00.000Z",
                results: tuple[ScanResult, ...] | None = None) -> Report:
    return Report(
        run_id=run_id, scanner="packages", scan_type="inventory", started_at=started_at,
        finished_at=started_at.replace("10:00:00", "10:00:03"),
        results_dir=Path("/var/lib/atomicscan/results/packages") / run_id,
        results=results if results is not None else (image_result(), container_result(),
                                                      failed_result()),
        host={"hostname": hostname, "machine_id": machine_id},
        scanner_args={"profile": "standard"}, version="0.1.0")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'history.db'}"


@pytest.fixture
def history(url: str) -> Any:
    with Store.open(url) as opened:
        yield opened


def rows(opened: Store, table: sa.Table) -> list[dict[str, Any]]:
    with opened.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(
            sa.select(table).order_by(*table.primary_key.columns))]


def count(opened: Store, table: sa.Table) -> int:
    return len(rows(opened, table))


def as_utc(value: datetime) -> datetime:
    # SQLite keeps UTC times without their offset; PostgreSQL gives them back aware.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_recorded(opened: Store, report: Report) -> None:
    """Everything of ``report`` read back from the database, compared with the report."""
    (host,) = [h for h in rows(opened, schema.hosts) if h["hostname"] == report.host["hostname"]]
    assert host["machine_id"] == report.host["machine_id"]
    (run,) = [r for r in rows(opened, schema.runs)
              if r["run_id"] == report.run_id and r["host_id"] == host["id"]]
    assert (run["scanner"], run["scan_type"], run["atomicscan_version"]) == (
        report.scanner, report.scan_type, report.version)
    assert as_utc(run["started_at"]) == to_utc(report.started_at)
    assert json.loads(run["scanner_args"]) == dict(report.scanner_args)
    assert run["results_dir"] == str(report.results_dir)
    assert (run["targets"], run["failed"]) == (len(report.results), report.failed)
    targets = sorted((t for t in rows(opened, schema.targets) if t["run_id"] == run["id"]),
                     key=lambda t: t["position"])
    assert [t["ref"] for t in targets] == [r.target for r in report.results]
    members = rows(opened, schema.package_set_members)
    packages = {p["id"]: p for p in rows(opened, schema.packages)}
    findings = rows(opened, schema.findings)
    for target, result in zip(targets, report.results, strict=True):
        assert (target["target_type"], target["target_id"], target["runtime"]) == (
            result.target_type, result.target_id, result.runtime)
        assert target["successful"] is result.successful
        assert target["error"] == result.error
        assert json.loads(target["names"]) == list(result.target_meta.get("names", []))
        assert json.loads(target["labels"]) == dict(result.target_meta.get("labels", {}))
        assert target["image_id"] == result.target_meta.get("image_id")
        assert target["state"] == result.target_meta.get("state")
        assert target["scanner_image_id"] == result.scanner_image_id
        assert target["os_id"] == (result.os or {}).get("id")
        assert target["os_name"] == (result.os or {}).get("pretty_name")
        if result.packages is None:
            assert target["package_set_id"] is None
        else:
            stored = sorted((packages[m["package_id"]]["name"],
                             packages[m["package_id"]]["version"])
                            for m in members if m["set_id"] == target["package_set_id"])
            assert stored == sorted({(p.name, p.version) for p in result.packages})
        mine = [f for f in findings if f["target_row_id"] == target["id"]]
        assert sorted((f["finding_id"], f["severity"], f["suppressed"], f["suppression_reason"],
                       f["package"], f["path"], f["fingerprint"]) for f in mine) == sorted(
            (f.id, f.severity, f.suppressed is not None, f.suppressed, f.package, f.path,
             fingerprint(result, f)) for f in result.findings)


# -- recording ---------------------------------------------------------------------------


def test_a_realistic_report_is_recorded_whole(history: Store) -> None:
    report = make_report()
    assert history.record(report) is True
    check_recorded(history, report)
    (run,) = rows(history, schema.runs)
    assert run["recorded_at"] is not None


def test_importing_twice_adds_nothing(url: str, history: Store) -> None:
    report = make_report()
    assert history.record(report) is True
    before = {table.name: count(history, table) for table in schema.metadata.sorted_tables}
    assert history.record(report) is False
    # The same run read back from its report.json, in another process later.
    imported = Report.from_json(json.loads(json.dumps(report.to_json())))
    with Store.open(url) as again:
        assert again.record(imported) is False
    after = {table.name: count(history, table) for table in schema.metadata.sorted_tables}
    assert after == before
    # Another host's run with the same run ID is another run.
    assert history.record(make_report(hostname="scan-host-2")) is True
    assert count(history, schema.runs) == 2


def test_scans_of_one_image_share_one_package_set(history: Store) -> None:
    for day in range(1, 6):
        history.record(make_report(f"run-{day}", started_at=f"2026-11-0{day}T10:00:00Z"))
    image_sets = {t["package_set_id"] for t in rows(history, schema.targets)
                  if t["target_id"] in {IMAGE_ID, CONTAINER_ID}}
    assert len(image_sets) == 1
    assert count(history, schema.package_sets) == 1
    assert count(history, schema.packages) == len(BASE_PACKAGES)
    # A rebuilt image with one upgrade: a second set, one new package, the rest shared.
    upgraded = (*BASE_PACKAGES[:-2], deb("openssl", "3.0.13-1~deb12u1"), BASE_PACKAGES[-1])
    history.record(make_report("run-rebuilt", results=(image_result(upgraded, "f" * 64),)))
    assert count(history, schema.package_sets) == 2
    assert count(history, schema.packages) == len(BASE_PACKAGES) + 1
    (digest_row, _) = rows(history, schema.package_sets)
    assert digest_row["package_count"] == len(BASE_PACKAGES)


def test_fingerprints_stay_the_same_across_runs_and_rebuilds() -> None:
    old = image_result()
    rebuilt = image_result(image_id="e" * 64).replace(target="other:tag")
    cve_old = old.findings[0]
    cve_new = Finding(id=cve_old.id, title="another title", severity="high",
                      details={"package": "pkg:deb/debian/openssl@3.0.13-1?arch=amd64"})
    assert fingerprint(old, cve_old) == fingerprint(rebuilt, cve_new)
    assert fingerprint(old, cve_old) == fingerprint(old, cve_old)
    assert len(fingerprint(old, cve_old)) == 64
    int(fingerprint(old, cve_old), 16)
    other_package = Finding(id=cve_old.id, title="", details={"package": "pkg:deb/debian/libssl3"})
    other_path = Finding(id="world-writable", title="", details={"path": "/etc/a"})
    assert len({fingerprint(old, cve_old), fingerprint(old, other_package),
                fingerprint(old, other_path),
                fingerprint(old.replace(scanner="openscap"), cve_old)}) == 4


def test_hostile_text_is_stored_cut_and_without_nul(history: Store) -> None:
    long = "n" * 10_000
    nasty = "evil\x00name\x1b[31m\r\n\ud800\u202e"
    packages = (deb(long + "a", "1\x00"), deb(long + "b", "1"), deb(nasty, nasty),
                Package(name="x", version="1", architecture="", type="t" * 100, purl="",
                        source=None))
    result = image_result(packages, image_id=long, findings=(
        Finding(id=long, title=nasty * 100, severity=long,
                details={"package": nasty, "path": "/\x00" + long}),
    )).replace(target=nasty, runtime=long, error=None,
               target_meta={"names": [nasty, long], "labels": {nasty: nasty}, "state": long,
                            "image_id": nasty},
               os={"id": nasty, "version_id": 12, "pretty_name": long})
    report = make_report(long, hostname=long, machine_id=nasty, results=(result,))
    report = dataclasses.replace(report, scanner_args={nasty: long}, version=long)
    assert history.record(report) is True
    assert history.record(report) is False
    # Two names that differ only after the cut are still two packages.
    assert count(history, schema.packages) == 4
    for table in schema.metadata.sorted_tables:
        for row in rows(history, table):
            for name, value in row.items():
                if not isinstance(value, str):
                    continue
                assert "\x00" not in value
                value.encode("utf-8")
                length = getattr(table.c[name].type, "length", None)
                if length:
                    assert len(value) <= length, (table.name, name)
    (target,) = rows(history, schema.targets)
    assert len(target["target_id"]) == schema.MAX_INDEXED_CHARS
    assert target["ref"].startswith("evil\\x00name\x1b[31m")
    (finding,) = rows(history, schema.findings)
    assert len(finding["finding_id"]) == schema.MAX_INDEXED_CHARS
    assert all(len(p["name"]) <= schema.MAX_INDEXED_CHARS for p in rows(history, schema.packages))


# -- opening, migrating, refusing ----------------------------------------------------------


def test_migrations_from_empty_to_head_give_exactly_the_schema(url: str) -> None:
    with Store.open(url) as opened, opened.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), schema.metadata) == []
        names = set(sa.inspect(connection).get_table_names())
    assert names == {*schema.metadata.tables, "alembic_version"}
    # Down to nothing and up again through every revision.
    with Store.open(url) as opened, opened.engine.begin() as connection:
        config = store._config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        assert set(sa.inspect(connection).get_table_names()) == {"alembic_version"}
    with Store.open(url) as opened, opened.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), schema.metadata) == []


def test_a_newer_schema_is_refused_and_left_alone(url: str) -> None:
    with Store.open(url) as opened:
        opened.record(make_report())
        with opened.engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(NewerSchemaError) as refused:
        Store.open(url)
    message = str(refused.value)
    assert "\n" not in message
    assert "newer atomicscan" in message
    assert "9999_future" in message
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("9999_future",)]
        assert connection.execute("SELECT count(*) FROM runs").fetchone() == (1,)


def test_a_new_database_is_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "atomicscan" / "history.db"
    Store.open(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for directory in (path.parent, path.parent.parent, path.parent.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(url: str) -> None:
    with Store.open(url, timeout=3.5) as opened, opened.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 3500
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_locked_database_fails_with_one_line(url: str) -> None:
    Store.open(url).close()
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with Store.open(url, timeout=0.2) as opened, pytest.raises(HistoryError) as failed:
            opened.record(make_report())
    finally:
        holder.close()
    assert str(failed.value).endswith("database is locked")
    assert "\n" not in str(failed.value)
    assert "[SQL" not in str(failed.value)


def test_postgres_urls_are_accepted_as_users_write_them() -> None:
    for written in ("postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"):
        assert store._engine(written, 1.0).url.drivername == "postgresql+psycopg"


FAILING_URLS = (
    f"postgresql://atomicscan:{QUOTED_PASSWORD}@127.0.0.1:1/history",
    f"postgres://atomicscan:{PASSWORD}@127.0.0.1:1/history",
    f"postgresql://127.0.0.1:1/history?user=a&password={QUOTED_PASSWORD}",
    f"mysql://atomicscan:{QUOTED_PASSWORD}@db/history",
    f"postgresql://atomicscan:{QUOTED_PASSWORD}@db:notaport/history",
    f"://atomicscan:{PASSWORD}@",
    f"sqlite://atomicscan:{QUOTED_PASSWORD}@/",
)


@pytest.mark.parametrize("failing", FAILING_URLS)
def test_no_error_shows_a_password(failing: str) -> None:
    with pytest.raises(HistoryError) as failed:
        Store.open(failing, timeout=2)
    message = str(failed.value)
    assert "\n" not in message
    for secret in (PASSWORD, QUOTED_PASSWORD, "Sup3r"):
        assert secret not in message
        assert secret not in repr(failed.value.args)
    # Nothing chained to it could print the password in a traceback either.
    assert failed.value.__cause__ is None
    assert failed.value.__context__ is None or failed.value.__suppress_context__


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u:p@ss/w:rd@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u@h/db?password=pw&sslmode=require",
     "postgresql://u@h/db?password=***&sslmode=require"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("sqlite:////var/lib/atomicscan/history.db", "sqlite:////var/lib/atomicscan/history.db"),
    ("sqlite:////srv/odd:name@x.db", "sqlite:////srv/odd:name@x.db"),
])
def test_redacted(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_the_url_is_found_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "db-url"
    monkeypatch.setattr(dburl, "CONFIG_FILE", config)
    assert resolve_url(None, {}) == "sqlite:////var/lib/atomicscan/history.db"
    config.write_text("postgresql://from-file/db\nignored\n")
    assert resolve_url(None, {}) == "postgresql://from-file/db"
    assert resolve_url(None, {"ATOMICSCAN_DB": "sqlite:////env.db"}) == "sqlite:////env.db"
    assert resolve_url("sqlite:////given.db", {"ATOMICSCAN_DB": "x"}) == "sqlite:////given.db"


def test_to_utc() -> None:
    assert to_utc("2026-11-01T10:00:00.5Z") == datetime(2026, 11, 1, 10, 0, 0, 500000, UTC)
    assert to_utc("2026-11-01T12:00:00+02:00") == datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    assert to_utc("2026-11-01T10:00:00").tzinfo == UTC
    with pytest.raises(HistoryError):
        to_utc("yesterday\nmorning")


def test_prune_removes_old_runs_and_what_only_they_used(history: Store) -> None:
    old_only = (deb("telnet", "0.17-44"), *BASE_PACKAGES)
    history.record(make_report("old", hostname="gone-host", started_at="2026-01-01T10:00:00Z",
                               results=(image_result(old_only, "a" * 64), failed_result())))
    history.record(make_report("middle", started_at="2026-06-01T10:00:00Z"))
    history.record(make_report("new", started_at="2026-11-01T10:00:00Z"))
    removed = history.prune(datetime(2026, 3, 1, tzinfo=UTC))
    assert removed == 1
    assert {r["run_id"] for r in rows(history, schema.runs)} == {"middle", "new"}
    assert {h["hostname"] for h in rows(history, schema.hosts)} == {"scan-host-1"}
    assert count(history, schema.package_sets) == 1
    assert "telnet" not in {p["name"] for p in rows(history, schema.packages)}
    assert count(history, schema.packages) == len(BASE_PACKAGES)
    run_rows = {r["id"] for r in rows(history, schema.runs)}
    assert {t["run_id"] for t in rows(history, schema.targets)} == run_rows
    target_rows = {t["id"] for t in rows(history, schema.targets)}
    assert {f["target_row_id"] for f in rows(history, schema.findings)} <= target_rows
    check_recorded(history, make_report("new", started_at="2026-11-01T10:00:00Z"))
    assert history.prune(datetime(2026, 3, 1, tzinfo=UTC)) == 0


# -- the built-in plugin -------------------------------------------------------------------


def test_the_plugin_records_the_run(url: str) -> None:
    report = make_report()
    history_plugin.atomicscan_run_finished(report, RunContext(options={"history.db": url}))
    with Store.open(url) as opened:
        check_recorded(opened, report)


def test_the_plugin_says_how_to_record_later(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMICSCAN_DB_TIMEOUT", "2")
    failing = f"postgresql://atomicscan:{QUOTED_PASSWORD}@127.0.0.1:1/history"
    report = make_report()
    with pytest.raises(AtomicscanError) as failed:
        history_plugin.atomicscan_run_finished(report, RunContext(
            options={"history.db": failing}))
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("the run was not recorded in the history (")
    assert message.endswith("; record it later with: atomicscan history import --db "
                            f"'postgresql://atomicscan:***@127.0.0.1:1/history' "
                            f"{report.results_dir}/report.json")
    assert "Sup3r" not in message


def test_the_plugin_says_when_the_report_is_missing_too(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    report = dataclasses.replace(make_report(), write_error="No space left on device")
    with pytest.raises(AtomicscanError) as failed:
        history_plugin.atomicscan_run_finished(report, RunContext(
            options={"history.db": f"sqlite:///{blocked}/history.db"}))
    assert "report file is missing too (No space left on device)" in str(failed.value)
    assert "history import" not in str(failed.value)


def test_package_keys_cover_every_field() -> None:
    first = store._package_row(deb("a", "1"))
    assert first["key"] != store._package_row(deb("a", "1", "arm64"))["key"]
    assert first["key"] == store._package_row(deb("a", "1"))["key"]
    expected = hashlib.sha256(json.dumps(
        ["deb", "a", "1", "amd64", "pkg:deb/debian/a@1?arch=amd64&distro=debian-12", "a"],
    ).encode()).hexdigest()
    assert first["key"] == expected


def test_the_schema_head_in_the_code_is_the_migrations_head() -> None:
    from atomicscan.history import store as store_module

    assert set(store_module._scripts().get_heads()) == {store_module.SCHEMA_HEAD}


def test_a_migrated_database_opens_without_importing_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'h.db'}"
    Store.open(url).close()  # created and migrated here
    code = ("import sys; from atomicscan.history.store import Store; "
            f"Store.open({url!r}).close(); print('alembic' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
