"""The history store: records reports in SQLite or PostgreSQL (SQLAlchemy Core, Alembic).

:meth:`Store.open` migrates the database to the newest schema by itself and refuses one a
newer atomicscan wrote. Every failure is a :class:`HistoryError` of one line that never shows
the URL's password. Writers never wait on each other for long: SQLite takes its write lock
at the start of each write (``BEGIN IMMEDIATE``, so a busy timeout applies instead of an
immediate "database is locked"); PostgreSQL inserts shared rows in one order (by digest), so
concurrent hosts cannot deadlock, and an advisory lock keeps migrations and prunes apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from atomicscan.errors import AtomicscanError
from atomicscan.history import schema
from atomicscan.history.dburl import ambiguous_password, redacted, scrub
from atomicscan.results import Finding, Package, Report, ScanResult
from atomicscan.safetext import printable

MIGRATIONS = Path(__file__).parent / "migrations"

#: PostgreSQL advisory lock: taken shared by writers, exclusive by migrations and prunes.
_LOCK_KEY = 0x6174_6F6D
#: The execution option that makes a SQLite transaction take the write lock when it begins.
_WRITE = "atomicscan_write"
#: Rows per ``IN (...)`` list: far under SQLite's and PostgreSQL's parameter limits.
_CHUNK = 500
_REASON_CHARS = 400


class HistoryError(AtomicscanError):
    """The history could not be opened, read or written; one line, never a password."""

    def __init__(self, message: str) -> None:
        lines = [line for line in message.splitlines() if line.strip()]
        super().__init__(printable(lines[0].strip() if lines else "history error"))


class NewerSchemaError(HistoryError):
    """The database was written by a newer atomicscan; it is left untouched."""


# -- text that fits -------------------------------------------------------------------------

def _limits() -> dict[tuple[str, str], int]:
    """The longest text each column keeps: its declared length, else
    :data:`schema.MAX_INDEXED_CHARS` for text that is indexed."""
    limits: dict[tuple[str, str], int] = {}
    for table in schema.metadata.tables.values():
        indexed = {column.name for index in table.indexes for column in index.columns}
        indexed |= {column.name for constraint in table.constraints
                    if isinstance(constraint, sa.UniqueConstraint)
                    for column in constraint.columns}
        for column in table.columns:
            length = getattr(column.type, "length", None)
            if isinstance(length, int) and length > 0:
                limits[table.name, column.name] = length
            elif isinstance(column.type, sa.String) and column.name in indexed:
                limits[table.name, column.name] = schema.MAX_INDEXED_CHARS
    return limits


_LIMITS = _limits()


def clean_text(value: object) -> str:
    """``value`` as text both databases store: NUL (PostgreSQL refuses it) written as
    ``\\x00``, lone surrogates (not UTF-8) as ``\\udXXX``; everything else as it was."""
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _row(table: sa.Table, **values: object) -> dict[str, object]:
    """One row for ``table``, every text cleaned and cut to what its column keeps."""
    row: dict[str, object] = {}
    for name, value in values.items():
        if isinstance(value, str):
            text = clean_text(value)
            limit = _LIMITS.get((table.name, name))
            row[name] = text if limit is None else text[:limit]
        else:
            row[name] = value
    return row


def _text_or_none(value: object) -> str | None:
    return None if value is None else clean_text(value)


def _json(value: object) -> str:
    return clean_text(json.dumps(value, ensure_ascii=False, sort_keys=True, default=str))


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(item) for item in value]
    return []


def _labels(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(key): str(item) for key, item in value.items()}


def _digest(*parts: object) -> str:
    encoded = json.dumps(parts, ensure_ascii=True, default=str).encode("ascii")
    return hashlib.sha256(encoded).hexdigest()


def to_utc(stamp: str) -> datetime:
    """A report's ISO time stamp as an aware UTC datetime (one without an offset is UTC).

    Raises :class:`HistoryError` on anything else.
    """
    try:
        value = datetime.fromisoformat(stamp.strip())
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (AttributeError, TypeError, ValueError, OverflowError):
        raise HistoryError(f"not an ISO time stamp: {str(stamp)[:64]!r}") from None


def _utc(value: datetime) -> datetime:
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).astimezone(UTC)


def _package_coordinates(package: str | None) -> str:
    """A package as findings name it, without the version: a finding on a package stays the
    same finding when the package is upgraded but still affected."""
    if not package:
        return ""
    if package.startswith("pkg:"):
        for mark in "?#@":
            package = package.partition(mark)[0]
    return package


def fingerprint(result: ScanResult, finding: Finding) -> str:
    """What stays the same when one scanner reports one problem again in a later run (of the
    same target or a rebuild of it): the scanner, the finding's ID, and where it is (its path,
    its package without the version, or the rule that found it); sha256 hex."""
    path = finding.path or ""
    package = _package_coordinates(finding.package)
    where = "" if path or package else finding.where
    return _digest("v1", result.scanner, finding.id, path, package, where)


# -- what one report becomes --------------------------------------------------------------

def _package_row(package: Package) -> dict[str, object]:
    # The key is taken over the text as reported, before it is cut to fit.
    key = _digest(package.type, package.name, package.version, package.architecture,
                  package.purl, package.source)
    return _row(schema.packages, key=key, type=package.type, name=package.name,
                version=package.version, architecture=package.architecture,
                purl=package.purl, source=_text_or_none(package.source))


class _PackageSet:
    def __init__(self, packages: Iterable[Package]) -> None:
        rows = {row["key"]: row for row in map(_package_row, packages)}
        self.rows = [rows[key] for key in sorted(rows, key=str)]
        self.keys = [str(row["key"]) for row in self.rows]
        self.digest = hashlib.sha256("\n".join(self.keys).encode("ascii")).hexdigest()


def _target_row(position: int, result: ScanResult) -> dict[str, object]:
    meta = result.target_meta if isinstance(result.target_meta, Mapping) else {}
    os_release = result.os if isinstance(result.os, Mapping) else {}
    return _row(
        schema.targets, position=position, ref=result.target,
        target_type=result.target_type, target_id=result.target_id,
        runtime=_text_or_none(result.runtime),
        names=_json(_strings(meta.get("names"))), digests=_json(_strings(meta.get("digests"))),
        labels=_json(_labels(meta.get("labels"))),
        image_id=_text_or_none(meta.get("image_id")), state=_text_or_none(meta.get("state")),
        successful=bool(result.successful), error=_text_or_none(result.error),
        cached=bool(result.cached), started_at=to_utc(result.started_at),
        finished_at=to_utc(result.finished_at),
        scanner_image_id=_text_or_none(result.scanner_image_id),
        os_id=_text_or_none(os_release.get("id")),
        os_version_id=_text_or_none(os_release.get("version_id")),
        os_name=_text_or_none(os_release.get("pretty_name")),
    )


def _finding_row(result: ScanResult, finding: Finding) -> dict[str, object]:
    return _row(schema.findings, scanner=result.scanner, finding_id=finding.id,
                severity=finding.severity, title=finding.title,
                package=_text_or_none(finding.package), path=_text_or_none(finding.path),
                suppressed=finding.suppressed is not None,
                suppression_reason=_text_or_none(finding.suppressed),
                fingerprint=fingerprint(result, finding))


class _Prepared:
    """Every row of one report, checked and cut to fit before the database is touched."""

    def __init__(self, report: Report, recorded_at: datetime) -> None:
        host = report.host if isinstance(report.host, Mapping) else {}
        self.host = _row(schema.hosts, machine_id=str(host.get("machine_id") or ""),
                         hostname=str(host.get("hostname") or ""))
        self.run = _row(
            schema.runs, run_id=report.run_id, started_at=to_utc(report.started_at),
            finished_at=to_utc(report.finished_at), recorded_at=_utc(recorded_at),
            scanner=report.scanner, scan_type=report.scan_type,
            scanner_args=_json(_labels(report.scanner_args)),
            atomicscan_version=report.version,
            results_dir=None if report.results_dir is None else str(report.results_dir),
            targets=len(report.results), failed=report.failed)
        self.targets = [_target_row(position, result)
                        for position, result in enumerate(report.results)]
        self.sets = [None if result.packages is None else _PackageSet(result.packages)
                     for result in report.results]
        self.findings = [[_finding_row(result, finding) for finding in result.findings]
                         for result in report.results]


# -- the database ----------------------------------------------------------------------

def _reason(exc: BaseException) -> str:
    """The first line of what the driver said (never SQLAlchemy's statement dump)."""
    source: BaseException = exc
    if isinstance(exc, sa_exc.StatementError) and isinstance(exc.orig, BaseException):
        source = exc.orig
    if isinstance(source, OSError) and source.strerror:
        text = source.strerror + (f": {source.filename}" if source.filename else "")
    else:
        text = str(source)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first or type(source).__name__)[:_REASON_CHARS]


