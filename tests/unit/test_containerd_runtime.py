"""The containerd runtime against a fake ``ctr``: listings, names, mount plans, undo records."""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from atomicscan import (
    AmbiguousTargetError,
    Bind,
    Completed,
    MountError,
    Runtime,
    RuntimeRegistry,
    RuntimeUnavailableError,
    ScannerContainer,
    TargetNotFoundError,
    isolation_flags,
)
from atomicscan.builtin import containerd, containerd_spec
from atomicscan.builtin.containerd import ContainerdRuntime

ADDRESS = "/run/test-containerd/containerd.sock"
SNAPSHOTS = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Image:
    """An image as the fake stores it: its layers, config and manifest."""

    layers: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> str:
        return json.dumps({"architecture": "amd64", "os": "linux",
                           "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "User": "app",
                                      "Labels": self.labels},
                           "rootfs": {"type": "layers", "diff_ids": list(self.layers)}})

    @property
    def manifest(self) -> str:
        return json.dumps({"schemaVersion": 2,
                           "config": {"digest": digest(self.config)},
                           "layers": [{"digest": layer} for layer in self.layers]})

    @property
    def id(self) -> str:
        return digest(self.config).removeprefix("sha256:")


DEBIAN = Image((digest("debian-layer"),), {"vendor": "test"})
APP = Image((digest("debian-layer"), digest("app-layer")))


@dataclass
class Container:
    image: str
    labels: dict[str, str] = field(default_factory=dict)
    status: str = "RUNNING"
    snapshot: str = ""


