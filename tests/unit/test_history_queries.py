"""The history's questions against a real SQLite history recorded by the real Store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from historydata import (
    CONTAINER,
    IMAGE_1,
    IMAGE_2,
    Recorded,
    day,
    deb,
    record_scenario,
    report,
    result,
)

from atomicscan.errors import UsageError
from atomicscan.history import queries
from atomicscan.history.versions import parse_spec


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[Recorded]:
    done = record_scenario(tmp_path)
    yield done
    done.store.close()


def _who(hits: list[queries.PackageHit]) -> set[tuple[str, str, str, str]]:
    return {(h.target.host, h.target.target, h.target.target_type, h.version) for h in hits}


def test_package_at_a_moment_is_each_targets_latest_inventory_then(recorded: Recorded) -> None:
    engine = recorded.store.engine
    assert queries.targets_with_package_at(engine, "openssl", day(0.5)) == []
    first_day = queries.targets_with_package_at(engine, "openssl", day(1.5))
    assert _who(first_day) == {("web01", "web:1", "image", "3.0.11-1~deb12u1"),
                               ("web01", "c1", "container", "3.0.11-1~deb12u1"),
                               ("web01", "ubi:9", "image", "1:3.0.7-25.el9")}
    # The configlint scan of web:1 on day 2 lists no packages: it hides nothing.
    # db01 has its own web:1 from day 2.
    assert _who(queries.targets_with_package_at(engine, "openssl", day(2.5))) == {
        *_who(first_day), ("db01", "web:1", "image", "3.0.11-1~deb12u1")}
    later = queries.targets_with_package_at(engine, "openssl", day(3.5))
    # web:1 was rebuilt with 3.0.15; the failed day-3 scan of c1 leaves it as last seen.
    assert _who(later) == {("web01", "web:1", "image", "3.0.15-1~deb12u1"),
                           ("web01", "c1", "container", "3.0.11-1~deb12u1"),
                           ("web01", "ubi:9", "image", "1:3.0.7-25.el9"),
                           ("db01", "web:1", "image", "3.0.11-1~deb12u1")}
    web = next(h for h in later if h.target.host == "web01" and h.target.target == "web:1")
    assert (web.run_id, web.scanned_at, web.target.target_id) == ("r3-packages", day(3), IMAGE_2)
    assert web.target.names == ("web:1",) and web.target.runtime == "podman"
    container = next(h for h in later if h.target.target_type == "container")
    assert container.target.image_id == IMAGE_1 and container.target.target_id == CONTAINER
    # A package that left: libfoo was in web:1 until the rebuild.
    assert _who(queries.targets_with_package_at(engine, "libfoo", day(2.5))) == {
        ("web01", "web:1", "image", "1.0-1"), ("db01", "web:1", "image", "1.0-1")}
    assert _who(queries.targets_with_package_at(engine, "libfoo", day(3.5))) == {
        ("db01", "web:1", "image", "1.0-1")}


def test_a_version_spec_uses_each_package_types_ordering(recorded: Recorded) -> None:
    engine = recorded.store.engine
    older = queries.targets_with_package_at(engine, "openssl", day(3.5), parse_spec("<3.0.15"))
    # dpkg: 3.0.15-1~deb12u1 is after 3.0.15; rpm: epoch 1 is after any epoch-0 version.
    assert _who(older) == {("web01", "c1", "container", "3.0.11-1~deb12u1"),
                           ("db01", "web:1", "image", "3.0.11-1~deb12u1")}
    rpm_exact = queries.targets_with_package_at(engine, "openssl", day(3.5),
                                                parse_spec("=1:3.0.7"))
    assert _who(rpm_exact) == {("web01", "ubi:9", "image", "1:3.0.7-25.el9")}
    epoch = queries.targets_with_package_at(engine, "zlib1g", day(3.5), parse_spec(">=1.3"))
    assert {h.version for h in epoch} == {"1:1.2.13.dfsg-1"}  # 1: beats any epoch-0 version
    assert queries.targets_with_package_at(engine, "openssl", day(3.5),
                                           parse_spec(">1:4")) == []
    assert queries.targets_with_package_at(engine, "no-such-package", day(9)) == []


def test_package_over_a_window_lists_every_scan_that_had_it(recorded: Recorded) -> None:
    engine = recorded.store.engine
    hits = queries.targets_with_package_between(engine, "openssl", day(1), day(3))
    assert sorted((h.target.host, h.target.target, h.run_id) for h in hits) == [
        ("db01", "web:1", "r5-db-packages"), ("web01", "c1", "r1-packages"),
        ("web01", "ubi:9", "r1-packages"), ("web01", "web:1", "r1-packages"),
        ("web01", "web:1", "r3-packages")]
    assert len(queries.targets_with_package_between(engine, "openssl", day(2.5), None)) == 1
    assert len(queries.targets_with_package_between(engine, "openssl", None, day(1))) == 3
    spec = parse_spec(">=3.0.15")
    assert sorted((h.target.target, h.run_id) for h in queries.targets_with_package_between(
        engine, "openssl", None, None, spec)) == [("ubi:9", "r1-packages"),  # epoch 1
                                                  ("web:1", "r3-packages")]


def test_finding_first_and_last_seen_and_when_it_was_fixed(recorded: Recorded) -> None:
    seen = queries.finding_history(recorded.store.engine, "CVE-2024-0001")
    assert [(s.target.host, s.target.target, s.scanner, s.first_seen, s.last_seen,
             s.fixed_at, s.scans, s.severity, s.where) for s in seen] == [
        ("web01", "web:1", "configlint", day(2), day(2), day(4), 1, "high",
         "/usr/lib/libssl.so.3"),
        ("db01", "web:1", "configlint", day(5), day(5), None, 1, "high",
         "/usr/lib/libssl.so.3")]
    lint = queries.finding_history(recorded.store.engine, "LINT-1")
    assert [(s.first_seen, s.last_seen, s.fixed_at, s.scans, s.target.target_id)
            for s in lint] == [(day(2), day(4), None, 2, IMAGE_2)]
    assert queries.finding_history(recorded.store.engine, "CVE-0000-0000") == []


def test_diff_by_default_compares_the_last_two_scans_by_one_scanner(recorded: Recorded) -> None:
    engine = recorded.store.engine
    with pytest.raises(UsageError, match="names 2 recorded targets"):
        queries.diff_target(engine, "web:1")  # on web01 and on db01
    changes = queries.diff_target(engine, "web:1", host="web01")
    assert (changes.old.run_id, changes.new.run_id) == ("r2-lint", "r4-lint")
    assert changes.packages_compared is False and changes.packages == ()
    assert [(c.change, c.finding_id, c.severity) for c in changes.findings] == [
        ("new", "LINT-3", "critical"), ("new", "LINT-2", "medium"),
        ("fixed", "CVE-2024-0001", "high")]
    assert next(c for c in changes.findings if c.finding_id == "LINT-3").suppressed


def test_diff_of_packages_upgraded_downgraded_added_removed(recorded: Recorded) -> None:
    engine = recorded.store.engine
    changes = queries.diff_target(engine, "web:1", host="web01", scanner="packages")
    assert (changes.old.run_id, changes.new.run_id) == ("r1-packages", "r3-packages")
    assert (changes.old.target.target_id, changes.new.target.target_id) == (IMAGE_1, IMAGE_2)
    assert changes.packages_compared
    assert {(c.change, c.name, c.old_version, c.new_version) for c in changes.packages} == {
        ("upgraded", "openssl", "3.0.11-1~deb12u1", "3.0.15-1~deb12u1"),
        ("downgraded", "tzdata", "2024a-0+deb12u1", "2023c-5+deb12u1"),
        ("removed", "libfoo", "1.0-1", None),
        ("added", "newpkg", None, "2.0-1")}
    by_runs = queries.diff_target(engine, "web:1", from_run="r1-packages", to_run="r3-packages",
                                  host="web01")
    assert by_runs.packages == changes.packages
    assert queries.diff_target(engine, "web:1", host="web01",
                               to_run="r3-packages").old.run_id == "r1-packages"
    assert queries.diff_target(engine, "web:1", host="web01",
                               from_run="r1-packages").new.run_id == "r3-packages"


def test_diff_finds_a_container_by_id_prefix_and_refuses_what_it_cannot_do(
    recorded: Recorded,
) -> None:
    engine = recorded.store.engine
    changes = queries.diff_target(engine, CONTAINER[:12])
    assert (changes.old.successful, changes.new.successful) == (True, False)
    assert changes.packages_compared is False  # the failed scan listed nothing
    with pytest.raises(UsageError, match="no recorded scan"):
        queries.diff_target(engine, "nothing:here")
    with pytest.raises(UsageError, match="no earlier scan"):
        queries.diff_target(engine, "ubi:9")
    with pytest.raises(UsageError, match="has no scan"):
        queries.diff_target(engine, "ubi:9", to_run="r3-packages")
    # LIKE wildcards in a name are matched as typed, not as wildcards.
    with pytest.raises(UsageError, match="no recorded scan"):
        queries.diff_target(engine, "web_1")


def test_runs_newest_first_with_their_counts(recorded: Recorded) -> None:
    found = queries.list_runs(recorded.store.engine)
    # r2 and r5 started together: the one recorded later comes first.
    assert [r.run_id for r in found] == ["r6-db-lint", "r4-lint", "r3-packages",
                                         "r5-db-packages", "r2-lint", "r1-packages"]
    by_id = {r.run_id: r for r in found}
    assert (by_id["r4-lint"].findings, by_id["r4-lint"].suppressed) == (3, 1)
    assert (by_id["r3-packages"].targets, by_id["r3-packages"].failed) == (2, 1)
    assert by_id["r1-packages"].host == "web01" and by_id["r6-db-lint"].host == "db01"
    assert by_id["r1-packages"].started_at == day(1)
    assert [r.run_id for r in queries.list_runs(recorded.store.engine, limit=2)] == [
        "r6-db-lint", "r4-lint"]
    assert {r.run_id for r in queries.list_runs(recorded.store.engine, host="db01")} == {
        "r5-db-packages", "r6-db-lint"}
    assert {r.run_id for r in queries.list_runs(recorded.store.engine, since=day(4))} == {
        "r4-lint", "r6-db-lint"}


def test_trend_has_one_series_per_target_and_scanner(recorded: Recorded) -> None:
    series = queries.trend(recorded.store.engine)
    keyed = {(s.target.host, s.target.target, s.scanner): s for s in series}
    assert set(keyed) == {("web01", "web:1", "packages"), ("web01", "web:1", "configlint"),
                          ("web01", "c1", "packages"), ("web01", "ubi:9", "packages"),
                          ("db01", "web:1", "packages"), ("db01", "web:1", "configlint")}
    lint = keyed["web01", "web:1", "configlint"].points
    assert [p.scanned_at for p in lint] == [day(2), day(4)]
    assert [dict(p.by_severity) for p in lint] == [
        {"critical": 0, "high": 1, "medium": 0, "low": 1, "unknown": 0},
        {"critical": 0, "high": 0, "medium": 1, "low": 1, "unknown": 0}]
    assert [p.suppressed for p in lint] == [0, 1]
    assert [p.package_count for p in keyed["web01", "web:1", "packages"].points] == [4, 4]
    container = keyed["web01", "c1", "packages"].points
    assert [(p.successful, p.package_count) for p in container] == [(True, 2), (False, None)]
    assert len(queries.trend(recorded.store.engine, since=day(4.5))) == 1


def test_times_bind_in_utc_whatever_the_offset_given(recorded: Recorded) -> None:
    engine = recorded.store.engine
    from datetime import timezone

    east = day(1.5).astimezone(timezone(timedelta(hours=10)))
    assert _who(queries.targets_with_package_at(engine, "curl", east)) == {
        ("web01", "c1", "container", "7.88.1-10")}
    with pytest.raises(ValueError, match="naive"):
        queries.targets_with_package_at(engine, "curl", day(1.5).replace(tzinfo=None))


def test_hostile_names_are_stored_and_found_as_plain_text(tmp_path: Path) -> None:
    from historydata import open_store

    name = "lib'; DROP TABLE packages; --%_[red]"
    with open_store(tmp_path) as store:
        store.record(report("hostile", day(1), [
            result("evil:1", "e" * 64, day(1), packages=(deb(name, "1.0"), deb("x" * 900, "1")))]))
        hits = queries.targets_with_package_at(store.engine, name, day(2))
        assert [h.name for h in hits] == [name]
        assert queries.targets_with_package_at(store.engine, "lib'; DROP%", day(2)) == []
        # Indexed text is cut when stored; a query for the whole name still finds it.
        assert len(queries.targets_with_package_at(store.engine, "x" * 900, day(2))) == 1


def test_package_at_uses_the_indexes_not_a_scan_of_every_package(recorded: Recorded) -> None:
    """The benchmark's question (which targets had X at T) must not read every package row
    or every set member: SQLite's plan searches them by index."""
    engine = recorded.store.engine
    captured: list[tuple[str, object]] = []

    def capture(conn: sa.Connection, cursor: object, statement: str, parameters: object,
                *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        assert queries.targets_with_package_at(engine, "openssl", day(9))
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    details: list[str] = []
    with engine.connect() as connection:
        for statement, parameters in captured:
            plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                              parameters).all()  # type: ignore[arg-type]
            details += [str(row[-1]) for row in plan]
    full_scans = [d for d in details if d.startswith("SCAN ") and
                  any(t in d for t in ("packages", "package_set_members"))]
    assert full_scans == [], details
    assert any("packages USING INDEX ix_packages_name" in d for d in details), details
    assert any(d.startswith("SEARCH package_set_members USING") for d in details), details