def _failure(doing: str, url: str, exc: BaseException) -> HistoryError:
    return HistoryError(scrub(f"{doing} {redacted(url)}: {_reason(exc)}", [url]))


_FAILURES: tuple[type[BaseException], ...] = (sa_exc.SQLAlchemyError, OSError, ValueError)

#: The newest schema revision this atomicscan knows (the head of migrations/versions; a
#: test checks they agree). A database already there is opened without importing Alembic,
#: which every recording run would otherwise pay for.
SCHEMA_HEAD = "0001"


def _alembic_failures() -> tuple[type[BaseException], ...]:
    from alembic.script.revision import RevisionError
    from alembic.util.exc import CommandError

    return (*_FAILURES, CommandError, RevisionError)


def _current_revisions(connection: sa.Connection) -> set[str]:
    """What ``alembic_version`` holds (empty for a new database), read with plain SQL."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return set()
    rows = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
    return {str(row[0]) for row in rows}


@cache
def _scripts() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def _config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _create_file(path: Path) -> None:
    """A new database file readable by root only, in directories only root can enter."""
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_engine(url: URL, timeout: float) -> sa.Engine:
    database = url.database or ""
    if not database or database == ":memory:" or url.query.get("mode") == "memory":
        raise ValueError("a SQLite history needs a file: sqlite:////path/to/history.db")
    if not url.query.get("uri"):
        _create_file(Path(database))
    engine = sa.create_engine(url, connect_args={"timeout": timeout})
    busy_ms = max(0, int(timeout * 1000))

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below), so the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        # A writer takes the lock first: a read lock upgraded later fails at once when
        # another process wrote in between, whatever the busy timeout.
        writes = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine


def _postgresql_engine(url: URL, timeout: float) -> sa.Engine:
    connect_args: dict[str, object] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = max(2, math.ceil(timeout))
    engine = sa.create_engine(url.set(drivername="postgresql+psycopg"),
                              connect_args=connect_args)
    lock_ms = max(1, int(timeout * 1000))

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {lock_ms}")
        dbapi_connection.commit()

    return engine


def _engine(url: str, timeout: float) -> sa.Engine:
    if ambiguous_password(url):
        raise HistoryError(f"not a database URL: {redacted(url)} (write @ in the password "
                           "as %40)")
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        raise HistoryError(f"not a database URL: {redacted(url)}") from None
    if parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg"}:
        return _postgresql_engine(parsed, timeout)
    if parsed.drivername in {"sqlite", "sqlite+pysqlite"}:
        return _sqlite_engine(parsed, timeout)
    raise HistoryError(f"unsupported history database {redacted(url)}: use sqlite:///PATH "
                       "or postgresql://USER@HOST/DATABASE")


def _insert_ignoring(connection: sa.Connection, table: sa.Table,
                     keys: Sequence[str]) -> sa.Insert:
    """``INSERT`` that leaves a row whose unique ``keys`` already exist alone."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # only the dialect in use is imported

        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)