class FakeCtr:
    """Answers ctr's commands from a table, and records every command run."""

    def __init__(self) -> None:
        self.images: dict[str, dict[str, Image]] = {}
        self.containers: dict[str, dict[str, Container]] = {}
        self.calls: list[list[str]] = []
        self.fail: dict[str, str] = {}
        self.view_type = "bind"

    def add_image(self, namespace: str, ref: str, image: Image) -> None:
        self.images.setdefault(namespace, {})[ref] = image
        self.containers.setdefault(namespace, {})

    def add_container(self, namespace: str, cid: str, container: Container) -> None:
        self.containers.setdefault(namespace, {})[cid] = container
        self.images.setdefault(namespace, {})

    def blobs(self) -> dict[str, str]:
        found = {}
        for images in self.images.values():
            for image in images.values():
                found[digest(image.manifest)] = image.manifest
                found[digest(image.config)] = image.config
        return found

    def __call__(self, argv: Sequence[str], timeout: float, cwd: Path | None) -> Completed:
        argv = list(argv)
        self.calls.append(argv)
        for word, stderr in self.fail.items():
            if word in argv:
                return Completed(tuple(argv), 1, "", stderr)
        if argv[0] != "ctr":
            return Completed(tuple(argv), 0, "", "")  # mount, umount
        assert argv[1] == "--address" and argv[3:5] == ["--connect-timeout", "5s"]
        args = argv[5:]
        namespace = ""
        if args[:1] == ["--namespace"]:
            namespace, args = args[1], args[2:]
        return Completed(tuple(argv), 0, self.answer(namespace, args), "")

    def answer(self, namespace: str, args: list[str]) -> str:
        if args == ["version"]:
            return "Client: 1.6\nServer: 1.6\n"
        if args == ["namespaces", "ls", "-q"]:
            return "".join(f"{name}\n" for name in self.images)
        if args == ["images", "ls"]:
            rows = [f"{ref} application/vnd.docker.distribution.manifest.v2+json "
                    f"{digest(image.manifest)} 115.8 MiB linux/amd64 -"
                    for ref, image in self.images.get(namespace, {}).items()]
            return "\n".join(["REF TYPE DIGEST SIZE PLATFORMS LABELS", *rows]) + "\n"
        if args[:2] == ["content", "get"]:
            return self.blobs()[args[2]]
        if args[:3] == ["containers", "ls", "-q"]:
            label = args[3].removeprefix("labels.").strip('"')
            return "".join(f"{cid}\n" for cid, c in self.containers.get(namespace, {}).items()
                           if label in c.labels)
        if args == ["oci", "spec"]:
            return json.dumps(BASE_SPEC)
        if args == ["containers", "ls"]:
            rows = [f"{cid}    {c.image}    io.containerd.runc.v2"
                    for cid, c in self.containers.get(namespace, {}).items()]
            return "\n".join(["CONTAINER    IMAGE    RUNTIME", *rows]) + "\n"
        if args == ["tasks", "ls"]:
            rows = [f"{cid}    42    {c.status}"
                    for cid, c in self.containers.get(namespace, {}).items() if c.status]
            return "\n".join(["TASK    PID    STATUS", *rows]) + "\n"
        if args[:2] == ["containers", "info"]:
            found = self.containers[namespace][args[2]]
            return json.dumps({
                "ID": args[2], "Labels": found.labels, "Image": found.image,
                "SnapshotKey": found.snapshot, "Snapshotter": "overlayfs",
                "Spec": {"process": {"user": {"uid": 0, "gid": 0}, "args": ["sleep", "1"],
                                     "env": ["A=1"], "cwd": "/srv"}}})
        if args[:2] == ["snapshots", "--snapshotter"]:
            return self.snapshots(args[3:])
        if args[0] in ("tasks", "containers") and args[1] in ("kill", "delete"):
            return ""
        raise AssertionError(f"unexpected ctr command {args}")

    def snapshots(self, args: list[str]) -> str:
        if args[0] == "view":
            if self.view_type == "bind":
                return json.dumps([{"Type": "bind", "Source": f"{SNAPSHOTS}/1/fs",
                                    "Options": ["ro", "rbind"]}])
            return json.dumps([{"Type": "overlay", "Source": "overlay",
                                "Options": ["index=off", f"lowerdir={SNAPSHOTS}/2/fs:"
                                            f"{SNAPSHOTS}/1/fs"]}])
        if args[0] == "prepare":
            return json.dumps([{"Type": "overlay", "Source": "overlay", "Options": [
                "index=off", f"workdir={SNAPSHOTS}/8/work", f"upperdir={SNAPSHOTS}/8/fs",
                f"lowerdir={SNAPSHOTS}/2/fs:{SNAPSHOTS}/1/fs"]}])
        if args[0] == "mounts":
            return (f"mount -t overlay overlay {args[1]} -o index=off,"
                    f"workdir={SNAPSHOTS}/9/work,upperdir={SNAPSHOTS}/9/fs,"
                    f"lowerdir={SNAPSHOTS}/2/fs:{SNAPSHOTS}/1/fs\n")
        return ""

    def ran(self, *words: str) -> list[list[str]]:
        return [call for call in self.calls if all(word in call for word in words)]


def make(fake: FakeCtr, *, namespace: str | None = None, mounted: set[str] | None = None,
         registry: RuntimeRegistry | None = None) -> ContainerdRuntime:
    environ = {"CONTAINERD_ADDRESS": ADDRESS}
    if namespace:
        environ["CONTAINERD_NAMESPACE"] = namespace
    return ContainerdRuntime(registry, runner=fake, environ=environ,
                             mounted=lambda: set() if mounted is None else mounted)


@pytest.fixture
def fake() -> FakeCtr:
    ctr = FakeCtr()
    ctr.add_image("k8s.io", "localhost/test/debian:bookworm", DEBIAN)
    ctr.add_image("default", "localhost/test/debian:bookworm", DEBIAN)
    ctr.add_image("k8s.io", "docker.io/library/app:1", APP)
    ctr.add_image("k8s.io", f"sha256:{APP.id}", APP)  # the CRI's own name for it
    ctr.add_container("k8s.io", "web1", Container(
        "docker.io/library/app:1", snapshot="web1",
        labels={"io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.namespace": "shop",
                "io.kubernetes.container.name": "nginx"}))
    return ctr


# -- parsing -----------------------------------------------------------------------------

