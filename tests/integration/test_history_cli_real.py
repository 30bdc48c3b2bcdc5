"""The history's questions answered after real scans, on SQLite and on a real PostgreSQL.

One image name is scanned twice while it names two different images (the Debian test image,
then the same with packages purged), so `diff` has real changes to find, and `package --at`
a moment when the purged packages were still there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import DEBIAN, LINT_BAD, PURGED, Atomicscan, podman

NAME = "localhost/atomicscan-test/history-moving:1"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture
def moving_tag() -> Iterator[str]:
    yield NAME
    podman("untag", NAME, NAME, check=False)  # that name only: alone, untag drops every name


def _json(scan: Atomicscan, *args: str) -> dict[str, Any]:
    run = scan(*args, "--json")
    assert run.returncode == 0, run.stderr
    document: dict[str, Any] = json.loads(run.stdout)
    return document


def _names(report: dict[str, Any]) -> set[str]:
    return {p["name"] for p in report["results"][0]["packages"]}


def test_diff_package_at_and_finding_over_real_runs(tmp_path: Path, db: str,
                                                    moving_tag: str) -> None:
    scan = Atomicscan(tmp_path)
    podman("tag", DEBIAN, moving_tag)
    before = _json(scan, "--scanner", "packages", "--db", db, moving_tag)
    podman("tag", PURGED, moving_tag)  # the name now points at other content
    after = _json(scan, "--scanner", "packages", "--db", db, moving_tag)
    gone = _names(before) - _names(after)
    assert gone, "the purged image should lack some of the Debian image's packages"

    changes = _json(scan, "history", "diff", moving_tag, "--db", db)
    removed = {c["name"] for c in changes["packages"] if c["change"] == "removed"}
    added = {c["name"] for c in changes["packages"] if c["change"] == "added"}
    assert removed == gone and added == _names(after) - _names(before)
    assert changes["old"]["run_id"] == before["run_id"]
    assert changes["new"]["run_id"] == after["run_id"]

    # Between the two scans the package was there; now it is not.
    package = sorted(gone)[0]
    then = _json(scan, "history", "package", package, "--at", before["finished_at"],
                 "--db", db)
    assert [f["target"]["target"] for f in then["found"]] == [moving_tag]
    now = _json(scan, "history", "package", package, "--at", "now", "--db", db)
    assert [f for f in now["found"] if f["target"]["target"] == moving_tag] == []

    lint = _json(scan, "--scanner", "configlint", "--db", db, LINT_BAD)
    assert any(f["id"] == "CL-PRIVATE-KEY" for f in lint["results"][0]["findings"])
    seen = _json(scan, "history", "finding", "CL-PRIVATE-KEY", "--db", db)
    (sighting,) = seen["targets"]
    assert sighting["target"]["target"] == LINT_BAD and sighting["fixed_at"] is None

    runs = _json(scan, "history", "runs", "--db", db)["runs"]
    assert {r["run_id"] for r in runs} == {before["run_id"], after["run_id"], lint["run_id"]}


def test_a_run_recorded_later_by_import_once(tmp_path: Path, db: str) -> None:
    scan = Atomicscan(tmp_path)
    report = _json(scan, "--scanner", "packages", "--no-history", DEBIAN)
    written = Path(report["results_dir"]) / "report.json"
    assert _json(scan, "history", "runs", "--db", db)["runs"] == []
    first = scan("history", "import", "--db", db, str(written))
    again = scan("history", "import", "--db", db, str(written))
    assert first.returncode == 0 and again.returncode == 0, (first.stderr, again.stderr)
    assert "already" in again.stdout + again.stderr
    runs = _json(scan, "history", "runs", "--db", db)["runs"]
    assert [r["run_id"] for r in runs] == [report["run_id"]]