def _ids(connection: sa.Connection, column: sa.Column[Any], keys: Sequence[str]) -> dict[str, int]:
    table = column.table
    found: dict[str, int] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start:start + _CHUNK]
        rows = connection.execute(sa.select(column, table.c.id).where(column.in_(chunk)))
        found.update({str(key): int(row_id) for key, row_id in rows})
    return found


class Store:
    """One history database, migrated to the newest schema."""

    def __init__(self, engine: sa.Engine, url: str) -> None:
        self.engine = engine
        self.url = url

    @classmethod
    def open(cls, url: str, *, timeout: float = 10.0) -> Store:
        """Connect to ``url`` (``sqlite:///PATH``, ``postgresql://...``) and migrate it.

        ``timeout`` bounds each wait: connecting, and a lock another writer holds.
        """
        try:
            engine = _engine(url, timeout)
        except (OSError, ValueError, sa_exc.SQLAlchemyError) as exc:
            raise _failure("cannot open the history database", url, exc) from None
        store = cls(engine, url)
        try:
            with store._failing("cannot open the history database"):
                store._migrate()
        except BaseException:
            engine.dispose()
            raise
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        try:
            yield
        except HistoryError:
            raise
        except _FAILURES as exc:
            raise _failure(doing, self.url, exc) from None

    @contextlib.contextmanager
    def _writing(self, *, exclusive: bool = False) -> Iterator[sa.Connection]:
        """One write transaction; ``exclusive`` keeps every other writer out (PostgreSQL)."""
        with self.engine.connect() as connection:
            connection.execution_options(**{_WRITE: True})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
                    connection.execute(sa.text(f"SELECT {lock}(:key)"), {"key": _LOCK_KEY})
                yield connection

    def _refuse_newer(self, current: Iterable[str]) -> None:
        scripts = _scripts()
        known = {script.revision for script in scripts.walk_revisions()}
        unknown = sorted(set(current) - known)
        if unknown:
            raise NewerSchemaError(
                f"the history database {redacted(self.url)} was written by a newer atomicscan "
                f"(schema {unknown[0][:64]!r}, this one knows up to "
                f"{'/'.join(scripts.get_heads())}); upgrade atomicscan to use it")

    def _migrate(self) -> None:
        with self.engine.connect() as connection:
            current = _current_revisions(connection)
        if current == {SCHEMA_HEAD}:
            return
        try:
            self._upgrade(current)
        except _alembic_failures() as exc:
            if isinstance(exc, HistoryError):
                raise
            raise _failure("cannot open the history database", self.url, exc) from None

    def _upgrade(self, current: set[str]) -> None:
        from alembic import command

        self._refuse_newer(current)
        with self._writing(exclusive=True) as connection:
            # Again under the lock: another process may have migrated meanwhile.
            self._refuse_newer(_current_revisions(connection))
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def record(self, report: Report, *, recorded_at: datetime | None = None) -> bool:
        """Record ``report`` in one transaction; ``False`` if this host's run was already
        recorded (importing a report twice adds nothing)."""
        prepared = _Prepared(report, recorded_at or datetime.now(UTC))
        with self._failing("cannot record the run in"), self._writing() as connection:
            return _record(connection, prepared)

    def prune(self, older_than: datetime) -> int:
        """Remove the runs started before ``older_than``, with their targets and findings,
        and the package sets, packages and hosts no remaining run uses; returns how many
        runs were removed."""
        cutoff = _utc(older_than)
        with self._failing("cannot prune"), self._writing(exclusive=True) as connection:
            return _prune(connection, cutoff)