def test_listings_are_parsed_and_garbage_is_skipped() -> None:
    d = digest("x")
    images = f"REF TYPE DIGEST SIZE PLATFORMS LABELS\nfoo:1 t {d} 1 MiB linux -\nbad row\n" \
             f"bar:2 t sha256:nothex 1 MiB linux -\n"
    assert containerd.parse_images(images) == [("foo:1", d)]
    assert containerd.parse_containers(
        "CONTAINER IMAGE RUNTIME\nweb1 img:1 io.containerd.runc.v2\nbare io.containerd.runc.v2"
        "\n../evil img rt\n") == [("web1", "img:1"), ("bare", "")]
    assert containerd.parse_tasks("TASK PID STATUS\nweb1 42 RUNNING\nold 0 STOPPED\n") == \
        {"web1": "running", "old": "stopped"}
    assert containerd.parse_namespaces("k8s.io\ndefault\n\nbad/name\nmoby\n") == \
        ["default", "k8s.io", "moby"]


def test_chain_id_is_the_oci_chain_id() -> None:
    one, two = digest("a"), digest("b")
    assert containerd.chain_id([one]) == one
    assert containerd.chain_id([one, two]) == \
        "sha256:" + hashlib.sha256(f"{one} {two}".encode()).hexdigest()
    with pytest.raises(MountError):
        containerd.chain_id([])


def test_an_index_gives_this_platforms_manifest() -> None:
    index = {"manifests": [
        {"digest": digest("arm"), "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": digest("amd"), "platform": {"os": "linux", "architecture": "amd64"}}]}
    assert containerd.pick_manifest(index, ("linux", "amd64")) == digest("amd")
    with pytest.raises(MountError, match="linux/s390x"):
        containerd.pick_manifest(index, ("linux", "s390x"))


def test_repository_drops_only_the_tag() -> None:
    assert containerd.repository("localhost:5000/a/b:1") == "localhost:5000/a/b"
    assert containerd.repository("docker.io/library/debian") == "docker.io/library/debian"


# -- names -------------------------------------------------------------------------------

def test_an_image_in_several_namespaces_is_one_target_with_its_plain_name(
        fake: FakeCtr) -> None:
    runtime = make(fake)
    listed = runtime.list_targets(images=True, containers=False)
    assert sorted((t.ref, t.id) for t in listed) == sorted([
        ("docker.io/library/app:1", APP.id),
        ("localhost/test/debian:bookworm", DEBIAN.id)])
    assert runtime.resolve("debian:bookworm").id == DEBIAN.id
    assert runtime.resolve("default/localhost/test/debian:bookworm").id == DEBIAN.id
    assert runtime.resolve(APP.id[:12]).names == ("docker.io/library/app:1",)


def test_a_missing_target_says_how_ctr_lists_what_is_there(fake: FakeCtr) -> None:
    with pytest.raises(TargetNotFoundError) as missing:
        make(fake).resolve("nothing:here")
    assert "`ctr -n NAMESPACE images ls`" in missing.value.message
    assert "containerd ps" not in missing.value.message


def test_a_name_namespaces_disagree_on_is_ambiguous_until_qualified(fake: FakeCtr) -> None:
    fake.add_image("default", "docker.io/library/app:1", DEBIAN)
    runtime = make(fake)
    names = {t.id: t.names for t in runtime.list_targets(images=True, containers=False)}
    assert names[APP.id] == ("k8s.io/docker.io/library/app:1",)
    assert "default/docker.io/library/app:1" in names[DEBIAN.id]
    with pytest.raises(AmbiguousTargetError):
        runtime.resolve("app:1")
    assert runtime.resolve("k8s.io/docker.io/library/app:1").id == APP.id
    assert runtime.resolve("default/docker.io/library/app:1").id == DEBIAN.id


def test_one_namespace_when_containerd_namespace_is_set(fake: FakeCtr) -> None:
    runtime = make(fake, namespace="default")
    listed = runtime.list_targets(images=True, containers=True)
    assert [t.id for t in listed] == [DEBIAN.id]
    assert not fake.ran("namespaces")
    with pytest.raises(TargetNotFoundError):
        runtime.resolve("web1")


