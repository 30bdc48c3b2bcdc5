"""``atomicscan history``: the recorded runs' questions on the command line.

Parses, calls :mod:`atomicscan.history.queries`, prints a table on a terminal (or JSON with
``--json``). Errors are raised, never printed here: ``cli.main`` prints each as one line and
maps it to its exit code. Text from the database came from images and scanners: every cell
is escaped with :func:`~atomicscan.safetext.printable` and rich never reads it as markup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table
from rich.text import Text
from sqlalchemy import exc as sa_exc

from atomicscan.boundedread import read_at_most
from atomicscan.errors import ExitCode, UsageError
from atomicscan.history import queries
from atomicscan.history.dburl import redacted, resolve_url, scrub
from atomicscan.history.store import HistoryError, Store, to_utc
from atomicscan.history.versions import parse_spec
from atomicscan.history.when import parse_when
from atomicscan.results import Report
from atomicscan.safejson import JSONRefused, loads_strict
from atomicscan.safetext import console, printable

#: The largest report ``import`` reads: a 500-image ``--images`` run with 1,000 packages
#: each stays well under it; parsing JSON takes several times its size in memory.
MAX_REPORT_BYTES = 128 << 20
#: The most days ``prune --max-age`` takes (a thousand years).
MAX_AGE_DAYS = 365_000

DB_HELP = ("History database: sqlite:///PATH or postgresql://USER@HOST/DB [default: "
           "$ATOMICSCAN_DB, else the first line of /etc/atomicscan/db-url, else "
           "sqlite:////var/lib/atomicscan/history.db; for a user, $ATOMICSCAN_DB, else "
           "$XDG_DATA_HOME/atomicscan/history.db].")

GROUP_EPILOG = """\b
Examples:
  atomicscan history runs
  atomicscan history package openssl --version '<3.0.15' --at '3 weeks ago'
  atomicscan history package libssl3 --since 2026-11-01 --until 2026-11-30 --json
  atomicscan history finding CVE-2024-5535
  atomicscan history diff docker.io/library/debian:bookworm-slim
  atomicscan history import /var/lib/atomicscan/packages/*/report.json
  atomicscan history prune --max-age 180
  atomicscan history report --html trend.html
  atomicscan history runs --db postgresql://scan@db.example.com/atomicscan

\b
Exit codes:
  0    done (an empty answer is not an error)
  1    the database could not be opened, read or written, or (import) a report could
       not be recorded in it
  2    bad input: a wrong flag, a time or version that can't be read, an unknown target
       (diff), a file that is not a report (import; the other files are still recorded)
"""

_Function = TypeVar("_Function", bound=Callable[..., Any])


def _common(function: _Function) -> _Function:
    """``--db URL`` and ``--json``, which every history command takes."""
    function = click.option("--json", "as_json", is_flag=True,
                            help="Print one JSON document on stdout instead of a table.")(function)
    return click.option("--db", "db_url", metavar="URL", help=DB_HELP)(function)


@contextlib.contextmanager
def _store(db_url: str | None) -> Iterator[Store]:
    """The opened store; a failed read (a lost connection, a lock held past the timeout)
    is a one-line ``HistoryError`` without the URL's password, like every store failure."""
    store = Store.open(resolve_url(db_url))
    try:
        yield store
    except sa_exc.SQLAlchemyError as exc:
        raise _read_failure(store.url, exc) from None
    finally:
        store.close()


def _read_failure(url: str, exc: sa_exc.SQLAlchemyError) -> HistoryError:
    source = exc.orig if isinstance(exc, sa_exc.StatementError) and exc.orig else exc
    first = next((line.strip() for line in str(source).splitlines() if line.strip()),
                 type(source).__name__)
    return HistoryError(scrub(f"cannot read the history database {redacted(url)}: "
                              f"{first[:400]}", [url]))


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _when(option: str, text: str | None, now: datetime) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_when(text, now=now)
    except UsageError as exc:
        raise UsageError(f"{option}: {exc.message}") from None


def _print_json(value: Any) -> None:
    click.echo(queries.dumps(value))


def _cell(value: object) -> Text:
    return Text(printable("" if value is None else value))


def _stamp(when: datetime | None) -> str:
    return "" if when is None else queries.utc(when).strftime("%Y-%m-%d %H:%M:%S")


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    if not rows:
        _say(title)
        return
    table = Table(title=printable(title), title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    console().print(table)


def _say(message: str) -> None:
    console().print(printable(message), soft_wrap=True)


def _names(target: queries.TargetRef) -> str:
    return ", ".join(name for name in target.names if name != target.target)


@click.group(name="history", epilog=GROUP_EPILOG,
             context_settings={"help_option_names": ["-h", "--help"],
                               "max_content_width": 100})
def history() -> None:
    """What earlier runs found: runs, packages and findings over time, diffs, a trend page.

    Every run is recorded in the history database when it finishes (unless --no-history).
    Times are shown in UTC; WHEN is "now", "yesterday", "3 weeks ago", "2 days ago",
    "2026-11-01", "2026-11-01T10:00" or "2026-11-01 10:00:00+02:00".
    """


@history.command(epilog="""\b
Examples:
  atomicscan history runs
  atomicscan history runs --limit 10 --host web01
  atomicscan history runs --since '2 days ago' --json
""")
@click.option("--limit", type=click.IntRange(min=1, max=1_000_000), default=50,
              show_default=True, metavar="N", help="Show the N newest runs.")
@click.option("--since", metavar="WHEN", help="Only runs started at or after WHEN.")
@click.option("--host", metavar="HOSTNAME", help="Only runs of this host.")
@_common
def runs(limit: int, since: str | None, host: str | None, db_url: str | None,
         as_json: bool) -> None:
    """The recorded runs, newest first: host, time, scanner, targets, failures."""
    start = _when("--since", since, _now())
    with _store(db_url) as store:
        found = queries.list_runs(store.engine, limit=limit, since=start, host=host)
    if as_json:
        _print_json({"runs": found})
        return
    _table(f"{len(found)} run(s), newest first (times in UTC)",
           ("Started", "Host", "Scanner", "Scan type", "Run", "Targets", "Failed", "Findings"),
           [(_stamp(r.started_at), r.host, r.scanner, r.scan_type, r.run_id, r.targets,
             r.failed, r.findings) for r in found])


@history.command(epilog="""\b
Examples:
  atomicscan history package openssl
  atomicscan history package openssl --version '<3.0.15' --at '3 weeks ago'
  atomicscan history package libssl3 --version '=3.0.11-1~deb12u2' --at 2026-11-01
  atomicscan history package zlib --since '30 days ago' --until now --json

\b
--at WHEN (default: now) answers with each target's latest package inventory at or
before WHEN: an image is known by its name, a container by its ID, on one host and
runtime. --since/--until list every scan in that window that had the package.
SPEC is OP VERSION (<, <=, =, !=, >=, >; a bare version means =), compared with the
package type's own ordering (dpkg, rpm, apk).
""")
@click.argument("name")
@click.option("--version", "spec_text", metavar="SPEC",
              help="Only versions matching SPEC, e.g. '<3.0.15' or '=1:2.3-4'.")
@click.option("--at", metavar="WHEN", help="Which targets had it at this moment [default: now].")
@click.option("--since", metavar="WHEN", help="Every scan at or after WHEN that had it.")
@click.option("--until", metavar="WHEN", help="Every scan at or before WHEN that had it.")
@_common
def package(name: str, spec_text: str | None, at: str | None, since: str | None,
            until: str | None, db_url: str | None, as_json: bool) -> None:
    """Which targets had package NAME: at a moment, or over a window."""
    if at is not None and (since is not None or until is not None):
        raise UsageError("give either --at or --since/--until, not both")
    spec = parse_spec(spec_text) if spec_text is not None else None
    now = _now()
    moment = _when("--at", at, now)
    start, end = _when("--since", since, now), _when("--until", until, now)
    if start is not None and end is not None and start > end:
        raise UsageError("--since is after --until")
    windowed = start is not None or end is not None
    with _store(db_url) as store:
        if windowed:
            found = queries.targets_with_package_between(store.engine, name, start, end, spec)
        else:
            moment = moment or now
            found = queries.targets_with_package_at(store.engine, name, moment, spec)
    if as_json:
        _print_json({"package": name, "version": spec_text, "at": moment, "since": start,
                     "until": end, "found": found})
        return
    if windowed:
        title = (f"{len(found)} scan(s) with {name}{' ' + spec_text if spec_text else ''} "
                 f"from {_stamp(start) or 'the first scan'} to {_stamp(end) or 'now'} UTC")
    else:
        title = (f"{len(found)} target(s) with {name}{' ' + spec_text if spec_text else ''} "
                 f"at {_stamp(moment)} UTC")
    _table(title, ("Target", "Type", "Other names", "Runtime", "Host", "Scanned (UTC)",
                   "Version", "Arch", "Package type"),
           [(h.target.target, h.target.target_type, _names(h.target), h.target.runtime,
             h.target.host, _stamp(h.scanned_at), h.version, h.architecture, h.type)
            for h in found])


@history.command(epilog="""\b
Examples:
  atomicscan history finding CVE-2024-5535
  atomicscan history finding xccdf_org.ssgproject.content_rule_accounts_tmout --json

\b
One row per target (an image by name, a container by ID, on one host and runtime) and
scanner: when the finding was first and last seen, and when it was fixed (the first
scan after it went away; empty while the latest scan still has it).
""")
@click.argument("finding_id", metavar="ID")
@_common
def finding(finding_id: str, db_url: str | None, as_json: bool) -> None:
    """Which targets had finding ID (a CVE or a rule ID), and when it came and went."""
    with _store(db_url) as store:
        found = queries.finding_history(store.engine, finding_id)
    if as_json:
        _print_json({"finding": finding_id, "targets": found})
        return
    _table(f"{len(found)} target(s) with {finding_id} (times in UTC)",
           ("Target", "Type", "Runtime", "Host", "Scanner", "Severity", "First seen",
            "Last seen", "Fixed", "Scans", "Where"),
           [(s.target.target, s.target.target_type, s.target.runtime, s.target.host,
             s.scanner, s.severity + (" (suppressed)" if s.suppressed else ""),
             _stamp(s.first_seen), _stamp(s.last_seen), _stamp(s.fixed_at), s.scans, s.where)
            for s in found])


@history.command(epilog="""\b
Examples:
  atomicscan history diff docker.io/library/debian:bookworm-slim
  atomicscan history diff web-frontend --scanner packages
  atomicscan history diff 3f1c2a9b8d7e --from 20261101093000-1a2b3c4d --to 20261201093000-5e6f7a8b
  atomicscan history diff myimage:1.0 --host build01 --json

\b
TARGET is an image name, a container name or ID (at least 12 characters of it). By
default the target's latest scan is compared with the scan before it by the same
scanner; --to RUN picks the newer scan, --from RUN the older (run IDs as `history runs`
shows them). Packages are matched by name, architecture and type; a version change is an
upgrade or a downgrade in that type's ordering. Findings are matched by fingerprint.
""")
@click.argument("target")
@click.option("--from", "from_run", metavar="RUN", help="The older scan: this run's.")
@click.option("--to", "to_run", metavar="RUN", help="The newer scan: this run's.")
@click.option("--host", metavar="HOSTNAME", help="The target on this host.")
@click.option("--scanner", metavar="NAME", help="Scans by this scanner only.")
@_common
def diff(target: str, from_run: str | None, to_run: str | None, host: str | None,
         scanner: str | None, db_url: str | None, as_json: bool) -> None:
    """What changed between two scans of TARGET: packages and findings."""
    with _store(db_url) as store:
        changes = queries.diff_target(store.engine, target, from_run=from_run, to_run=to_run,
                                      host=host, scanner=scanner)
    if as_json:
        _print_json(changes)
        return
    old, new = changes.old, changes.new
    _say(f"{new.target.target_type} {new.target.target} ({new.target.runtime or 'no runtime'})"
         f" on {new.target.host}, {new.scanner}:")
    _say(f"  from run {old.run_id} at {_stamp(old.scanned_at)} UTC "
         f"(image {old.target.image_id or old.target.target_id})")
    _say(f"  to   run {new.run_id} at {_stamp(new.scanned_at)} UTC "
         f"(image {new.target.image_id or new.target.target_id})")
    counted = {kind: sum(c.change == kind for c in changes.packages)
               for kind in ("added", "removed", "upgraded", "downgraded", "changed")}
    if changes.packages_compared:
        _say("packages: " + ", ".join(f"{n} {kind}" for kind, n in counted.items()
                                      if n or kind != "changed"))
        if changes.packages:
            _table("package changes", ("Change", "Package", "Arch", "Type", "Old", "New"),
                   [(c.change, c.name, c.architecture, c.type, c.old_version, c.new_version)
                    for c in changes.packages])
    else:
        _say("packages: not compared (one of the scans listed no packages)")
    new_count = sum(c.change == "new" for c in changes.findings)
    _say(f"findings: {new_count} new, {len(changes.findings) - new_count} fixed")
    if changes.findings:
        _table("finding changes", ("Change", "Severity", "ID", "Where", "Title"),
               [(c.change, c.severity + (" (suppressed)" if c.suppressed else ""),
                 c.finding_id, c.where, c.title) for c in changes.findings])


@dataclass(frozen=True)
class _Imported:
    path: str
    status: str
    """recorded, already recorded, not a report, not recorded."""
    run_id: str | None = None
    host: str | None = None
    targets: int | None = None
    error: str | None = None


def _read_report(path: Path) -> Report:
    """``path`` as a report: a regular file under the size cap, strict JSON, the report
    shape. Raises ``UsageError`` with one line otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO must not hang; it is refused below as not a file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot open: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError("not a regular file")
    with os.fdopen(fd, "rb") as stream:
        try:
            data = read_at_most(stream, MAX_REPORT_BYTES)
        except OSError as exc:
            raise UsageError(f"cannot read: {exc.strerror}") from None
    if len(data) > MAX_REPORT_BYTES:
        raise UsageError(f"larger than {MAX_REPORT_BYTES >> 20} MiB")
    try:
        document = loads_strict(data)
    except JSONRefused as exc:
        raise UsageError(f"not strict JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UsageError("not a report: the document is not a JSON object")
    try:
        report = Report.from_json(document)
        for stamp in (report.started_at, report.finished_at,
                      *(t for r in report.results for t in (r.started_at, r.finished_at))):
            to_utc(stamp)
    except (KeyError, TypeError, ValueError, AttributeError, HistoryError) as exc:
        detail = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UsageError(f"not a report: {detail}") from None
    if not report.run_id.strip():
        raise UsageError("not a report: its run_id is empty")
    return report


def _import_one(store: Store, path: Path) -> _Imported:
    try:
        report = _read_report(path)
    except UsageError as exc:
        return _Imported(str(path), "not a report", error=exc.message)
    done = _Imported(str(path), "recorded", run_id=report.run_id,
                     host=report.host.get("hostname") or "an unnamed host",
                     targets=len(report.results))
    try:
        recorded = store.record(report)
    except HistoryError as exc:
        return dataclasses.replace(done, status="not recorded", error=exc.message)
    return done if recorded else dataclasses.replace(done, status="already recorded")


@history.command(name="import", epilog=f"""\b
Examples:
  atomicscan history import /var/lib/atomicscan/packages/2026-11-01-10-00-00-000000/report.json
  atomicscan history import reports/*.json --db postgresql://scan@db.example.com/atomicscan
  ssh web01 cat /var/lib/atomicscan/openscap/latest/report.json > web01.json && \\
    atomicscan history import web01.json

\b
Each REPORT is a report.json written by atomicscan (here or on another host; its host is
the one that scanned). Importing a run that is already recorded adds nothing and says so.
A file that is not a report (unreadable, not strict JSON, another shape, over
{MAX_REPORT_BYTES >> 20} MiB) is named on one line and skipped; the others are recorded.
Exit 0 when every file is recorded (now or before), 2 when a file is not a report, 1 when
the database failed to record one (1 wins over 2).
""")
@click.argument("reports", nargs=-1, required=True, metavar="REPORT...",
                type=click.Path(path_type=Path, dir_okay=True))
@_common
def import_command(reports: tuple[Path, ...], db_url: str | None, as_json: bool) -> None:
    """Record report.json files written earlier or on other hosts."""
    with _store(db_url) as store:
        done = [_import_one(store, path) for path in reports]
    if as_json:
        _print_json({"files": done,
                     **{status.replace(" ", "_"): sum(d.status == status for d in done)
                        for status in ("recorded", "already recorded", "not a report",
                                       "not recorded")}})
    else:
        out = console(stderr=True)
        for item in done:
            if item.status == "recorded":
                _say(f"{item.path}: recorded run {item.run_id} of {item.host} "
                     f"({item.targets} target(s))")
            elif item.status == "already recorded":
                _say(f"{item.path}: run {item.run_id} of {item.host} is already recorded; "
                     "nothing added")
            else:
                out.print(printable(f"atomicscan: error: {item.path}: {item.status}: "
                                    f"{item.error}"), soft_wrap=True)
    if any(item.status == "not recorded" for item in done):
        raise SystemExit(ExitCode.SCAN_FAILED)
    if any(item.status == "not a report" for item in done):
        raise SystemExit(ExitCode.USAGE)


def _days(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise click.BadParameter(f"{printable(value)!r} is not a number of days") from None
    if not 0 <= days <= MAX_AGE_DAYS:  # also refuses nan
        raise click.BadParameter(f"{printable(value)!r} is not a number of days from 0 to "
                                 f"{MAX_AGE_DAYS}")
    return days


@history.command(epilog="""\b
Examples:
  atomicscan history prune --max-age 180
  atomicscan history prune --max-age 30 --db postgresql://scan@db.example.com/atomicscan --json

\b
Removes every run that started more than DAYS ago, its targets and findings, and the
package lists only those runs used. Results directories on disk are not touched (see
atomicscan --keep/--max-age).
""")
@click.option("--max-age", "max_age", required=True, callback=_days, metavar="DAYS",
              help="Remove runs older than DAYS (fractions allowed, 0 removes every run).")
@_common
def prune(max_age: float, db_url: str | None, as_json: bool) -> None:
    """Remove runs older than --max-age DAYS from the history."""
    older_than = _now() - timedelta(days=max_age)
    with _store(db_url) as store:
        removed = store.prune(older_than)
    if as_json:
        _print_json({"removed": removed, "older_than": older_than})
    else:
        _say(f"removed {removed} run(s) started before {_stamp(older_than)} UTC")


@history.command(epilog="""\b
Examples:
  atomicscan history report --html trend.html
  atomicscan history report --since '90 days ago' --html /srv/www/atomicscan/trend.html
  atomicscan history report --json

\b
The page is one self-contained HTML file (inline CSS and SVG, no script, no network):
for each target (an image by name, a container by ID), its findings by severity over
time per scanner (suppressed ones not counted), and its package count over time.
""")
@click.option("--html", "html_path", type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE", help="Write the trend page to FILE.")
@click.option("--since", metavar="WHEN", help="Only scans at or after WHEN.")
@click.option("--until", metavar="WHEN", help="Only scans at or before WHEN.")
@_common
def report(html_path: Path | None, since: str | None, until: str | None, db_url: str | None,
           as_json: bool) -> None:
    """Each target's findings and package count over time, as a table or an HTML page."""
    from atomicscan.history.trend import write_trend

    now = _now()
    start, end = _when("--since", since, now), _when("--until", until, now)
    with _store(db_url) as store:
        series = queries.trend(store.engine, since=start, until=end)
    if html_path is not None:
        write_trend(html_path, series)
    if as_json:
        _print_json({"html": str(html_path) if html_path else None, "series": series})
        return
    rows = []
    for one in series:
        latest = one.points[-1]
        rows.append((one.target.target, one.target.target_type, one.target.host, one.scanner,
                     len(one.points), _stamp(latest.scanned_at),
                     " ".join(f"{s[0]}:{n}" for s, n in latest.by_severity.items()),
                     "" if latest.package_count is None else latest.package_count))
    _table(f"{len(series)} series (findings of the latest scan: critical high medium low "
           "unknown)", ("Target", "Type", "Host", "Scanner", "Scans", "Latest (UTC)",
                        "Findings", "Packages"), rows)
    if html_path is not None:
        console(stderr=True).print(printable(f"atomicscan: wrote the trend page to {html_path}"),
                                   soft_wrap=True)