def _host_id(connection: sa.Connection, row: Mapping[str, object]) -> int:
    hosts = schema.hosts
    match = sa.and_(hosts.c.machine_id == row["machine_id"], hosts.c.hostname == row["hostname"])
    found = connection.execute(sa.select(hosts.c.id).where(match)).scalar_one_or_none()
    if found is None:
        connection.execute(_insert_ignoring(connection, hosts, ["machine_id", "hostname"]), row)
        found = connection.execute(sa.select(hosts.c.id).where(match)).scalar_one()
    return int(found)


def _package_ids(connection: sa.Connection, sets: Iterable[_PackageSet]) -> dict[str, int]:
    rows = {row["key"]: row for package_set in sets for row in package_set.rows}
    keys = sorted(str(key) for key in rows)
    ids = _ids(connection, schema.packages.c.key, keys)
    missing = [rows[key] for key in keys if key not in ids]
    if missing:
        # In key order, as every writer does: two hosts adding the same packages queue
        # behind each other instead of deadlocking.
        connection.execute(_insert_ignoring(connection, schema.packages, ["key"]), missing)
        ids.update(_ids(connection, schema.packages.c.key, [str(row["key"]) for row in missing]))
    return ids


def _set_ids(connection: sa.Connection, sets: Iterable[_PackageSet]) -> dict[str, int]:
    by_digest = {package_set.digest: package_set for package_set in sets}
    if not by_digest:
        return {}
    package_ids = _package_ids(connection, by_digest.values())
    table = schema.package_sets
    ids = _ids(connection, table.c.digest, sorted(by_digest))
    for digest in sorted(set(by_digest) - set(ids)):
        package_set = by_digest[digest]
        created = connection.execute(
            _insert_ignoring(connection, table, ["digest"]).returning(table.c.id),
            {"digest": digest, "package_count": len(package_set.keys)}).scalar_one_or_none()
        if created is None:  # another writer stored the same set meanwhile, members too
            ids.update(_ids(connection, table.c.digest, [digest]))
            continue
        ids[digest] = int(created)
        if package_set.keys:
            connection.execute(sa.insert(schema.package_set_members),
                               [{"set_id": created, "package_id": package_ids[key]}
                                for key in package_set.keys])
    return ids