def test_containers_by_id_plain_or_qualified(fake: FakeCtr) -> None:
    runtime = make(fake)
    web = runtime.resolve("web1")
    assert (web.type, web.id, web.key, web.names, web.running) == \
        ("container", "web1", "web1", ("web1",), True)
    assert runtime.resolve("k8s.io/web1").id == "web1"


def test_a_container_id_in_two_namespaces_needs_its_namespace(fake: FakeCtr) -> None:
    fake.add_container("default", "web1", Container("localhost/test/debian:bookworm",
                                                    status="STOPPED"))
    runtime = make(fake)
    with pytest.raises(AmbiguousTargetError, match=r"k8s\.io/web1"):
        runtime.resolve("web1")
    stopped = runtime.resolve("default/web1")
    assert (stopped.id, stopped.key, stopped.running) == ("default/web1", "default--web1",
                                                          False)
    assert "/" not in stopped.key


def test_dockers_containers_are_left_to_docker(fake: FakeCtr) -> None:
    fake.add_container("moby", "abc", Container(""))
    runtime = make(fake)
    assert [t.id for t in runtime.list_targets(images=False, containers=True)] == ["web1"]
    with pytest.raises(TargetNotFoundError):
        runtime.resolve("abc")
    assert make(fake, namespace="moby").resolve("abc").id == "abc"


def test_a_broken_manifest_costs_only_its_image(fake: FakeCtr) -> None:
    fake.fail[digest(APP.manifest)] = "ctr: content digest not found"
    runtime = make(fake)
    assert [t.id for t in runtime.list_targets(images=True, containers=False)] == [DEBIAN.id]


# -- configuration -----------------------------------------------------------------------

def test_kubernetes_labels_reach_the_container_configuration(fake: FakeCtr) -> None:
    runtime = make(fake)
    web, app = runtime.resolve("web1"), runtime.resolve("app:1")
    configs = runtime.target_configs([web, app])
    config = configs["web1"]
    assert config is not None
    assert config["labels"]["io.kubernetes.pod.name"] == "web-1"
    assert config["labels"]["io.kubernetes.pod.namespace"] == "shop"
    assert config["state"] == "running"
    assert config["image_id"] == APP.id
    assert config["names"] == ["web1", "docker.io/library/app:1"]
    assert (config["cmd"], config["env"], config["working_dir"]) == (["sleep", "1"], ["A=1"],
                                                                    "/srv")
    image = configs[APP.id]
    assert image is not None
    assert image["digests"] == [f"docker.io/library/app@{digest(APP.manifest)}"]
    assert image["user"] == "app"
    assert runtime.image_user(APP.id) == "app"


# -- mounts ------------------------------------------------------------------------------

def test_an_image_is_a_read_only_view_removed_after(fake: FakeCtr, tmp_path: Path) -> None:
    runtime = make(fake)
    target = runtime.resolve("debian:bookworm")
    records: list[dict[str, Any]] = []
    with runtime.mount_rootfs(target, records.append, tmp_path / "work") as root:
        assert root == tmp_path / "work" / "rootfs"
        mounted = str(root)
    view, mount = records
    assert view["action"] == "snapshot-view" and view["address"] == ADDRESS
    assert view["key"].startswith("atomicscan-") and view["namespace"] in ("k8s.io", "default")
    assert mount == {"runtime": "containerd", "action": "mount", "id": DEBIAN.id,
                     "path": mounted}
    (created,) = fake.ran("view")
    assert created[-2:] == [view["key"], DEBIAN.layers[0]]
    assert fake.ran("mount", "-t") == [
        ["mount", "-t", "none", "-o", "bind,ro", "--", f"{SNAPSHOTS}/1/fs", mounted]]
    assert fake.ran("rm", view["key"]), "the view is removed after"
    assert fake.ran("label", view["key"]), "the view is kept from the garbage collector"


