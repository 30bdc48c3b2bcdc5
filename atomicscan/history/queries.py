"""The history's questions as SQL: pure functions from a connection to typed rows.

Nothing here prints or parses command lines; ``cli_history.py`` does. Every function takes
an ``Engine`` or a ``Connection`` and returns frozen dataclasses.

A *target identity* is what "the same target" means across runs, on one host and runtime:

- an image: its name as scanned (``targets.ref``: the tag typed, or the first tag listed by
  ``--images``), so a rebuilt ``web:latest`` is the same target with new content;
- a container: its ID (``targets.target_id``);
- a rootfs: its path (``targets.target_id``).

A scan's time is its run's start (``runs.started_at``, indexed): a cached result was
observed then too, even though the scanner ran earlier.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from atomicscan.errors import UsageError
from atomicscan.history.schema import (
    MAX_INDEXED_CHARS,
    findings,
    hosts,
    package_set_members,
    package_sets,
    packages,
    runs,
    targets,
)
from atomicscan.history.versions import VersionSpec, compare
from atomicscan.results import common_severity
from atomicscan.safejson import JSONRefused, loads_strict

Database = sa.Engine | sa.Connection
_Item = TypeVar("_Item")

SEVERITIES = ("critical", "high", "medium", "low", "unknown")

#: Ids bound per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits.
_CHUNK = 5000


@dataclass(frozen=True)
class TargetRef:
    """One scanned target as a run recorded it, and where."""

    host: str
    machine_id: str
    runtime: str | None
    target_type: str
    target: str
    """As typed, or as ``--images``/``--containers`` named it."""
    target_id: str
    names: tuple[str, ...]
    image_id: str | None
    state: str | None


@dataclass(frozen=True)
class RunRow:
    host: str
    machine_id: str
    run_id: str
    scanner: str
    scan_type: str
    started_at: datetime
    finished_at: datetime
    recorded_at: datetime
    targets: int
    failed: int
    findings: int
    suppressed: int
    atomicscan_version: str
    results_dir: str | None


@dataclass(frozen=True)
class PackageHit:
    """A scan whose package list held the package asked about."""

    target: TargetRef
    scanned_at: datetime
    run_id: str
    scanner: str
    name: str
    version: str
    type: str
    architecture: str
    purl: str


@dataclass(frozen=True)
class FindingSighting:
    """One target identity that had a finding: when first and last, and when it went."""

    target: TargetRef
    """As its latest scan with the finding recorded it."""
    scanner: str
    finding_id: str
    severity: str
    title: str
    where: str
    suppressed: bool
    first_seen: datetime
    last_seen: datetime
    scans: int
    """How many scans had it."""
    fixed_at: datetime | None
    """The first successful scan by the same scanner after ``last_seen`` (so without it);
    ``None`` while the latest scan still has it."""


@dataclass(frozen=True)
class ScanRef:
    """One recorded scan of a target."""

    target: TargetRef
    run_id: str
    scanner: str
    scan_type: str
    scanned_at: datetime
    successful: bool
    package_count: int | None
    """``None`` when the scan listed no packages."""


@dataclass(frozen=True)
class PackageChange:
    change: str
    """added, removed, upgraded or downgraded."""
    name: str
    architecture: str
    type: str
    old_version: str | None
    new_version: str | None


@dataclass(frozen=True)
class FindingChange:
    change: str
    """new or fixed."""
    finding_id: str
    severity: str
    title: str
    where: str
    suppressed: bool
    fingerprint: str


@dataclass(frozen=True)
class TargetDiff:
    old: ScanRef
    new: ScanRef
    packages_compared: bool
    """Both scans listed packages; otherwise ``packages`` is empty and says nothing."""
    packages: tuple[PackageChange, ...]
    findings: tuple[FindingChange, ...]


@dataclass(frozen=True)
class TrendPoint:
    scanned_at: datetime
    run_id: str
    successful: bool
    by_severity: Mapping[str, int]
    """Findings that are not suppressed, by severity, in :data:`SEVERITIES` order."""
    suppressed: int
    package_count: int | None


@dataclass(frozen=True)
class TrendSeries:
    """One target identity's scans by one scanner, oldest first."""

    target: TargetRef
    """As its latest scan recorded it."""
    scanner: str
    points: tuple[TrendPoint, ...]


