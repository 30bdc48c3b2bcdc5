"""What a run keeps on the host, without a runtime (fast tier): its state and the cleanup
of a dead run, retention of old results, the result cache, time stamps, --scanner-args."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from atomicscan import cache, cleanup, retention, stamps, state
from atomicscan.errors import RuntimeUnavailableError, UsageError
from atomicscan.proc import Completed
from atomicscan.request import check_timeout, parse_scanner_args
from atomicscan.results import Finding, Package, Report, ScanResult
from atomicscan.resultsdir import results_directory
from atomicscan.runtime import RUN_LABEL, Runtime, RuntimeRegistry, ScannerContainer, Target

# --- --scanner-args and --timeout ------------------------------------------------------------


@pytest.mark.parametrize(("text", "parsed"), [
    (None, {}),
    ("", {}),
    ("a=1", {"a": "1"}),
    (" a = 1 , b=two words ,,c=", {"a": "1", "b": "two words", "c": ""}),
    ("url=http://x/?q=1", {"url": "http://x/?q=1"}),
    ("a=1,a=2", {"a": "2"}),
])
def test_scanner_args_parse_as_atomic_scan_took_them(text: str | None,
                                                     parsed: dict[str, str]) -> None:
    assert parse_scanner_args(text) == parsed


@pytest.mark.parametrize("text", ["novalue", "a=1,oops", "=1", " =x"])
def test_scanner_args_without_a_key_or_an_equals_sign_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="is not KEY=VALUE"):
        parse_scanner_args(text)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_a_timeout_must_be_a_finite_number_above_zero(value: float) -> None:
    with pytest.raises(UsageError):
        check_timeout(value)


# --- time stamps: each format is recognised where it is written ------------------------


def test_each_stamp_is_recognised_by_its_own_pattern() -> None:
    assert stamps.is_results_dir_name(stamps.results_dir_name())
    assert state.is_run_id(state.new_run_id())
    assert stamps.iso_stamp().endswith("Z") and len(stamps.iso_stamp()) == 24
    assert not stamps.is_results_dir_name(state.new_run_id())
    assert not state.is_run_id(stamps.results_dir_name())


def test_results_directories_sort_by_time(tmp_path: Path) -> None:
    first = results_directory(tmp_path, "scanner")
    time.sleep(0.002)
    second = results_directory(tmp_path, "scanner")
    assert first.parent == second.parent == tmp_path.resolve() / "scanner"
    assert first.name < second.name


# --- retention ---------------------------------------------------------------------------


def _runs(folder: Path, count: int) -> list[Path]:
    """``count`` run directories, oldest first, named and dated as runs are."""
    made = []
    for index in range(count):
        run = folder / f"2026-01-0{index + 1}-00-00-00-000000"
        run.mkdir(parents=True)
        when = time.time() - (count - index) * 86400
        os.utime(run, (when, when))
        made.append(run)
    return made


def test_retention_keeps_the_newest_runs_and_nothing_else_is_touched(tmp_path: Path) -> None:
    runs = _runs(tmp_path, 5)
    other = tmp_path / "notes"
    other.mkdir()
    (tmp_path / "2026-01-09-00-00-00-000000").symlink_to(other)

    removed = retention.prune(tmp_path, keep=2, max_age_days=None)

    assert sorted(removed) == runs[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        runs[3].name, runs[4].name, "2026-01-09-00-00-00-000000", "notes"]


def test_retention_by_age_spares_the_current_run(tmp_path: Path) -> None:
    runs = _runs(tmp_path, 4)
    removed = retention.prune(tmp_path, keep=100, max_age_days=2.5, current=runs[0])
    assert sorted(removed) == runs[1:2]
    assert runs[0].exists() and runs[2].exists() and runs[3].exists()


def test_retention_keeps_at_least_one_run(tmp_path: Path) -> None:
    runs = _runs(tmp_path, 2)
    assert retention.prune(tmp_path, keep=0, max_age_days=None) == [runs[0]]
    assert retention.prune(tmp_path / "missing", keep=1, max_age_days=None) == []


# --- the run state and the cleanup of a dead run -------------------------------------------


class Janitor(Runtime):
    """A runtime that only lists labelled containers and records what it was asked to undo."""

    def __init__(self, name: str, labelled: list[tuple[str, str]], usable: bool = True) -> None:
        self.name = name
        self.labelled = labelled
        self.usable = usable
        self.removed: list[str] = []
        self.undone: list[Mapping[str, Any]] = []

    def check(self) -> None:
        if not self.usable:
            raise RuntimeUnavailableError(f"{self.name}: gone")

    def resolve(self, ref: str) -> Target:
        raise NotImplementedError

    def mount_rootfs(self, target: Target, journal: Callable[[dict[str, Any]], None],
                     workdir: Path) -> contextlib.AbstractContextManager[Path]:
        raise NotImplementedError

    def undo(self, record: Mapping[str, Any]) -> None:
        self.undone.append(record)

    def image_id(self, image: str) -> str | None:
        return None

    def run_scanner(self, container: ScannerContainer) -> Completed:
        raise NotImplementedError

    def remove_container(self, name: str) -> None:
        self.removed.append(name)

    def labelled_containers(self, label: str) -> list[tuple[str, str]]:
        assert label == RUN_LABEL
        return list(self.labelled)


def _registry(*runtimes: Janitor) -> RuntimeRegistry:
    registry = RuntimeRegistry()
    for runtime in runtimes:
        registry.add(runtime.name, _factory(runtime))
    return registry


def _factory(runtime: Runtime) -> Callable[[], Runtime]:
    return lambda: runtime


def _dead_run(root: Path, run_id: str, records: list[dict[str, Any]]) -> Path:
    """What a run killed by SIGKILL leaves: its directory, an unlocked lock, its journal."""
    directory = root / run_id
    directory.mkdir(parents=True)
    (directory / "lock").write_text("12345\n")
    (directory / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records)
                                            + "not json\n")
    return directory


@contextlib.contextmanager
def _live_run(root: Path, run_id: str) -> Iterator[state.RunState]:
    with state.RunState.create(run_id, root) as run_state:
        yield run_state


def test_a_run_state_is_locked_while_alive_and_gone_after(tmp_path: Path) -> None:
    with _live_run(tmp_path, "20260101000000-0000000a") as run_state:
        run_state.journal({"runtime": "podman", "action": "mount", "id": "x"})
        assert state.live_run_ids(tmp_path) == {"20260101000000-0000000a"}
        assert state.stale_runs(tmp_path) == []
        assert state.read_journal(run_state.directory) == [
            {"action": "mount", "id": "x", "runtime": "podman"}]
    assert list(tmp_path.iterdir()) == []


def test_cleanup_undoes_a_dead_run_and_leaves_live_runs_and_strangers(tmp_path: Path) -> None:
    dead_id, live_id = "20260101000000-000000de", "20260101000000-0000011e"
    tag = state.root_tag(tmp_path)
    records = [{"runtime": "podman", "action": "mount", "id": "first"},
               {"runtime": "podman", "action": "mount", "id": "second"},
               {"runtime": "docker", "action": "mount", "id": "theirs"}]
    dead = _dead_run(tmp_path, dead_id, records)
    podman = Janitor("podman", [
        (f"atomicscan-{dead_id}-1", f"{dead_id}@{tag}"),
        (f"atomicscan-{live_id}-1", f"{live_id}@{tag}"),
        (f"atomicscan-{dead_id}-1", f"{dead_id}@someoneelse"),  # another state root
        ("victim", f"{dead_id}@{tag}"),  # our label on a container we never named so
    ])
    docker = Janitor("docker", [], usable=False)

    with _live_run(tmp_path, live_id):
        report = cleanup.clean_stale(_registry(podman, docker), tmp_path)
        assert (tmp_path / live_id).is_dir()

    assert podman.removed == [f"atomicscan-{dead_id}-1"]
    assert [r["id"] for r in podman.undone] == ["second", "first"]  # newest first
    assert docker.undone == []  # unusable: its record is left, with a warning
    assert not dead.exists()
    assert report.runs == [dead_id] and report.containers == [
        f"podman:atomicscan-{dead_id}-1"]


def test_without_a_dead_run_cleanup_asks_no_runtime(tmp_path: Path) -> None:
    class Untouchable(Janitor):
        def check(self) -> None:
            raise AssertionError("no runtime is checked when no run died")

    assert cleanup.clean_stale(_registry(Untouchable("podman", [])), tmp_path).empty


# --- the result cache ----------------------------------------------------------------------


def _image() -> Target:
    return Target(ref="localhost/app:1", id="a" * 64, type="image", runtime="podman",
                  key="image-aaaaaaaaaaaa")


def _rich_result(raw_dir: Path | None) -> ScanResult:
    return ScanResult(
        target="localhost/app:1", target_id="a" * 64, target_type="image", runtime="podman",
        scanner="fake", scan_type="check", successful=True, started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:01Z",
        findings=(Finding("CVE-1", "bad", "high", "desc", {"vendor_severity": "Important"}),),
        os={"id": "debian"}, packages=(Package("zlib", "1.3", "amd64", "deb", "pkg:deb/zlib",
                                               "zlib-src"),),
        notes=("a note",), custom={"k": [1, 2]}, raw_dir=raw_dir, counts={"fail": 1},
        files={"report": "x.html"}, scanner_image_id="s" * 64,
        target_meta={"names": ["localhost/app:1"], "labels": {"a": "b"}, "digests": ["d"]})


def test_the_cache_gives_back_what_it_was_given(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    result = _rich_result(raw)
    key = cache.cache_key(_image(), "fake", "sha256:s", "check", {"a": "1"}, ())
    assert key is not None
    cache.store(tmp_path / "cache", key, result)

    moved = Target(ref="app:1", id="a" * 64, type="image", runtime="podman", key="k")
    loaded = cache.load(tmp_path / "cache", key, moved)

    # Same content, today's name: the names in its identity are the ones it has now.
    assert loaded == result.replace(target="app:1", cached=True,
                                    target_meta={**result.target_meta, "names": []})
    assert loaded is not None and loaded.to_json()["cached"] is True
    assert list((tmp_path / "cache").glob(".*.tmp")) == []


def test_a_cached_result_whose_raw_files_are_gone_drops_them(tmp_path: Path) -> None:
    result = _rich_result(tmp_path / "pruned")
    cache.store(tmp_path, "k1", result)
    loaded = cache.load(tmp_path, "k1", _image())
    assert loaded is not None and loaded.raw_dir is None


def test_failed_results_are_not_cached(tmp_path: Path) -> None:
    cache.store(tmp_path, "k1", _rich_result(None).replace(successful=False, error="x"))
    assert cache.load(tmp_path, "k1", _image()) is None


def test_an_entry_others_could_write_is_not_trusted(tmp_path: Path) -> None:
    cache.store(tmp_path / "c", "k1", _rich_result(None))
    (tmp_path / "c" / "k1.json").chmod(0o666)
    assert cache.load(tmp_path / "c", "k1", _image()) is None


def test_the_key_follows_host_file_content_not_its_path(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text("one")
    args = {"feed": str(feed)}
    first = cache.cache_key(_image(), "fake", "sha256:s", "check", args, ("feed",))
    feed.write_text("two")
    assert cache.cache_key(_image(), "fake", "sha256:s", "check", args, ("feed",)) != first
    container = Target(ref="c", id="c" * 64, type="container", runtime="podman", key="k")
    assert cache.cache_key(container, "fake", "sha256:s", "check", {}, ()) is None


# --- the report's facts ---------------------------------------------------------------------


def test_the_failed_count_is_one_fact_of_the_report() -> None:
    results = (_rich_result(None), _rich_result(None).replace(successful=False, error="x"))
    report = Report(run_id="r", scanner="fake", scan_type="check", started_at="a",
                    finished_at="b", results_dir=None, results=results)
    assert report.failed == 1 and not report.successful
    assert report.to_json()["summary"] == {"targets": 2, "failed": 1, "findings": 2}


def test_a_written_report_reads_back_whole(tmp_path: Path) -> None:
    from atomicscan.results import Report

    report = Report(run_id="r1", scanner="fake", scan_type="check", started_at="s",
                    finished_at="f", results_dir=tmp_path, results=(_rich_result(None),),
                    extra={"merged_by": "x"}, host={"hostname": "h", "machine_id": "m" * 32},
                    scanner_args={"a": "1"}, version="0.1.0")
    again = Report.from_json(json.loads(json.dumps(report.to_json())))
    assert again == report


@pytest.mark.parametrize("doc", [{}, {"results": {}}, {"run_id": "r", "scanner": "s",
                                                        "scan_type": "t", "started_at": "a",
                                                        "finished_at": "b", "results": [1]}])
def test_a_report_of_another_shape_is_refused(doc: dict[str, object]) -> None:
    from atomicscan.results import Report

    with pytest.raises((KeyError, TypeError, ValueError)):
        Report.from_json(doc)