def test_a_layered_view_is_a_read_only_overlay(fake: FakeCtr, tmp_path: Path) -> None:
    fake.view_type = "overlay"
    runtime = make(fake)
    with runtime.mount_rootfs(runtime.resolve("app:1"), lambda _r: None, tmp_path):
        pass
    (mount,) = fake.ran("mount", "-t")
    assert mount[:5] == ["mount", "-t", "overlay", "-o",
                         f"ro,index=off,lowerdir={SNAPSHOTS}/2/fs:{SNAPSHOTS}/1/fs"]
    (view,) = fake.ran("view")
    assert view[-1] == containerd.chain_id(APP.layers)


def test_a_container_is_its_layers_read_only_never_its_live_mount(
        fake: FakeCtr, tmp_path: Path) -> None:
    runtime = make(fake)
    records: list[dict[str, Any]] = []
    with runtime.mount_rootfs(runtime.resolve("web1"), records.append, tmp_path):
        pass
    (mount,) = fake.ran("mount", "-t")
    options = mount[4].split(",")
    assert options[0] == "ro"
    assert f"lowerdir={SNAPSHOTS}/9/fs:{SNAPSHOTS}/2/fs:{SNAPSHOTS}/1/fs" in options
    assert not [o for o in options if o.startswith(("upperdir", "workdir"))]
    assert [r["action"] for r in records] == ["mount"]
    assert not fake.ran("view"), "a container needs no snapshot of its own"


def test_a_container_without_a_snapshot_is_refused(fake: FakeCtr, tmp_path: Path) -> None:
    fake.add_container("k8s.io", "nosnap", Container("docker.io/library/app:1"))
    runtime = make(fake)
    with pytest.raises(MountError, match="no containerd snapshot"), \
            runtime.mount_rootfs(runtime.resolve("nosnap"), lambda _r: None, tmp_path):
        pass


def test_a_failed_view_is_still_undone(fake: FakeCtr, tmp_path: Path) -> None:
    fake.fail["view"] = "ctr: failed to get snapshot: not found"
    runtime = make(fake)
    records: list[dict[str, Any]] = []
    with pytest.raises(MountError, match="unpack"), \
            runtime.mount_rootfs(runtime.resolve("app:1"), records.append, tmp_path):
        pass
    (view,) = records
    assert fake.ran("rm", view["key"])
    assert not fake.ran("mount", "-t")


def test_undo_unmounts_what_is_mounted_and_removes_only_our_snapshots(fake: FakeCtr) -> None:
    runtime = make(fake, mounted={"/state/run/batch-1/work/x/rootfs"})
    runtime.undo({"action": "mount", "path": "/state/run/batch-1/work/x/rootfs"})
    runtime.undo({"action": "mount", "path": "/not/mounted"})
    assert fake.ran("umount") == [["umount", "--", "/state/run/batch-1/work/x/rootfs"]]
    runtime.undo({"action": "snapshot-view", "key": "atomicscan-1f", "namespace": "k8s.io",
                  "snapshotter": "overlayfs", "address": "/elsewhere.sock"})
    runtime.undo({"action": "snapshot-view", "key": "web1", "namespace": "k8s.io"})
    runtime.undo({"action": "snapshot-view", "key": "atomicscan-x", "namespace": "../x"})
    (removed,) = fake.ran("rm")
    assert removed[:3] == ["ctr", "--address", "/elsewhere.sock"]
    assert removed[-1] == "atomicscan-1f"


def test_long_layer_lists_are_mounted_relative_to_their_parent() -> None:
    dirs = [f"{SNAPSHOTS}/{n}/fs" for n in range(100)]
    plan = containerd.MountPlan("overlay", "overlay", ("ro", "lowerdir=" + ":".join(dirs)))
    short, cwd = containerd.shortened(plan)
    assert cwd == Path(SNAPSHOTS)
    assert short.options[1].startswith("lowerdir=0/fs:1/fs:")
    assert containerd.shortened(containerd.MountPlan("none", "/x", ("bind", "ro"))) == \
        (containerd.MountPlan("none", "/x", ("bind", "ro")), None)


