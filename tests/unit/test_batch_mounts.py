"""Batched mounts (issue 17) against a fake podman and a fake docker: a batch costs a fixed
number of runtime commands, a target that can't be mounted fails alone, and every exit
path (the body raising, a cancel, a killed run undone from its journal) leaves nothing
mounted."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from test_pipeline import FakeHost, FakeRuntime, _runner, image

from atomicscan.builtin.docker import DockerRuntime
from atomicscan.builtin.podman import PodmanRuntime, mount_points
from atomicscan.errors import AtomicscanError, CommandError, MountError
from atomicscan.plan import Batch
from atomicscan.proc import Cancelled, Completed
from atomicscan.runtime import Runtime, Target


def ident(name: str) -> str:
    return (name.encode().hex() * 64)[:64]


def target(name: str, kind: str = "image", runtime: str = "podman") -> Target:
    return Target(ref=name, id=ident(name), type="container" if kind == "container" else "image",
                  runtime=runtime, key=ident(name))


class FakePodman:
    """podman's mount commands as podman 4 answers them, with a mount count per ID.

    Images: an unknown ID fails the whole command before anything is mounted; a broken one
    fails it after the IDs before it were mounted. Containers: each ID is tried, errors are
    reported at the end. Unmounting an ID nobody mounted changes nothing.
    """

    def __init__(self, images: Sequence[str] = (), containers: Sequence[str] = (), *,
                 broken: Sequence[str] = ()) -> None:
        self.known = {"image": {ident(n) for n in images},
                      "container": {ident(n) for n in containers}}
        self.broken = {ident(n) for n in broken}
        self.counts: Counter[tuple[str, str]] = Counter()
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str, check: bool = True, timeout: float = 300.0) -> Completed:
        self.calls.append(args)
        done = self._answer(list(args))
        if check and not done.ok:
            raise CommandError(("podman", *args), done.returncode, done.stderr)
        return done

    @property
    def mounted(self) -> dict[tuple[str, str], int]:
        return {key: count for key, count in self.counts.items() if count}

    def mount_commands(self) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[:2] == ("image", "mount") or c[0] == "mount"]

    def _answer(self, args: list[str]) -> Completed:
        kind = "image" if args[0] == "image" else "container"
        verb = args[1] if kind == "image" else args[0]
        ids = args[args.index("--") + 1:] if "--" in args else []
        if kind == "container" and verb == "mount" and not ids:
            rows = [{"id": i, "mountpoint": f"/storage/{i}/merged"}
                    for (k, i), n in self.counts.items() if k == "container" and n]
            return Completed(tuple(args), 0, json.dumps(rows), "")
        unknown = [i for i in ids if i not in self.known[kind]]
        if kind == "image" and unknown:
            return Completed(tuple(args), 125, "", f"Error: {unknown[0]}: image not known\n")
        errors: list[str] = []
        shown: list[dict[str, str]] = []
        for i in ids:
            if i not in self.known[kind]:
                errors.append(f"no container {i}")
            elif verb == "mount":
                if i in self.broken:
                    errors.append(f"cannot mount {i}")
                    if kind == "image":
                        break
                    continue
                self.counts[(kind, i)] += 1
                shown.append({"id": i, "mountpoint": f"/storage/{i}/merged"})
            elif self.counts[(kind, i)]:
                self.counts[(kind, i)] -= 1
            elif kind == "container":
                errors.append(f"{i}: layer is not mounted")
        if verb == "mount" and "--format" in args:
            out = json.dumps(shown)
        elif verb == "mount":
            out = "\n".join(row["mountpoint"] for row in shown)
        else:
            out = "\n".join(ids)
        return Completed(tuple(args), 125 if errors else 0, out, "\n".join(errors))


def podman_with(fake: FakePodman, monkeypatch: pytest.MonkeyPatch) -> PodmanRuntime:
    runtime = PodmanRuntime()
    monkeypatch.setattr(runtime, "_podman", fake)
    return runtime


def names(count: int, prefix: str = "img") -> list[str]:
    return [f"{prefix}{n}" for n in range(count)]


# --- podman -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 8, 32])
def test_a_batch_of_images_takes_one_mount_and_one_unmount_whatever_its_size(
        size: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakePodman(names(size))
    runtime = podman_with(fake, monkeypatch)
    targets = [target(n) for n in names(size)]
    journal: list[dict[str, Any]] = []
    with runtime.mount_rootfs_batch(targets, journal.append, tmp_path) as mounted:
        assert mounted == {t.key: Path(f"/storage/{t.id}/merged") for t in targets}
        assert len(fake.mounted) == size
    ids = [t.id for t in targets]
    assert fake.calls == [("image", "mount", "--format", "json", "--", *ids),
                          ("image", "unmount", "--", *ids)]
    assert journal == [{"runtime": "podman", "action": "image-mount", "ids": ids}]
    assert fake.mounted == {}


def test_a_batch_of_containers_takes_two_commands_to_mount_and_one_to_unmount(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakePodman(containers=names(5, "ctr"))
    runtime = podman_with(fake, monkeypatch)
    targets = [target(n, "container") for n in names(5, "ctr")]
    with runtime.mount_rootfs_batch(targets, lambda _r: None, tmp_path) as mounted:
        assert all(isinstance(path, Path) for path in mounted.values())
        assert len(mounted) == 5
    ids = [t.id for t in targets]
    assert fake.calls == [("mount", "--", *ids), ("mount", "--format", "json"),
                          ("unmount", "--", *ids)]
    assert fake.mounted == {}


def test_images_and_containers_together_stay_a_fixed_number_of_commands(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakePodman(names(6), names(6, "ctr"))
    runtime = podman_with(fake, monkeypatch)
    targets = [target(n) for n in names(6)] + [target(n, "container") for n in names(6, "ctr")]
    with runtime.mount_rootfs_batch(targets, lambda _r: None, tmp_path) as mounted:
        assert len(mounted) == 12
    assert len(fake.calls) == 5
    assert fake.mounted == {}


def test_an_image_removed_since_the_listing_fails_alone(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakePodman(["a", "b", "c"])
    runtime = podman_with(fake, monkeypatch)
    targets = [target("a"), target("gone"), target("b"), target("c")]
    with runtime.mount_rootfs_batch(targets, lambda _r: None, tmp_path) as mounted:
        assert isinstance(mounted[ident("gone")], MountError)
        assert "podman could not mount gone" in str(mounted[ident("gone")])
        assert [k for k, v in mounted.items() if isinstance(v, Path)] == [
            ident("a"), ident("b"), ident("c")]
        assert set(fake.mounted) == {("image", ident(n)) for n in "abc"}
    assert fake.mounted == {}


def test_a_batch_that_failed_half_way_is_undone_then_mounted_one_by_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # podman mounted "a" before "bad" failed: "a" must not keep a mount it never releases.
    fake = FakePodman(["a", "bad", "c"], broken=["bad"])
    runtime = podman_with(fake, monkeypatch)
    targets = [target("a"), target("bad"), target("c")]
    with runtime.mount_rootfs_batch(targets, lambda _r: None, tmp_path) as mounted:
        assert isinstance(mounted[ident("bad")], AtomicscanError)
        assert fake.mounted == {("image", ident("a")): 1, ("image", ident("c")): 1}
    assert fake.mounted == {}


def test_a_container_that_fails_to_mount_fails_alone(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakePodman(containers=["x", "bad", "y"], broken=["bad"])
    runtime = podman_with(fake, monkeypatch)
    targets = [target(n, "container") for n in ("x", "bad", "y")]
    with runtime.mount_rootfs_batch(targets, lambda _r: None, tmp_path) as mounted:
        assert isinstance(mounted[ident("bad")], MountError)
        assert isinstance(mounted[ident("x")], Path) and isinstance(mounted[ident("y")], Path)
        assert fake.mounted == {("container", ident("x")): 1, ("container", ident("y")): 1}
    assert fake.mounted == {}


def test_an_error_in_the_body_still_unmounts_the_whole_batch(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakePodman(names(4), names(2, "ctr"))
    runtime = podman_with(fake, monkeypatch)
    targets = [target(n) for n in names(4)] + [target(n, "container") for n in names(2, "ctr")]
    with pytest.raises(RuntimeError, match="scanner blew up"), \
            runtime.mount_rootfs_batch(targets, lambda _r: None, tmp_path):
        raise RuntimeError("scanner blew up")
    assert fake.mounted == {}


def test_a_cancelled_run_mounts_nothing_more(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    fake = FakePodman(names(3))
    runtime = podman_with(fake, monkeypatch)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled), runtime.mount_rootfs_batch(
            [target(n) for n in names(3)], lambda _r: None, tmp_path, cancel=cancel):
        pass
    assert fake.mounted == {}
    assert fake.mount_commands() == []


def test_a_killed_run_is_undone_from_its_journal(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    # SIGKILL: the context manager never exits; `cleanup` replays the journal in reverse.
    fake = FakePodman(["a", "b", "bad", "c"], ["x", "y"], broken=["bad"])
    runtime = podman_with(fake, monkeypatch)
    journal: list[dict[str, Any]] = []
    targets = [target(n) for n in ("a", "b", "bad", "c")] + [
        target(n, "container") for n in ("x", "y")]
    # Kept referenced: a collected generator would run its `finally`, which SIGKILL never does.
    killed = runtime.mount_rootfs_batch(targets, journal.append, tmp_path)
    killed.__enter__()
    assert len(fake.mounted) == 5
    survivor = podman_with(fake, monkeypatch)
    for record in reversed([json.loads(json.dumps(r)) for r in journal]):
        assert record["runtime"] == "podman"
        survivor.undo(record)
    assert fake.mounted == {}
    fake.calls.clear()
    del killed


def test_undo_of_a_batch_record_takes_one_command_or_one_per_id_when_that_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePodman(["a", "b"])
    runtime = podman_with(fake, monkeypatch)
    fake.counts.update({("image", ident("a")): 1, ("image", ident("b")): 1})
    runtime.undo({"action": "image-mount", "ids": [ident("a"), ident("b")]})
    assert fake.mounted == {} and len(fake.calls) == 1
    # One ID no longer exists: podman unmounts none of them, so each is asked alone.
    fake.counts.update({("image", ident("a")): 1})
    runtime.undo({"action": "image-mount", "ids": [ident("gone"), ident("a")]})
    assert fake.mounted == {}
    # The record of one target (older runs, and the one-by-one fallback) still works.
    fake.counts.update({("image", ident("b")): 1})
    runtime.undo({"action": "image-mount", "id": ident("b")})
    runtime.undo({"action": "image-mount", "ids": "not a list", "id": 7})
    runtime.undo({"action": "something-else", "ids": [ident("a")]})
    assert fake.mounted == {}


def test_mount_points_keep_only_well_formed_rows_for_the_ids_asked() -> None:
    rows = json.dumps([
        {"id": "a", "mountpoint": "/m/a"}, {"id": "b", "mountpoint": "relative"},
        {"id": "c", "mountpoint": "/m/c\n/etc"}, {"id": "d", "mountpoint": 5},
        {"id": "other", "mountpoint": "/m/other"}, "junk", {"mountpoint": "/m/x"},
        {"id": ["a"], "mountpoint": "/m/list"}, {"id": {"a": 1}, "mountpoint": "/m/dict"}])
    assert mount_points(rows, ["a", "b", "c", "d", "e"]) == {"a": Path("/m/a")}
    assert mount_points("not json", ["a"]) == {}
    assert mount_points('{"id": "a"}', ["a"]) == {}


def test_unparsable_output_falls_back_to_one_mount_per_target(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakePodman(names(3))
    runtime = podman_with(fake, monkeypatch)

    def garbled(*args: str, check: bool = True, timeout: float = 300.0) -> Completed:
        done = fake(*args, check=check, timeout=timeout)
        return Completed(done.argv, done.returncode, "[{", "") if "json" in args else done

    monkeypatch.setattr(runtime, "_podman", garbled)
    targets = [target(n) for n in names(3)]
    with runtime.mount_rootfs_batch(targets, lambda _r: None, tmp_path) as mounted:
        assert all(isinstance(p, Path) for p in mounted.values())
        assert sum(fake.counts.values()) == 3
    assert fake.mounted == {}


# --- docker -------------------------------------------------------------------------------


def test_docker_inspects_a_batch_once_and_a_vanished_target_fails_alone(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runtime = DockerRuntime()
    present = {ident(n) for n in ("a", "b", "c")}
    calls: list[tuple[str, ...]] = []

    def docker(*args: str, check: bool = True, timeout: float = 300.0) -> Completed:
        calls.append(args)
        ids = args[args.index("--") + 1:] if "--" in args else list(args[2:])
        rows = [{"Id": f"sha256:{i}", "GraphDriver": {}} for i in ids if i in present]
        code = 0 if len(rows) == len(ids) else 1
        if check and code:
            raise CommandError(("docker", *args), code, "Error: No such image")
        return Completed(("docker", *args), code, json.dumps(rows), "")

    mounts: list[str] = []

    @contextmanager
    def fake_mount(target: Target, inspect: Mapping[str, Any],
                   journal: Callable[[dict[str, Any]], None], workdir: Path) -> Iterator[Path]:
        assert inspect["Id"] == f"sha256:{target.id}"
        mounts.append(target.id)
        yield workdir / "rootfs"
        mounts.remove(target.id)

    monkeypatch.setattr(runtime, "_docker", docker)
    monkeypatch.setattr(runtime, "_mount", fake_mount)
    targets = [target(n, runtime="docker") for n in ("a", "gone", "b", "c")]
    with runtime.mount_rootfs_batch(targets, lambda _r: None, tmp_path) as mounted:
        assert isinstance(mounted[ident("gone")], MountError)
        assert mounted[ident("a")] == tmp_path / ident("a") / "rootfs"
        assert len(mounts) == 3
    assert mounts == []
    inspects = [c for c in calls if c[1] == "inspect"]
    # One for the batch, one more for the target it left out (for that target's own error).
    assert inspects == [("image", "inspect", "--", *[t.id for t in targets]),
                        ("image", "inspect", ident("gone"))]


# --- the batch runner -----------------------------------------------------------------------


class CountingRuntime(FakeRuntime):
    """The fake runtime of test_pipeline, counting how each batch was mounted."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.batch_mounts: list[list[str]] = []

    def mount_rootfs_batch(self, targets: Sequence[Target],
                           journal: Callable[[dict[str, Any]], None], workdir: Path, *,
                           cancel: threading.Event | None = None) -> Any:
        self.batch_mounts.append([t.ref for t in targets])
        return Runtime.mount_rootfs_batch(self, targets, journal, workdir, cancel=cancel)


def test_the_runner_mounts_each_batch_with_one_call_and_a_failure_stays_alone(
        tmp_path: Path) -> None:
    podman = CountingRuntime("podman", rootfs=tmp_path / "roots", unmountable=["gone"])
    fake_host = FakeHost()
    results = _runner(tmp_path, fake_host).scan(
        Batch(podman, (image("ok"), image("gone"), image("also")), 1))
    assert podman.batch_mounts == [["ok", "gone", "also"]]
    by_ref = {r.target: r for r in results}
    assert by_ref["ok"].successful and by_ref["also"].successful
    assert by_ref["gone"].error == "cannot mount gone: gone vanished"
    assert len(fake_host.binds) == 2


def test_a_batch_of_directories_only_asks_the_runtime_for_nothing(tmp_path: Path) -> None:
    podman = CountingRuntime("podman", rootfs=tmp_path / "roots")
    tree = tmp_path / "tree"
    tree.mkdir()
    rootfs = Target(ref=str(tree), id=str(tree), type="rootfs", runtime=None, key="rootfs-1")
    results = _runner(tmp_path, FakeHost()).scan(Batch(podman, (rootfs,), 1))
    assert podman.batch_mounts == []
    assert [r.successful for r in results] == [True]