# --- helpers ---------------------------------------------------------------------------


@contextlib.contextmanager
def _connected(db: Database) -> Iterator[sa.Connection]:
    if isinstance(db, sa.Connection):
        yield db
    else:
        with db.connect() as connection:
            yield connection


def utc(stamp: datetime) -> datetime:
    """``stamp`` as aware UTC; SQLite gives back naive datetimes, which are stored in UTC."""
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _bound(stamp: datetime) -> datetime:
    """A time to compare with stored ones: aware UTC (SQLite drops the offset when binding)."""
    if stamp.tzinfo is None:
        raise ValueError("a naive datetime cannot be compared with the history's UTC times")
    return stamp.astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def _names(text: str | None) -> tuple[str, ...]:
    """A stored JSON list of names; anything else (hostile, corrupt) is no names."""
    if not text:
        return ()
    try:
        value = loads_strict(text)
    except JSONRefused:
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(name for name in value if isinstance(name, str))


def _identity(t: sa.Table = targets) -> ColumnElement[str]:
    """The column that, with host, type and runtime, names a target across runs."""
    return sa.case((t.c.target_type == "image", t.c.ref), else_=t.c.target_id)


def _identity_key(row: Any) -> tuple[int, str, str, str]:
    return (row.host_id, row.target_type, row.runtime or "",
            row.ref if row.target_type == "image" else row.target_id)


_TARGET_COLUMNS = (
    hosts.c.hostname, hosts.c.machine_id, runs.c.host_id, targets.c.runtime,
    targets.c.target_type, targets.c.ref, targets.c.target_id, targets.c.names,
    targets.c.image_id, targets.c.state,
)


def _target_ref(row: Any) -> TargetRef:
    return TargetRef(host=row.hostname, machine_id=row.machine_id, runtime=row.runtime,
                     target_type=row.target_type, target=row.ref, target_id=row.target_id,
                     names=_names(row.names), image_id=row.image_id, state=row.state)


def _scans() -> sa.Select[Any]:
    """Target rows with their run and host (the columns of :data:`_TARGET_COLUMNS`)."""
    return (sa.select(*_TARGET_COLUMNS)
            .select_from(targets.join(runs, targets.c.run_id == runs.c.id)
                         .join(hosts, runs.c.host_id == hosts.c.id)))