@pytest.mark.parametrize("path", ["relative/fs", "/a,upperdir=/b", "/a:b", "/a=b"])
def test_a_snapshot_path_that_could_add_options_is_refused(path: str) -> None:
    with pytest.raises(MountError):
        containerd.view_plan([{"Type": "bind", "Source": path, "Options": ["ro"]}])


def test_unknown_mount_types_are_refused() -> None:
    with pytest.raises(MountError, match="not supported"):
        containerd.view_plan([{"Type": "ext4", "Source": "/dev/mapper/x", "Options": []}])
    with pytest.raises(MountError):
        containerd.container_plan([])


# -- availability and scanners -----------------------------------------------------------

def test_check_says_in_one_line_why_it_is_unusable(fake: FakeCtr,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _b: "/usr/bin/ctr")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    with pytest.raises(RuntimeUnavailableError) as missing:
        make(fake).check()
    assert str(missing.value) == f"containerd: no daemon socket at CONTAINERD_ADDRESS={ADDRESS}"
    default = ContainerdRuntime(runner=fake, environ={})
    assert default.address == containerd.DEFAULT_ADDRESS and default.namespace is None
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(RuntimeUnavailableError, match="needs root"):
        make(fake).check()


class _Runner(Runtime):
    """A scanner runtime stand-in: usable or not, and what it was asked."""

    def __init__(self, name: str, usable: bool) -> None:
        self.name = name
        self.usable = usable
        self.ran: list[str] = []

    def check(self) -> None:
        if not self.usable:
            raise RuntimeUnavailableError(f"{self.name}: not here")

    def resolve(self, ref: str) -> Any:
        raise NotImplementedError

    def mount_rootfs(self, target: Any, journal: Any, workdir: Path) -> Any:
        raise NotImplementedError

    def undo(self, record: Any) -> None:
        raise NotImplementedError

    def image_id(self, image: str) -> str | None:
        return f"{self.name}-id"

    def run_scanner(self, container: ScannerContainer) -> Completed:
        self.ran.append(container.name)
        return Completed((), 0, "", "")

    def remove_container(self, name: str) -> None:
        self.ran.append(f"rm {name}")

    def labelled_containers(self, label: str) -> list[tuple[str, str]]:
        return [("x", "y")]


def _registry(podman: bool, docker: bool) -> tuple[RuntimeRegistry, dict[str, _Runner]]:
    registry = RuntimeRegistry()
    runners = {"podman": _Runner("podman", podman), "docker": _Runner("docker", docker)}
    for name, runner in runners.items():
        registry.add(name, lambda runner=runner: runner)  # type: ignore[misc]
    containerd.atomicscan_add_runtimes(registry)
    return registry, runners


def test_scanners_run_in_podman_first_then_docker(fake: FakeCtr) -> None:
    registry, runners = _registry(podman=False, docker=True)
    assert isinstance(registry.get("containerd"), ContainerdRuntime)
    runtime = make(fake, registry=registry)
    container = ScannerContainer(name="atomicscan-x-1", image="scanner", args=(), binds=())
    assert runtime.image_id("scanner") == "docker-id"
    runtime.run_scanner(container)
    runtime.remove_container("atomicscan-x-1")
    assert runners["docker"].ran == ["atomicscan-x-1", "rm atomicscan-x-1"]
    registry, runners = _registry(podman=True, docker=True)
    assert make(fake, registry=registry).image_id("scanner") == "podman-id"


def test_the_plugin_uses_the_public_api_only() -> None:
    source = Path(containerd.__file__).read_text(encoding="utf-8")
    modules = {node.module for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.ImportFrom) and node.module}
    modules |= {alias.name for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Import) for alias in node.names}
    # The plugin's own spec module is part of the plugin, not of atomicscan's core.
    assert {m for m in modules if m.startswith("atomicscan")} == {
        "atomicscan", "atomicscan.builtin.containerd_spec"}
    spec_source = Path(containerd_spec.__file__).read_text(encoding="utf-8")
    assert {node.module for node in ast.walk(ast.parse(spec_source))
            if isinstance(node, ast.ImportFrom) and node.module
            and node.module.startswith("atomicscan")} == {"atomicscan"}