def _record(connection: sa.Connection, prepared: _Prepared) -> bool:
    runs = schema.runs
    run = {**prepared.run, "host_id": _host_id(connection, prepared.host)}
    run_row_id = connection.execute(
        _insert_ignoring(connection, runs, ["host_id", "run_id"]).returning(runs.c.id),
        run).scalar_one_or_none()
    if run_row_id is None:
        return False
    set_ids = _set_ids(connection, [s for s in prepared.sets if s is not None])
    for target, package_set, findings in zip(prepared.targets, prepared.sets,
                                             prepared.findings, strict=True):
        row = {**target, "run_id": run_row_id,
               "package_set_id": None if package_set is None else set_ids[package_set.digest]}
        target_row_id = connection.execute(
            sa.insert(schema.targets).returning(schema.targets.c.id), row).scalar_one()
        if findings:
            connection.execute(sa.insert(schema.findings),
                               [{**finding, "target_row_id": target_row_id}
                                for finding in findings])
    return True


def _prune(connection: sa.Connection, cutoff: datetime) -> int:
    runs, targets, findings = schema.runs, schema.targets, schema.findings
    sets, members, packages, hosts = (schema.package_sets, schema.package_set_members,
                                      schema.packages, schema.hosts)
    old_runs = sa.select(runs.c.id).where(runs.c.started_at < cutoff)
    old_targets = sa.select(targets.c.id).where(targets.c.run_id.in_(old_runs))
    connection.execute(sa.delete(findings).where(findings.c.target_row_id.in_(old_targets)))
    connection.execute(sa.delete(targets).where(targets.c.run_id.in_(old_runs)))
    removed = connection.execute(sa.delete(runs).where(runs.c.started_at < cutoff)).rowcount
    unused_set = ~sa.exists().where(targets.c.package_set_id == sets.c.id)
    connection.execute(sa.delete(members).where(
        ~sa.exists().where(targets.c.package_set_id == members.c.set_id)))
    connection.execute(sa.delete(sets).where(unused_set))
    connection.execute(sa.delete(packages).where(
        ~sa.exists().where(members.c.package_id == packages.c.id)))
    connection.execute(sa.delete(hosts).where(~sa.exists().where(runs.c.host_id == hosts.c.id)))
    return int(removed)