def _chunks(items: Sequence[_Item]) -> Iterator[Sequence[_Item]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


# --- runs ------------------------------------------------------------------------------


def list_runs(db: Database, *, limit: int = 50, since: datetime | None = None,
              host: str | None = None) -> list[RunRow]:
    """The newest runs first: host, time, scanner, targets, failures and findings."""
    counted = (sa.select(targets.c.run_id.label("run_row_id"),
                         sa.func.count(findings.c.id).label("findings"),
                         sa.func.coalesce(sa.func.sum(
                             sa.case((findings.c.suppressed, 1), else_=0)), 0)
                         .label("suppressed"))
               .select_from(targets.join(findings,
                                         findings.c.target_row_id == targets.c.id))
               .group_by(targets.c.run_id))
    newest = sa.select(runs.c.id).order_by(runs.c.started_at.desc(), runs.c.id.desc())
    if since is not None:
        newest = newest.where(runs.c.started_at >= _bound(since))
    if host is not None:
        newest = newest.where(runs.c.host_id.in_(
            sa.select(hosts.c.id).where(hosts.c.hostname == host)))
    chosen = newest.limit(limit).subquery()
    counts = counted.where(targets.c.run_id.in_(sa.select(chosen.c.id))).subquery()
    query = (sa.select(runs, hosts.c.hostname, hosts.c.machine_id,
                       sa.func.coalesce(counts.c.findings, 0).label("finding_count"),
                       sa.func.coalesce(counts.c.suppressed, 0).label("suppressed_count"))
             .select_from(runs.join(hosts, runs.c.host_id == hosts.c.id)
                          .outerjoin(counts, counts.c.run_row_id == runs.c.id))
             .where(runs.c.id.in_(sa.select(chosen.c.id)))
             .order_by(runs.c.started_at.desc(), runs.c.id.desc()))
    with _connected(db) as connection:
        rows = connection.execute(query).all()
    return [RunRow(host=row.hostname, machine_id=row.machine_id, run_id=row.run_id,
                   scanner=row.scanner, scan_type=row.scan_type,
                   started_at=utc(row.started_at), finished_at=utc(row.finished_at),
                   recorded_at=utc(row.recorded_at), targets=row.targets, failed=row.failed,
                   findings=int(row.finding_count), suppressed=int(row.suppressed_count),
                   atomicscan_version=row.atomicscan_version, results_dir=row.results_dir)
            for row in rows]


# --- package ---------------------------------------------------------------------------


def _matching_package_ids(connection: sa.Connection, name: str,
                          spec: VersionSpec | None) -> list[int]:
    """Ids of the packages called ``name`` whose version matches ``spec`` (if any).

    Only the distinct recorded versions of that one name are compared here, never the rows
    of every target; the main query then starts from these ids (an ``IN`` list, which
    SQLite plans far better than a join on the name).
    """
    rows = connection.execute(
        sa.select(packages.c.id, packages.c.type, packages.c.version)
        .where(packages.c.name == name[:MAX_INDEXED_CHARS])).all()
    return sorted(row.id for row in rows if spec is None or spec.matches(row.type, row.version))


def _hits(connection: sa.Connection, base: sa.Select[Any], ids: list[int]) -> list[PackageHit]:
    found: list[PackageHit] = []
    for chunk in _chunks(ids):
        query = base.where(package_set_members.c.package_id.in_(list(chunk)))
        found += [
            PackageHit(target=_target_ref(row), scanned_at=utc(row.scanned_at),
                       run_id=row.run_id, scanner=row.scanner, name=row.package_name,
                       version=row.version, type=row.type, architecture=row.architecture,
                       purl=row.purl)
            for row in connection.execute(query)]
    found.sort(key=lambda hit: (hit.target.host, hit.target.target, hit.target.target_id,
                                hit.scanned_at, hit.version, hit.architecture))
    return found


def _hit_columns() -> tuple[Any, ...]:
    return (runs.c.started_at.label("scanned_at"), runs.c.run_id, runs.c.scanner,
            packages.c.name.label("package_name"), packages.c.version, packages.c.type,
            packages.c.architecture, packages.c.purl)


def targets_with_package_at(db: Database, name: str, at: datetime,
                            spec: VersionSpec | None = None) -> list[PackageHit]:
    """Which targets had package ``name`` (matching ``spec``) at ``at``.

    For every target identity, its latest package inventory at or before ``at`` is the
    state it was in then; a hit is one of those whose package list holds the package. A
    target scanned later than ``at`` only is not there yet; one not scanned since is assumed
    unchanged.
    """
    with _connected(db) as connection:
        ids = _matching_package_ids(connection, name, spec)
        if not ids:
            return []
        ranked = (
            sa.select(targets.c.id.label("target_row_id"),
                      sa.func.row_number().over(
                          partition_by=(runs.c.host_id, targets.c.target_type,
                                        sa.func.coalesce(targets.c.runtime, ""), _identity()),
                          order_by=(runs.c.started_at.desc(), targets.c.id.desc()),
                      ).label("recency"))
            .select_from(targets.join(runs, targets.c.run_id == runs.c.id))
            .where(runs.c.started_at <= _bound(at), targets.c.successful,
                   targets.c.package_set_id.is_not(None))
            .subquery())
        # An IN (subquery), not a join: SQLite looks rows up in it by target, where a join
        # on the derived table can end up scanning it once per set member.
        latest = sa.select(ranked.c.target_row_id).where(ranked.c.recency == 1)
        base = (_scans().add_columns(*_hit_columns())
                .where(targets.c.id.in_(latest))
                .join(package_set_members,
                      package_set_members.c.set_id == targets.c.package_set_id)
                .join(packages, packages.c.id == package_set_members.c.package_id))
        return _hits(connection, base, ids)


def targets_with_package_between(db: Database, name: str, since: datetime | None,
                                 until: datetime | None,
                                 spec: VersionSpec | None = None) -> list[PackageHit]:
    """Every scan from ``since`` to ``until`` (both included; ``None``: open) whose package
    list held package ``name`` (matching ``spec``)."""
    with _connected(db) as connection:
        ids = _matching_package_ids(connection, name, spec)
        if not ids:
            return []
        base = (_scans().add_columns(*_hit_columns())
                .join(package_set_members,
                      package_set_members.c.set_id == targets.c.package_set_id)
                .join(packages, packages.c.id == package_set_members.c.package_id)
                .where(targets.c.successful))
        if since is not None:
            base = base.where(runs.c.started_at >= _bound(since))
        if until is not None:
            base = base.where(runs.c.started_at <= _bound(until))
        return _hits(connection, base, ids)


# --- finding ---------------------------------------------------------------------------


def finding_history(db: Database, finding_id: str) -> list[FindingSighting]:
    """Every target identity that had finding ``finding_id`` (a CVE, a rule ID): first and
    last seen, how many scans had it, and the first scan after it that no longer did."""
    query = (_scans().add_columns(
                runs.c.started_at.label("scanned_at"), runs.c.scanner, targets.c.id,
                findings.c.finding_id, findings.c.severity, findings.c.title,
                findings.c.package, findings.c.path, findings.c.suppressed)
             .join(findings, findings.c.target_row_id == targets.c.id)
             .where(findings.c.finding_id == finding_id[:MAX_INDEXED_CHARS])
             .order_by(runs.c.started_at, targets.c.id))
    with _connected(db) as connection:
        rows = connection.execute(query).all()
        by_identity: dict[tuple[tuple[int, str, str, str], str], list[Any]] = defaultdict(list)
        for row in rows:
            by_identity[(_identity_key(row), row.scanner)].append(row)
        later = _later_scans(connection, by_identity)
    sightings = []
    for (identity, scanner), seen in by_identity.items():
        last = seen[-1]
        last_at = utc(last.scanned_at)
        fixed = [stamp for stamp in later.get((identity, scanner), ()) if stamp > last_at]
        sightings.append(FindingSighting(
            target=_target_ref(last), scanner=scanner, finding_id=last.finding_id,
            severity=common_severity(last.severity), title=last.title,
            where=last.path or last.package or "", suppressed=bool(last.suppressed),
            first_seen=utc(seen[0].scanned_at), last_seen=last_at,
            scans=len({row.id for row in seen}), fixed_at=min(fixed, default=None)))
    sightings.sort(key=lambda s: (s.first_seen, s.target.host, s.target.target, s.scanner))
    return sightings


def _later_scans(connection: sa.Connection,
                 seen: Mapping[tuple[tuple[int, str, str, str], str], list[Any]],
                 ) -> dict[tuple[tuple[int, str, str, str], str], list[datetime]]:
    """The successful scans of the identities in ``seen`` by the same scanner, after the
    first sighting: only those targets' rows are read."""
    if not seen:
        return {}
    since = min(utc(rows[0].scanned_at) for rows in seen.values())
    keys = {identity[3] for identity, _ in seen}
    later: dict[tuple[tuple[int, str, str, str], str], list[datetime]] = defaultdict(list)
    for chunk in _chunks(sorted(keys)):
        query = (sa.select(runs.c.host_id, runs.c.scanner, targets.c.target_type,
                           targets.c.runtime, targets.c.ref, targets.c.target_id,
                           runs.c.started_at)
                 .select_from(targets.join(runs, targets.c.run_id == runs.c.id))
                 .where(targets.c.successful, runs.c.started_at > _bound(since),
                        _identity().in_(list(chunk))))
        for row in connection.execute(query):
            key = (_identity_key(row), row.scanner)
            if key in seen:
                later[key].append(utc(row.started_at))
    return later


# --- diff ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scan:
    row_id: int
    ref: ScanRef
    identity: tuple[int, str, str, str]
    package_set_id: int | None


def _scan_rows(connection: sa.Connection, condition: ColumnElement[bool]) -> list[_Scan]:
    query = (_scans().add_columns(
                targets.c.id, targets.c.successful, targets.c.package_set_id,
                runs.c.run_id.label("report_run_id"), runs.c.scanner, runs.c.scan_type,
                runs.c.started_at, package_sets.c.package_count)
             .outerjoin(package_sets, package_sets.c.id == targets.c.package_set_id)
             .where(condition)
             .order_by(runs.c.started_at, targets.c.id))
    return [_Scan(row_id=row.id, identity=_identity_key(row), package_set_id=row.package_set_id,
                  ref=ScanRef(target=_target_ref(row), run_id=row.report_run_id,
                              scanner=row.scanner, scan_type=row.scan_type,
                              scanned_at=utc(row.started_at), successful=row.successful,
                              package_count=row.package_count))
            for row in connection.execute(query)]


def _naming(target: str) -> ColumnElement[bool]:
    """Rows that may be ``target``: its name, ID, ID prefix or one of its names (the names
    are checked exactly in Python: the LIKE only narrows)."""
    escaped = target.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    conditions = [targets.c.ref == target, targets.c.target_id == target,
                  targets.c.names.like(f"%{escaped}%", escape="\\")]
    if len(target) >= 12 and all(c in "0123456789abcdef" for c in target):
        conditions.append(targets.c.target_id.like(f"{escaped}%", escape="\\"))
    return sa.or_(*conditions)


def _is_named(scan: _Scan, target: str) -> bool:
    ref = scan.ref.target
    return (target in (ref.target, ref.target_id) or target in ref.names
            or (len(target) >= 12 and ref.target_id.startswith(target)))


def scans_of(db: Database, target: str, *, host: str | None = None,
             scanner: str | None = None) -> list[ScanRef]:
    """Every recorded scan of ``target`` (an image name, a container name or ID), oldest
    first."""
    with _connected(db) as connection:
        return [scan.ref for scan in _find_scans(connection, target, host, scanner)]


def _find_scans(connection: sa.Connection, target: str, host: str | None,
                scanner: str | None) -> list[_Scan]:
    condition = _naming(target)
    if host is not None:
        condition = sa.and_(condition, hosts.c.hostname == host)
    if scanner is not None:
        condition = sa.and_(condition, runs.c.scanner == scanner)
    return [scan for scan in _scan_rows(connection, condition) if _is_named(scan, target)]


def diff_target(db: Database, target: str, *, from_run: str | None = None,
                to_run: str | None = None, host: str | None = None,
                scanner: str | None = None) -> TargetDiff:
    """The difference between two scans of one target by one scanner.

    By default its last two scans; ``to_run`` picks the newer one (and the scan before it
    is the older), ``from_run`` the older one (and the newer is the target's latest). Raises
    ``UsageError`` when the target is unknown, names several targets, or has too few scans.
    """
    with _connected(db) as connection:
        scans = _find_scans(connection, target, host, scanner)
        new, old = _pick_pair(scans, target, from_run, to_run)
        package_changes: tuple[PackageChange, ...] = ()
        compared = new.package_set_id is not None and old.package_set_id is not None
        if compared and new.package_set_id != old.package_set_id:
            package_changes = _package_changes(
                _package_rows(connection, old.package_set_id),
                _package_rows(connection, new.package_set_id))
        finding_changes = _finding_changes(_finding_rows(connection, old.row_id),
                                           _finding_rows(connection, new.row_id))
    return TargetDiff(old=old.ref, new=new.ref, packages_compared=compared,
                      packages=package_changes, findings=finding_changes)


def _pick_pair(scans: list[_Scan], target: str, from_run: str | None,
               to_run: str | None) -> tuple[_Scan, _Scan]:
    """(newer, older): two scans of one identity by one scanner."""
    if not scans:
        raise UsageError(f"no recorded scan of {target!r}")
    if from_run is None and to_run is None and len({scan.identity for scan in scans}) > 1:
        described = sorted({f"{s.ref.target.target_type} {s.ref.target.target} "
                            f"({s.ref.target.runtime or 'no runtime'}) on {s.ref.target.host}"
                            for s in scans})
        raise UsageError(f"{target!r} names {len(described)} recorded targets: "
                         f"{'; '.join(described[:5])}; narrow it with --host, or give the "
                         "container's ID or the image's full name")

    def in_run(run_id: str) -> _Scan:
        chosen = [scan for scan in scans if scan.ref.run_id == run_id]
        if not chosen:
            raise UsageError(f"run {run_id!r} has no scan of {target!r}")
        if len({scan.identity for scan in chosen}) > 1:
            raise UsageError(f"run {run_id!r} scanned several targets named {target!r}; "
                             "narrow it with --host, or give the container's ID")
        return chosen[-1]

    def same(anchor: _Scan) -> list[_Scan]:
        return [scan for scan in scans
                if (scan.identity, scan.ref.scanner) == (anchor.identity, anchor.ref.scanner)]

    if from_run is not None and to_run is not None:
        return in_run(to_run), in_run(from_run)
    if from_run is not None:
        old = in_run(from_run)
        newest = same(old)[-1]
        if newest is old:
            raise UsageError(f"no scan of {target!r} by {old.ref.scanner} after run "
                             f"{from_run!r}")
        return newest, old
    new = in_run(to_run) if to_run is not None else scans[-1]
    earlier = [scan for scan in same(new) if _order(scan) < _order(new)]
    if not earlier:
        where = f" before run {to_run!r}" if to_run is not None else ""
        raise UsageError(f"no earlier scan of {target!r} by {new.ref.scanner}{where}: "
                         "nothing to compare with")
    return new, earlier[-1]


def _order(scan: _Scan) -> tuple[datetime, int]:
    return scan.ref.scanned_at, scan.row_id


def _package_rows(connection: sa.Connection, set_id: int | None) -> list[Any]:
    return list(connection.execute(
        sa.select(packages.c.name, packages.c.architecture, packages.c.type,
                  packages.c.version)
        .join(package_set_members, package_set_members.c.package_id == packages.c.id)
        .where(package_set_members.c.set_id == set_id)))


def _package_changes(old_rows: Iterable[Any], new_rows: Iterable[Any],
                     ) -> tuple[PackageChange, ...]:
    """Added, removed, upgraded and downgraded, keyed by (name, architecture, type)."""
    old: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    new: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for rows, into in ((old_rows, old), (new_rows, new)):
        for row in rows:
            into[(row.name, row.architecture, row.type)].add(row.version)
    changes: list[PackageChange] = []
    for key in sorted(old.keys() | new.keys()):
        name, architecture, kind = key
        before, after = old.get(key, set()), new.get(key, set())
        gone, came = sorted(before - after), sorted(after - before)
        if len(gone) == 1 and len(came) == 1:
            order = compare(kind, gone[0], came[0])
            changes.append(PackageChange("upgraded" if order < 0 else "downgraded"
                                         if order > 0 else "changed", name, architecture,
                                         kind, gone[0], came[0]))
            continue
        # Several versions side by side (kernels): each one added or removed on its own.
        changes += [PackageChange("removed", name, architecture, kind, v, None) for v in gone]
        changes += [PackageChange("added", name, architecture, kind, None, v) for v in came]
    return tuple(changes)


def _finding_rows(connection: sa.Connection, target_row_id: int) -> list[Any]:
    return list(connection.execute(
        sa.select(findings).where(findings.c.target_row_id == target_row_id)
        .order_by(findings.c.id)))


def _finding_changes(old_rows: list[Any], new_rows: list[Any]) -> tuple[FindingChange, ...]:
    old = {row.fingerprint: row for row in old_rows}
    new = {row.fingerprint: row for row in new_rows}

    def change(kind: str, row: Any) -> FindingChange:
        return FindingChange(kind, row.finding_id, common_severity(row.severity), row.title,
                             row.path or row.package or "", bool(row.suppressed),
                             row.fingerprint)

    changes = [change("new", row) for fp, row in new.items() if fp not in old]
    changes += [change("fixed", row) for fp, row in old.items() if fp not in new]
    changes.sort(key=lambda c: (c.change != "new", SEVERITIES.index(c.severity),
                                c.finding_id, c.where))
    return tuple(changes)


# --- trend -----------------------------------------------------------------------------

#: The newest points kept per series: a page with years of daily scans stays readable.
MAX_POINTS = 1000


def trend(db: Database, *, since: datetime | None = None,
          until: datetime | None = None) -> list[TrendSeries]:
    """For every target identity and scanner: its scans over time, with findings by
    severity (not suppressed) and the package count."""
    scans = (_scans().add_columns(
                targets.c.id, targets.c.successful, runs.c.run_id.label("report_run_id"),
                runs.c.scanner, runs.c.started_at, package_sets.c.package_count)
             .outerjoin(package_sets, package_sets.c.id == targets.c.package_set_id)
             .order_by(runs.c.started_at, targets.c.id))
    counts = (sa.select(findings.c.target_row_id, findings.c.severity, findings.c.suppressed,
                        sa.func.count().label("n"))
              .select_from(findings.join(targets, findings.c.target_row_id == targets.c.id)
                           .join(runs, targets.c.run_id == runs.c.id))
              .group_by(findings.c.target_row_id, findings.c.severity, findings.c.suppressed))
    if since is not None:
        scans = scans.where(runs.c.started_at >= _bound(since))
        counts = counts.where(runs.c.started_at >= _bound(since))
    if until is not None:
        scans = scans.where(runs.c.started_at <= _bound(until))
        counts = counts.where(runs.c.started_at <= _bound(until))
    by_target: dict[int, Counter[str]] = defaultdict(Counter)
    with _connected(db) as connection:
        for row in connection.execute(counts):
            key = "suppressed" if row.suppressed else common_severity(row.severity)
            by_target[row.target_row_id][key] += int(row.n)
        series: dict[tuple[tuple[int, str, str, str], str], list[Any]] = defaultdict(list)
        for row in connection.execute(scans):
            series[(_identity_key(row), row.scanner)].append(row)
    found = []
    for (_, scanner), rows in series.items():
        points = tuple(
            TrendPoint(scanned_at=utc(row.started_at), run_id=row.report_run_id,
                       successful=row.successful,
                       by_severity={s: by_target[row.id][s] for s in SEVERITIES},
                       suppressed=by_target[row.id]["suppressed"],
                       package_count=row.package_count)
            for row in rows[-MAX_POINTS:])
        found.append(TrendSeries(target=_target_ref(rows[-1]), scanner=scanner, points=points))
    found.sort(key=lambda s: (s.target.target_type, s.target.target, s.target.host,
                              s.target.runtime or "", s.scanner))
    return found


def jsonable(value: Any) -> Any:
    """A query's rows as plain JSON values (datetimes as ISO 8601 UTC)."""
    if isinstance(value, datetime):
        return utc(value).isoformat().replace("+00:00", "Z")
    if hasattr(value, "__dataclass_fields__"):
        return {name: jsonable(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, tuple | list):
        return [jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def dumps(value: Any) -> str:
    return json.dumps(jsonable(value), indent=2, ensure_ascii=False)