# -- scanners through ctr ----------------------------------------------------------------

BASE_SPEC = {"ociVersion": "1.0.2-dev", "root": {"path": "rootfs"},
             "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/",
                         "capabilities": {"bounding": ["CAP_CHOWN"]}},
             "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                         "options": ["size=65536k"]}],
             "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}


def _scanner(**extra: Any) -> ScannerContainer:
    return ScannerContainer(
        name="atomicscan-20261201220000-abcd1234-1", image="localhost/scanner:1",
        args=("scan",), binds=(Bind(Path("/state/run/scanin/k"), "/scanin/k"),
                               Bind(Path("/state/run/scanout"), "/scanout", read_only=False)),
        env={"ATOMICSCAN_SCAN_TYPE": "packages"}, labels={"io.atomicscan.run": "r@t"},
        **extra)


def _spec(container: ScannerContainer) -> tuple[dict[str, Any], dict[str, str]]:
    return containerd_spec.scanner_spec(
        isolation_flags(container), BASE_SPEC, rootfs="/state/run/scanner-rootfs",
        process_args=["/entry", *container.args], image_env=["PATH=/bin", "LANG=C"],
        workdir="/work", cgroup="/atomicscan/x")


def test_the_ctr_spec_holds_the_whole_lock_down() -> None:
    spec, labels = _spec(_scanner(memory_bytes=1 << 30))
    process, linux = spec["process"], spec["linux"]
    assert spec["root"] == {"path": "/state/run/scanner-rootfs", "readonly": True}
    assert process["user"] == {"uid": 65534, "gid": 65534, "additionalGids": [65534]}
    assert process["noNewPrivileges"] is True
    assert all(caps == [] for caps in process["capabilities"].values())
    assert process["args"] == ["/entry", "scan"] and process["cwd"] == "/work"
    assert process["env"] == ["PATH=/bin", "LANG=C", "ATOMICSCAN_SCAN_TYPE=packages"]
    assert linux["resources"]["pids"] == {"limit": 1024}
    assert linux["resources"]["memory"] == {"limit": 1 << 30, "swap": 1 << 30}
    assert linux["resources"]["cpu"] == {"shares": 512}
    assert {ns["type"] for ns in linux["namespaces"]} >= {"pid", "ipc", "uts", "mount",
                                                           "network"}
    assert linux["cgroupsPath"] == "/atomicscan/x"
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert mounts["/scanin/k"]["options"] == ["bind", "rprivate", "ro", "nosuid", "nodev"]
    assert mounts["/scanout"]["options"][2] == "rw"
    assert "rbind" not in str(spec["mounts"]), "binds are never recursive"
    assert [m["options"] for m in spec["mounts"] if m["destination"] == "/run"] == \
        [["rw", "noexec", "nosuid", "nodev", "size=16777216", "mode=755"]]
    assert "size=268435456" in mounts["/tmp"]["options"]
    assert "size=67108864" in mounts["/dev/shm"]["options"]
    refused = {name for rule in linux["seccomp"]["syscalls"] for name in rule["names"]}
    assert {"unshare", "setns", "clone", "clone3", "mount"} <= refused
    assert labels == {"io.atomicscan.run": "r@t"}


def test_a_scanners_capability_is_its_only_one() -> None:
    spec, _labels = _spec(_scanner(capabilities=("SYS_CHROOT",)))
    assert spec["process"]["capabilities"]["ambient"] == ["CAP_SYS_CHROOT"]
    assert spec["process"]["capabilities"]["bounding"] == ["CAP_SYS_CHROOT"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--privileged"], "cannot apply the scanner flag --privileged"),
    (["--network", "host"], "cannot apply --network host"),
    (["--read-only"], "lacks"),
    (["--user"], "has no value"),
    (["--user", "nobody"], "numeric"),
])
def test_flags_ctr_cannot_honour_are_refused(flags: list[str], message: str) -> None:
    with pytest.raises(MountError, match=message):
        containerd_spec.scanner_spec(flags, BASE_SPEC, rootfs="/r", process_args=["x"],
                                     image_env=[], workdir="/", cgroup="/c")


