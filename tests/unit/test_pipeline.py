"""The scan pipeline's orchestration with a fake runtime and a fake host (fast tier: no
root, no runtime, no subprocess): resolution, planning, batches, results, the whole run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from atomicscan import cache, host, plugins, stamps
from atomicscan.batch import BatchJob, BatchRunner, container_args, run_batches
from atomicscan.errors import (
    AmbiguousTargetError,
    MountError,
    RuntimeUnavailableError,
    ScannerImageMissingError,
    TargetNotFoundError,
    UsageError,
)
from atomicscan.hookspecs import hookimpl
from atomicscan.plan import Batch, auto_batch_size, make_plan, scanner_image_ids
from atomicscan.plugins import Plugins
from atomicscan.proc import Completed
from atomicscan.request import ScanRequest
from atomicscan.resolve import RuntimeChoice, find_targets, resolve, runtimes_to_search
from atomicscan.results import ScanResult
from atomicscan.runtime import Runtime, RuntimeRegistry, ScannerContainer, Target
from atomicscan.scan import ScanRun
from atomicscan.scanners import Scanner, ScannerRegistry, ScanType
from atomicscan.state import RunState

SCANNER_IMAGE = "localhost/fake-scanner:latest"


def image(name: str, runtime: str = "podman", type_: str = "image") -> Target:
    ident = hashlib.sha256(f"{runtime}-{name}".encode()).hexdigest()
    return Target(ref=name, id=ident, type="container" if type_ == "container" else "image",
                  runtime=runtime, key=f"{type_}-{ident[:12]}")


class FakeRuntime(Runtime):
    """A runtime that holds what it is given and "runs" a scanner by writing its output."""

    def __init__(self, name: str, holds: Sequence[Target] = (), *, why_unusable: str = "",
                 scanner_images: Sequence[str] = (SCANNER_IMAGE,), rootfs: Path | None = None,
                 unmountable: Sequence[str] = (), silent: Sequence[str] = (),
                 ambiguous: Sequence[str] = (), listed: Sequence[Target] = ()) -> None:
        self.name = name
        self.holds = {t.ref: t for t in holds}
        self.why_unusable = why_unusable
        self.scanner_images = set(scanner_images)
        self.rootfs = rootfs
        self.unmountable = set(unmountable)
        self.silent = set(silent)
        self.ambiguous = set(ambiguous)
        self.listed = list(listed)
        self.runs: list[ScannerContainer] = []
        self.removed: list[str] = []
        self.undone: list[Mapping[str, Any]] = []
        self.labelled: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def check(self) -> None:
        if self.why_unusable:
            raise RuntimeUnavailableError(self.why_unusable)

    def resolve(self, ref: str) -> Target:
        if ref in self.ambiguous:
            raise AmbiguousTargetError(ref, ["a", "b"], f"{ref!r} names several")
        if ref not in self.holds:
            raise TargetNotFoundError(ref, f"{ref} not in {self.name}")
        return self.holds[ref]

    @contextlib.contextmanager
    def _mounted(self, target: Target) -> Iterator[Path]:
        assert self.rootfs is not None
        root = self.rootfs / target.key
        root.mkdir(parents=True, exist_ok=True)
        yield root

    def mount_rootfs(self, target: Target, journal: Callable[[dict[str, Any]], None],
                     workdir: Path) -> contextlib.AbstractContextManager[Path]:
        journal({"runtime": self.name, "action": "mount", "id": target.id})
        if target.ref in self.unmountable:
            raise MountError(f"{target.ref} vanished")
        return self._mounted(target)

    def list_targets(self, *, images: bool, containers: bool,
                     dangling: bool = False) -> list[Target]:
        return [t for t in self.listed
                if (images and t.type == "image") or (containers and t.type == "container")]

    def undo(self, record: Mapping[str, Any]) -> None:
        self.undone.append(record)

    def image_id(self, image: str) -> str | None:
        return f"sha256:{self.name}-scanner" if image in self.scanner_images else None

    def run_scanner(self, container: ScannerContainer) -> Completed:
        with self.lock:
            self.runs.append(container)
        scanout = next(b.source for b in container.binds if b.destination == "/scanout")
        for entry in json.loads(container.env["ATOMICSCAN_TARGETS"]):
            if entry["target"] in self.silent:
                continue
            out = scanout / entry["key"]
            out.mkdir()
            (out / "json").write_text(json.dumps({
                "Successful": "true", "Scan Type": container.env["ATOMICSCAN_SCAN_TYPE"],
                "Vulnerabilities": [{"Title": f"found in {entry['target']}",
                                     "Severity": "Important"}]}))
        return Completed(("fake",), 0, "", "")

    def remove_container(self, name: str) -> None:
        self.removed.append(name)

    def labelled_containers(self, label: str) -> list[tuple[str, str]]:
        return list(self.labelled)


class FakeHost:
    """Plain directories instead of mounts: a "bind" shows the source itself."""

    def __init__(self) -> None:
        self.binds: list[tuple[Path, Path, host.Inode | None]] = []
        self.scratch: list[tuple[Path, int, int | None]] = []
        self.copies: list[tuple[str, Path]] = []

    def require_root(self) -> None:
        return None

    @contextlib.contextmanager
    def bind_readonly(self, source: Path, mountpoint: Path, *,
                      expect: host.Inode | None = None) -> Iterator[Path]:
        self.binds.append((source, mountpoint, expect))
        yield source

    @contextlib.contextmanager
    def scratch_tmpfs(self, mountpoint: Path, size_bytes: int, uid: int, gid: int, *,
                      inodes: int | None = None) -> Iterator[Path]:
        mountpoint.mkdir(parents=True)
        self.scratch.append((mountpoint, size_bytes, inodes))
        yield mountpoint

    def pin(self, path: Path) -> tuple[Path, host.Inode, int]:
        return host.pin(path)

    def pin_host_path(self, source: str, what: str) -> tuple[Path, host.Inode]:
        return Path(source), (0, 0)

    def copy_host_file(self, value: str, what: str, copy: Path, limit: int) -> None:
        self.copies.append((value, copy))
        shutil.copyfile(value, copy)


def _factory(runtime: Runtime) -> Callable[[], Runtime]:
    return lambda: runtime


def scanner(*, host_files: tuple[str, ...] = ()) -> Scanner:
    return Scanner(name="fake", image=SCANNER_IMAGE, default_scan="check", origin="test",
                   scan_types={"check": ScanType("check", ("scan",), host_files=host_files)})


def choice(*runtimes: FakeRuntime, unusable: Mapping[str, str] | None = None) -> RuntimeChoice:
    return RuntimeChoice(tuple(runtimes), dict(unusable or {}))


def registry(*runtimes: FakeRuntime) -> RuntimeRegistry:
    runtimes_registry = RuntimeRegistry()
    for runtime in runtimes:
        runtimes_registry.add(runtime.name, _factory(runtime))
    return runtimes_registry


# --- resolution -------------------------------------------------------------------------


def test_the_default_runtime_is_searched_first_and_unusable_ones_say_why() -> None:
    podman = FakeRuntime("podman")
    found = runtimes_to_search(registry(FakeRuntime("docker"), podman,
                                        FakeRuntime("zzz", why_unusable="zzz: gone")), None)
    assert [r.name for r in found.usable] == ["podman", "docker"]
    assert found.unusable == {"zzz": "zzz: gone"}


def test_no_usable_runtime_lists_every_reason_default_first() -> None:
    with pytest.raises(RuntimeUnavailableError) as caught:
        runtimes_to_search(registry(FakeRuntime("docker", why_unusable="docker: no daemon"),
                                    FakeRuntime("podman", why_unusable="podman: no binary")),
                           None)
    assert str(caught.value) == ("no container runtime is usable: podman: no binary; "
                                 "docker: no daemon")


def test_a_runtime_asked_for_by_name_must_work() -> None:
    broken = FakeRuntime("docker", why_unusable="docker: no daemon")
    with pytest.raises(RuntimeUnavailableError, match="no daemon"):
        runtimes_to_search(registry(FakeRuntime("podman"), broken), "docker")
    assert runtimes_to_search(registry(FakeRuntime("podman"), broken), "podman").unusable == {}


def test_targets_keep_the_order_given_and_group_by_the_runtime_that_holds_them() -> None:
    podman = FakeRuntime("podman", [image("a"), image("c")])
    docker = FakeRuntime("docker", [image("b", "docker")])
    found = find_targets(ScanRequest(targets=("c", "b", "a", "c")), choice(podman, docker))
    assert [t.ref for t in found.targets] == ["c", "a", "b"]
    assert list(found.groups) == ["podman", "docker"]


def test_a_target_in_two_runtimes_is_ambiguous_unless_all_runtimes_are_asked() -> None:
    podman = FakeRuntime("podman", [image("a")])
    docker = FakeRuntime("docker", [image("a", "docker")])
    with pytest.raises(UsageError, match="exists in both podman and docker"):
        find_targets(ScanRequest(targets=("a",)), choice(podman, docker))
    found = find_targets(ScanRequest(targets=("a",), runtime="all"), choice(podman, docker))
    assert [t.runtime for t in found.targets] == ["podman"]


def test_a_missing_target_names_the_runtimes_not_searched() -> None:
    with pytest.raises(TargetNotFoundError) as caught:
        find_targets(ScanRequest(targets=("nope",)),
                     choice(FakeRuntime("podman"), unusable={"docker": "docker: no daemon"}))
    assert "in podman" in str(caught.value)
    assert str(caught.value).endswith("(not searched: docker: no daemon)")


def test_the_first_bad_reference_in_the_order_given_is_reported() -> None:
    podman = FakeRuntime("podman", [image("good")], ambiguous=["twice"])
    with pytest.raises(TargetNotFoundError, match="'missing'"):
        find_targets(ScanRequest(targets=("good", "missing", "twice")), choice(podman))
    with pytest.raises(AmbiguousTargetError):
        find_targets(ScanRequest(targets=("good", "twice", "missing")), choice(podman))


def test_listed_targets_and_directories_join_without_duplicates(tmp_path: Path) -> None:
    podman = FakeRuntime("podman", [image("a")], listed=[image("a"), image("b"),
                                                         image("c", type_="container")])
    found = find_targets(ScanRequest(targets=("a",), images=True, rootfs=(tmp_path,)),
                         choice(podman))
    assert [(t.ref, t.type) for t in found.targets] == [
        ("a", "image"), ("b", "image"), (str(tmp_path), "rootfs")]


def test_nothing_to_scan_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="nothing to scan"):
        find_targets(ScanRequest(), choice(FakeRuntime("podman")))
    assert find_targets(ScanRequest(images=True), choice(FakeRuntime("podman"))).groups == {}


def test_resolve_chooses_runtimes_then_finds_targets() -> None:
    podman = FakeRuntime("podman", [image("a")])
    found = resolve(ScanRequest(targets=("a",)),
                    registry(podman, FakeRuntime("docker", why_unusable="docker: down")))
    assert found.targets == [image("a")] and found.unusable == {"docker": "docker: down"}


# --- planning -----------------------------------------------------------------------------


def _groups(*runtimes: tuple[FakeRuntime, list[Target]]) -> dict[str, tuple[Runtime,
                                                                              list[Target]]]:
    return {runtime.name: (runtime, targets) for runtime, targets in runtimes}


def test_batches_cut_each_runtime_s_targets_and_count_from_one(tmp_path: Path) -> None:
    podman, docker = FakeRuntime("podman"), FakeRuntime("docker")
    groups = _groups((podman, [image(n) for n in "abcde"]),
                     (docker, [image("f", "docker")]))
    plan = make_plan(groups, scanner(), "check", scanner_image_ids(groups, scanner()),
                     tmp_path, scanner_args={}, batch_size=2)
    assert [(b.runtime.name, [t.ref for t in b.targets], b.index) for b in plan.batches] == [
        ("podman", ["a", "b"], 1), ("podman", ["c", "d"], 2), ("podman", ["e"], 3),
        ("docker", ["f"], 4)]
    assert plan.cached == []


@pytest.mark.parametrize(("targets", "jobs", "size"), [
    (1, 4, 8), (100, 4, 8), (250, 4, 16), (500, 4, 32), (1000, 4, 63), (5000, 4, 64),
    (1000, 8, 32), (1000, 1, 64)])
def test_a_big_run_gets_bigger_batches_when_no_size_is_given(
    tmp_path: Path, targets: int, jobs: int, size: int
) -> None:
    assert auto_batch_size(targets, jobs) == size
    podman = FakeRuntime("podman")
    groups = _groups((podman, [image(f"i{n}") for n in range(targets)]))
    plan = make_plan(groups, scanner(), "check", scanner_image_ids(groups, scanner()),
                     tmp_path, scanner_args={}, jobs=jobs)
    assert max(len(b.targets) for b in plan.batches) == min(size, targets)
    assert sum(len(b.targets) for b in plan.batches) == targets
    given = make_plan(groups, scanner(), "check", scanner_image_ids(groups, scanner()),
                      tmp_path, scanner_args={}, jobs=jobs, batch_size=3)
    assert max(len(b.targets) for b in given.batches) == min(3, targets)


def test_a_missing_scanner_image_stops_the_run_with_the_build_hint() -> None:
    groups = _groups((FakeRuntime("docker", scanner_images=()), [image("a", "docker")]))
    with pytest.raises(ScannerImageMissingError, match="docker build -t"):
        scanner_image_ids(groups, scanner())


def _stored(cache_root: Path, target: Target, **changes: Any) -> ScanResult:
    """A successful result for ``target`` kept in the cache as a run would keep it."""
    groups = _groups((FakeRuntime("podman"), [target]))
    ids = {"podman": "sha256:podman-scanner"}
    plan = make_plan(groups, scanner(), "check", ids, cache_root, scanner_args={})
    result = ScanResult(target=target.ref, target_id=target.id, target_type=target.type,
                        runtime=target.runtime, scanner="fake", scan_type="check",
                        successful=True, started_at="s", finished_at="f").replace(**changes)
    key = plan.cache_key(result)
    assert key is not None
    cache.store(cache_root, key, result)
    return result


def test_the_cache_plan_hit_miss_and_no_cache(tmp_path: Path) -> None:
    hit, miss, container = image("hit"), image("miss"), image("box", type_="container")
    _stored(tmp_path, hit)
    groups = _groups((FakeRuntime("podman"), [hit, miss, container]))
    ids = {"podman": "sha256:podman-scanner"}

    plan = make_plan(groups, scanner(), "check", ids, tmp_path, scanner_args={})
    assert [r.target for r in plan.cached] == ["hit"] and plan.cached[0].cached
    assert [t.ref for b in plan.batches for t in b.targets] == ["miss", "box"]
    assert set(plan.keys) == {("podman", miss.id)}  # containers are never cached

    fresh = make_plan(groups, scanner(), "check", ids, tmp_path, scanner_args={},
                      use_cache=False)
    assert fresh.cached == []
    assert [t.ref for b in fresh.batches for t in b.targets] == ["hit", "miss", "box"]
    assert set(fresh.keys) == {("podman", hit.id), ("podman", miss.id)}  # still kept

    remediating = make_plan(groups, scanner(), "check", ids, tmp_path, scanner_args={},
                            remediate=True)
    assert remediating.cached == [] and remediating.keys == {}


def test_another_scanner_image_or_other_arguments_miss_the_cache(tmp_path: Path) -> None:
    target = image("a")
    _stored(tmp_path, target)
    groups = _groups((FakeRuntime("podman"), [target]))
    assert make_plan(groups, scanner(), "check", {"podman": "sha256:newer"}, tmp_path,
                     scanner_args={}).cached == []
    assert make_plan(groups, scanner(), "check", {"podman": "sha256:podman-scanner"},
                     tmp_path, scanner_args={"x": "1"}).cached == []


def test_an_entry_of_an_older_cache_format_is_a_miss(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    target = image("a")
    monkeypatch.setattr(cache, "VERSION", cache.VERSION - 1)
    _stored(tmp_path, target)
    monkeypatch.undo()
    groups = _groups((FakeRuntime("podman"), [target]))
    plan = make_plan(groups, scanner(), "check", {"podman": "sha256:podman-scanner"},
                     tmp_path, scanner_args={})
    assert plan.cached == [] and len(plan.batches) == 1


def test_a_corrupt_or_failed_entry_is_a_miss(tmp_path: Path) -> None:
    target = image("a")
    _stored(tmp_path, target)
    entry = next(tmp_path.glob("*.json"))
    groups = _groups((FakeRuntime("podman"), [target]))
    ids = {"podman": "sha256:podman-scanner"}
    for text in ("{not json", json.dumps({"successful": False}), "[1]"):
        entry.write_text(text)
        assert make_plan(groups, scanner(), "check", ids, tmp_path,
                         scanner_args={}).cached == []


# --- batches ------------------------------------------------------------------------------


def _runner(tmp_path: Path, fake_host: FakeHost, *, args: Mapping[str, str] | None = None,
            the_scanner: Scanner | None = None) -> BatchRunner:
    job = BatchJob(scanner=the_scanner or scanner(), scan_type="check", run_id="r1",
                   timeout=60.0, scanner_args=dict(args or {}))
    state = tmp_path / "state"
    state.mkdir()
    results = tmp_path / "results"
    results.mkdir()
    return BatchRunner(job, fake_host, RunState("r1", state), results,
                       progress=lambda message: None, cancel=threading.Event())


def test_a_batch_mounts_through_the_host_it_is_given(tmp_path: Path) -> None:
    podman = FakeRuntime("podman", rootfs=tmp_path / "roots")
    fake_host = FakeHost()
    targets = (image("a"), image("b"))
    results = _runner(tmp_path, fake_host).scan(Batch(podman, targets, 1))

    assert [(r.target, r.successful) for r in results] == [("a", True), ("b", True)]
    assert results[0].findings[0].severity == "high"
    [container] = podman.runs
    assert container.name == "atomicscan-r1-1" and container.user == "65534:65534"
    assert {b.destination for b in container.binds} == {
        "/scanin/" + targets[0].key, "/scanin/" + targets[1].key, "/scanmeta", "/scanout"}
    assert [b.read_only for b in container.binds if b.destination == "/scanout"] == [False]
    assert all(expect is None for _s, _m, expect in fake_host.binds)
    [(_point, size, inodes)] = fake_host.scratch
    assert size > 0 and inodes is not None and inodes > 2 * 10_000
    meta = json.loads((tmp_path / "state" / "batch-1" / "meta" / "targets.json").read_text())
    assert [entry["target"] for entry in meta] == ["a", "b"]


def test_a_target_that_fails_fails_alone(tmp_path: Path) -> None:
    podman = FakeRuntime("podman", rootfs=tmp_path / "roots", unmountable=["gone"],
                         silent=["mute"])
    results = _runner(tmp_path, FakeHost()).scan(
        Batch(podman, (image("ok"), image("gone"), image("mute")), 1))
    by_ref = {r.target: r for r in results}
    assert by_ref["ok"].successful
    assert by_ref["gone"].error == "cannot mount gone: gone vanished"
    assert not by_ref["mute"].successful and "wrote no output" in (by_ref["mute"].error or "")
    assert [t["target"] for t in json.loads(podman.runs[0].env["ATOMICSCAN_TARGETS"])] == [
        "ok", "mute"]


def test_a_batch_whose_targets_all_fail_runs_no_container(tmp_path: Path) -> None:
    podman = FakeRuntime("podman", rootfs=tmp_path / "roots", unmountable=["x"])
    results = _runner(tmp_path, FakeHost()).scan(Batch(podman, (image("x"),), 1))
    assert [r.successful for r in results] == [False] and podman.runs == []


def test_a_directory_is_pinned_by_its_inode(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    target = Target(ref=str(tree), id=str(tree), type="rootfs", runtime=None, key="rootfs-1")
    fake_host = FakeHost()
    results = _runner(tmp_path, fake_host).scan(Batch(FakeRuntime("podman"), (target,), 1))
    assert results[0].successful
    info = tree.stat()
    assert fake_host.binds[0] == (tree, tmp_path / "state" / "batch-1" / "scanin" / "rootfs-1",
                                  (info.st_dev, info.st_ino))


def test_a_directory_swapped_for_a_symlink_fails_alone(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "tree").symlink_to(tmp_path / "elsewhere")
    target = Target(ref="tree", id=str(tmp_path / "tree"), type="rootfs", runtime=None,
                    key="rootfs-1")
    results = _runner(tmp_path, FakeHost()).scan(Batch(FakeRuntime("podman"), (target,), 1))
    assert not results[0].successful and "cannot mount tree" in (results[0].error or "")


def test_host_files_are_copied_and_named_by_their_copy_inside(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text("<feed/>")
    fake_host = FakeHost()
    the_scanner = scanner(host_files=("feed",))
    runner = _runner(tmp_path, fake_host, args={"feed": str(feed), "level": "2"},
                     the_scanner=the_scanner)
    podman = FakeRuntime("podman", rootfs=tmp_path / "roots")
    runner.scan(Batch(podman, (image("a"),), 1))
    [container] = podman.runs
    assert json.loads(container.env["ATOMICSCAN_SCANNER_ARGS"]) == {
        "feed": "/scanhost/feed/feed.xml", "level": "2"}
    [(value, copy)] = fake_host.copies
    assert value == str(feed) and copy.read_text() == "<feed/>"
    assert any(b.destination == "/scanhost/feed/feed.xml" for b in container.binds)


def test_remediate_is_an_argument_the_container_sees() -> None:
    assert container_args(scanner(), "check", {"a": "1"}, remediate=True) == {
        "a": "1", "remediate": "true"}


def test_a_runtime_refusing_to_start_fails_the_batch_and_removes_its_container(
        tmp_path: Path) -> None:
    class Refusing(FakeRuntime):
        def run_scanner(self, container: ScannerContainer) -> Completed:
            raise UsageError("a bind that could add options")

    refusing = Refusing("podman", rootfs=tmp_path / "roots")
    results = _runner(tmp_path, FakeHost()).scan(Batch(refusing, (image("a"),), 1))
    assert refusing.removed == ["atomicscan-r1-1"]
    assert results[0].error == ("the scanner exited with status 1: the scanner was not "
                                "started: a bind that could add options")


def test_batches_run_concurrently_and_every_result_is_reported() -> None:
    seen: list[str] = []
    batches = [Batch(FakeRuntime("podman"), (image(name),), index)
               for index, name in enumerate("abcd", start=1)]

    def scan(batch: Batch) -> list[ScanResult]:
        target = batch.targets[0]
        return [ScanResult(target=target.ref, target_id=target.id, target_type="image",
                           runtime="podman", scanner="fake", scan_type="check",
                           successful=True, started_at="s", finished_at="f")]

    results = run_batches(batches, scan, jobs=3, cancel=threading.Event(),
                          on_result=lambda result: seen.append(result.target))
    assert sorted(seen) == list("abcd") and len(results) == 4


def test_a_failing_batch_cancels_the_others() -> None:
    cancel = threading.Event()

    def scan(batch: Batch) -> list[ScanResult]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batches([Batch(FakeRuntime("podman"), (image("a"),), 1)], scan, jobs=1,
                    cancel=cancel, on_result=lambda result: None)
    assert cancel.is_set()


# --- the whole run ------------------------------------------------------------------------


class _Shapes:
    """A plugin that notes each result it sees, to show cached results are processed too."""

    def __init__(self, runtimes: Sequence[FakeRuntime]) -> None:
        self.runtimes = runtimes
        self.seen: list[tuple[str, bool]] = []

    @hookimpl
    def atomicscan_add_runtimes(self, registry: RuntimeRegistry) -> None:
        for runtime in self.runtimes:
            registry.add(runtime.name, _factory(runtime))

    @hookimpl
    def atomicscan_add_scanners(self, registry: ScannerRegistry) -> None:
        registry.add(scanner())

    @hookimpl
    def atomicscan_process_result(self, result: ScanResult) -> ScanResult:
        self.seen.append((result.target, result.cached))
        return result.replace(notes=(*result.notes, "shaped"))


@pytest.fixture
def run_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(plugins.BLOCK_ENV, "atomicscan.builtin.podman,atomicscan.builtin.docker,"
                                          "atomicscan.builtin.definitions")
    monkeypatch.setenv("ATOMICSCAN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ATOMICSCAN_CONFIG_DIR", str(tmp_path / "no-config"))
    monkeypatch.delenv("ATOMICSCAN_CACHE_DIR", raising=False)
    return tmp_path


def test_a_whole_run_with_fakes_then_a_cached_rerun(run_env: Path) -> None:
    podman = FakeRuntime("podman", [image("b"), image("a"), image("c", type_="container")],
                         rootfs=run_env / "roots", silent=["c"])
    docker = FakeRuntime("docker", why_unusable="docker: no daemon")
    shapes = _Shapes([podman, docker])
    loaded = Plugins.load([shapes], entry_points=False)
    request = ScanRequest(targets=("c", "b", "a"), output_dir=run_env / "results",
                          batch_size=1, jobs=2)
    streamed: list[str] = []
    totals: list[int] = []

    report = ScanRun(loaded, request, on_result=lambda r: streamed.append(r.target),
                     on_total=totals.append, host=FakeHost()).execute()

    assert [r.target for r in report.results] == ["c", "b", "a"]
    assert [r.successful for r in report.results] == [False, True, True]
    assert report.failed == 1 and totals == [3] and sorted(streamed) == ["a", "b", "c"]
    assert all("shaped" in r.notes for r in report.results)
    assert report.results_dir is not None and report.results_dir.parent.name == "fake"
    assert stamps.is_results_dir_name(report.results_dir.name)
    written = json.loads((report.results_dir / "report.json").read_text())
    assert written["summary"]["failed"] == 1 and written["run_id"] == report.run_id
    assert (report.results_dir.stat().st_mode & 0o777) == 0o700
    assert list((run_env / "state").iterdir()) == []  # the run state is gone with the run
    assert len(podman.runs) == 3

    again = ScanRun(loaded, request, host=FakeHost()).execute()
    assert [(r.target, r.cached) for r in again.results] == [
        ("c", False), ("b", True), ("a", True)]
    assert len(podman.runs) == 4  # only the container was scanned again
    # The rerun is dated by when it ran, not by the cached scans it reused.
    assert again.started_at >= report.finished_at
    assert again.host.get("hostname") and again.version
    assert all(r.scanner_image_id == "sha256:podman-scanner" for r in again.results)
    assert ("b", True) in shapes.seen and ("a", True) in shapes.seen


def test_a_run_checks_before_it_mounts_anything(run_env: Path) -> None:
    podman = FakeRuntime("podman", [image("a")], scanner_images=(), rootfs=run_env / "roots")
    loaded = Plugins.load([_Shapes([podman])], entry_points=False)
    with pytest.raises(ScannerImageMissingError):
        ScanRun(loaded, ScanRequest(targets=("a",), output_dir=run_env / "results"),
                host=FakeHost()).execute()
    assert podman.runs == [] and not (run_env / "results").exists()