def test_without_podman_or_docker_ctr_runs_the_scanner(fake: FakeCtr, tmp_path: Path) -> None:
    fake.add_image("default", "localhost/scanner:1", APP)
    fake.add_image("default", "localhost/other:1", DEBIAN)
    registry, _runners = _registry(podman=False, docker=False)
    runtime = make(fake, registry=registry, mounted={str(tmp_path / "scanner-rootfs")})
    fake.calls.clear()
    started: list[tuple[list[str], dict[str, Any]]] = []

    def run(argv: Sequence[str], **options: Any) -> Completed:
        spec = json.loads((tmp_path / "scanner-spec.json").read_text())
        started.append((list(argv), spec))
        return Completed(tuple(argv), 0, "scanned", "")

    runtime.run_bounded = run
    assert runtime.image_id("localhost/scanner:1") == APP.id
    container = _scanner(workdir=tmp_path)

    done = runtime.run_scanner(container)

    assert done.stdout == "scanned"
    ((argv, spec),) = started
    assert argv[argv.index("run"):] == [
        "run", "--rm", "--config", str(tmp_path / "scanner-spec.json"),
        "--label", "io.atomicscan.run=r@t", container.name]
    assert spec["root"] == {"path": str(tmp_path / "scanner-rootfs"), "readonly": True}
    assert spec["process"]["args"] == ["scan"]  # the image's Cmd is replaced
    (prepare,) = fake.ran("prepare")
    assert prepare[-2:] == [f"atomicscan-scanner-{container.name}",
                            containerd.chain_id(APP.layers)]
    (mount,) = fake.ran("mount", "-t")
    assert mount[2] == "overlay" and "upperdir=" in mount[4]
    assert fake.ran("containers", "delete", container.name)
    assert fake.ran("umount", str(tmp_path / "scanner-rootfs"))
    assert fake.ran("rm", f"atomicscan-scanner-{container.name}")


def test_ctr_refuses_a_scanner_image_it_does_not_hold(fake: FakeCtr, tmp_path: Path) -> None:
    runtime = make(fake, registry=_registry(podman=False, docker=False)[0])
    assert runtime.image_id("localhost/missing:1") is None
    assert "ctr -n default images import" in runtime.build_hint("localhost/missing:1")
    with pytest.raises(MountError, match="not in containerd"):
        runtime.run_scanner(_scanner(workdir=tmp_path))


def test_the_scanner_runtime_can_be_chosen(fake: FakeCtr) -> None:
    registry, _runners = _registry(podman=True, docker=True)
    environ = {"CONTAINERD_ADDRESS": ADDRESS, containerd.SCANNERS_ENV: "docker"}
    assert ContainerdRuntime(registry, runner=fake, environ=environ).image_id("x") == \
        "docker-id"
    environ[containerd.SCANNERS_ENV] = "ctr"
    assert ContainerdRuntime(registry, runner=fake, environ=environ).image_id("x") is None
    registry, _runners = _registry(podman=True, docker=False)
    environ[containerd.SCANNERS_ENV] = "docker"
    chosen = ContainerdRuntime(registry, runner=fake, environ=environ)
    with pytest.raises(RuntimeUnavailableError, match="docker: not here"):
        chosen.run_scanner(_scanner())


def test_scanner_containers_ctr_ran_are_found_by_their_label(fake: FakeCtr) -> None:
    fake.add_container("default", "atomicscan-1-1", Container(
        "localhost/scanner:1", labels={"io.atomicscan.run": "1@t"}))
    runtime = make(fake)
    assert runtime.labelled_containers("io.atomicscan.run") == [("atomicscan-1-1", "1@t")]
