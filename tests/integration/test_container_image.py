"""The atomicscan node image and its DaemonSet's pod, for real: the image built from the
repository with `podman build`, then the pod run on this host with `podman run`, every
setting generated from deploy/kubernetes/base (image, privileges, environment, host paths,
mount propagation), scanning this host's podman images into a throwaway PostgreSQL; then
the docker variant against a private dockerd, and the base against a private containerd.

What differs from a node, and only that (each made explicitly where the test makes it):
- the image is the one built here, tagged localhost/atomicscan-test/node (kept for re-use);
- the pod shares the host's network: the test's PostgreSQL listens on 127.0.0.1 only;
- atomicscan's own two host paths (/run/atomicscan, /var/lib/atomicscan) are test
  directories, so that the run leaves nothing on this host; the runtimes' paths are real;
- the ConfigMap scans three images once (ATOMICSCAN_INTERVAL=0), not everything daily;
- the Secret is a file written by the test: the PostgreSQL URL;
- a Bidirectional host path must be a shared mount, as systemd makes every mount of a node;
  this host's are private, so the test makes that directory a shared mount of its own.
- the private dockerd and containerd keep their folders elsewhere than a node's: those are
  mounted at their own paths (the daemons name paths as they see them), see each test.
Generated, not copied: a setting of the pod spec this translation doesn't know fails it."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from containerd import Paths as ContainerdPaths
from containerd import atomicscan_snapshots, ctr
from dockerd import NAME as DOCKERD_NAME
from dockerd import docker
from helpers import ALPINE, DEBIAN, RPM_SQLITE, image_id, mounted_image, podman, podman_env
from truth import apk_packages, dpkg_packages, rpm_packages

from atomicscan import __version__

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "kubernetes" / "base"
DOCKER_VARIANT = REPO / "deploy" / "kubernetes" / "docker"
CONTAINER_DIR = REPO / "deploy" / "container"
IMAGE = "localhost/atomicscan-test/node:latest"
TARGETS = (DEBIAN, ALPINE, RPM_SQLITE)
#: atomicscan's own host paths, redirected into the test's directory.
OWN_HOST_PATHS = ("/run/atomicscan", "/var/lib/atomicscan")
#: Pod fields that only the API server, the scheduler or the kubelet act on.
SCHEDULING_ONLY = {"serviceAccountName", "automountServiceAccountToken", "enableServiceLinks",
                   "tolerations", "terminationGracePeriodSeconds"}
PROPAGATION = {None: "rprivate", "None": "rprivate", "HostToContainer": "rslave",
               "Bidirectional": "rshared"}
#: Kubernetes quantity suffixes podman understands as they are, lower-cased.
BINARY_SUFFIXES = {"Ki": "k", "Mi": "m", "Gi": "g"}


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((BASE / name).read_text())
    assert isinstance(document, dict)
    return document


def docker_daemonset() -> dict[str, Any]:
    """The docker variant's DaemonSet: the base with deploy/kubernetes/docker's JSON patch
    (only appends to the container's mounts and the pod's volumes)."""
    daemonset = load("daemonset.yaml")
    spec = daemonset["spec"]["template"]["spec"]
    operations = yaml.safe_load((DOCKER_VARIANT / "docker-paths.yaml").read_text())
    for operation in operations:
        assert operation["op"] == "add", operation
        destination = {"/spec/template/spec/containers/0/volumeMounts/-":
                       spec["containers"][0]["volumeMounts"],
                       "/spec/template/spec/volumes/-": spec["volumes"]}[operation["path"]]
        destination.append(operation["value"])
    return daemonset


@dataclass
class PodRun:
    """``podman run`` arguments with exactly the pod spec's settings; anything in the spec
    this translation does not know fails the test instead of being dropped."""

    pod: Mapping[str, Any]
    config: Mapping[str, str]
    node_name: str
    image: str
    host_paths: Mapping[str, Path]
    secrets: Mapping[str, Mapping[str, str]]
    scratch: Path
    #: Host paths that are elsewhere on this host and mounted at that same place in the pod
    #: (as the manifest has them: docker reports its layers' paths as it sees them).
    same_place: Mapping[str, Path] = field(default_factory=dict)
    #: Environment added to the pod's (atomicscan's folders moved with ``same_place``).
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: Host folders added to the pod's, each at its own path (a private daemon's sockets).
    extra_folders: tuple[Path, ...] = ()
    created: list[Path] = field(default_factory=list)
    shared: list[Path] = field(default_factory=list)

    def argv(self, name: str, command: tuple[str, ...] = ()) -> list[str]:
        """The ``podman run`` command line; ``command`` replaces the image's entry point."""
        unknown = set(self.pod) - SCHEDULING_ONLY - {"containers", "volumes"}
        assert not unknown, f"pod settings the test can't reproduce: {unknown}"
        (container,) = self.pod["containers"]
        known = {"name", "image", "imagePullPolicy", "envFrom", "env", "securityContext",
                 "resources", "volumeMounts"}
        assert not set(container) - known, set(container) - known
        argv = ["podman", "run", "--rm", "--name", name, "--pull", "never",
                # The one network difference: the test's PostgreSQL is on 127.0.0.1.
                "--network", "host"]
        argv += self._security(container.get("securityContext", {}))
        argv += self._resources(container.get("resources", {}))
        argv += self._environment(container)
        volumes = {volume["name"]: volume for volume in self.pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            argv += self._mount(mount, volumes[mount["name"]])
        for folder in self.extra_folders:
            argv += ["--volume", f"{folder}:{folder}:rw,rprivate"]
        if command:
            return [*argv, "--entrypoint", command[0], self.image, *command[1:]]
        return [*argv, self.image]

    def release(self) -> None:
        """Undo what the kubelet's part did on this host: shared mounts, created folders."""
        try:
            for path in reversed(self.shared):
                subprocess.run(["umount", str(path)], check=True)
        finally:
            for created in reversed(self.created):
                if created.is_dir() and not any(created.iterdir()):
                    created.rmdir()

    @staticmethod
    def _security(context: Mapping[str, Any]) -> list[str]:
        assert not set(context) - {"privileged", "readOnlyRootFilesystem"}, context
        argv = []
        if context.get("privileged"):
            argv.append("--privileged")
        if context.get("readOnlyRootFilesystem"):
            # Kubernetes adds no tmpfs of its own: the pod's emptyDirs are its writable places.
            argv += ["--read-only", "--read-only-tmpfs=false"]
        return argv

    @staticmethod
    def _resources(resources: Mapping[str, Any]) -> list[str]:
        limits = resources.get("limits", {})
        assert not set(limits) - {"memory"}, limits
        if "memory" not in limits:
            return []
        return ["--memory", quantity(str(limits["memory"]))]

    def _environment(self, container: Mapping[str, Any]) -> list[str]:
        values: dict[str, str] = {}
        for source in container.get("envFrom", []):
            assert set(source) == {"configMapRef"}, source
            values.update(self.config)
        for variable in container.get("env", []):
            if "value" in variable:
                values[variable["name"]] = str(variable["value"])
            else:
                assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
                values[variable["name"]] = self.node_name
        values.update(self.extra_env)
        return [f"--env={key}={value}" for key, value in values.items()]

    def _mount(self, mount: Mapping[str, Any], volume: Mapping[str, Any]) -> list[str]:
        assert not set(mount) - {"name", "mountPath", "subPath", "readOnly",
                                 "mountPropagation"}, mount
        target = str(self.same_place.get(mount["mountPath"], mount["mountPath"]))
        options = ["ro" if mount.get("readOnly") else "rw",
                   PROPAGATION[mount.get("mountPropagation")]]
        if "emptyDir" in volume:
            return self._empty_dir(target, volume["emptyDir"])
        if "hostPath" in volume:
            source = self._host_path(volume["hostPath"])
            if mount.get("mountPropagation") == "Bidirectional":
                self._make_shared(source)
        elif "secret" in volume:
            source = self._secret(volume["secret"], mount.get("subPath"))
        else:
            raise AssertionError(f"volume kind the test can't reproduce: {volume}")
        assert "subPath" not in mount or "secret" in volume, mount
        return ["--volume", f"{source}:{target}:{','.join(options)}"]

    def _empty_dir(self, target: str, spec: Mapping[str, Any]) -> list[str]:
        if spec.get("medium") == "Memory":
            size = quantity(str(spec.get("sizeLimit", "64Mi")))
            return ["--mount", f"type=tmpfs,destination={target},tmpfs-size={size}"]
        source = self.scratch / f"emptydir{target.replace('/', '-')}"
        source.mkdir(parents=True)
        return ["--volume", f"{source}:{target}:rw"]

    def _host_path(self, spec: Mapping[str, Any]) -> Path:
        path = spec["path"]
        source = self.host_paths.get(path) or self.same_place.get(path) or Path(path)
        kind = spec.get("type", "")
        if kind == "DirectoryOrCreate" and not source.exists():
            # As the kubelet does; the test removes what it created.
            source.mkdir(parents=True)
            self.created.append(source)
        expected = {"File": source.is_file, "Directory": source.is_dir,
                    "DirectoryOrCreate": source.is_dir, "Socket": source.is_socket}
        assert expected[kind](), f"host path {source} is not a {kind}"
        return source

    def _make_shared(self, source: Path) -> None:
        if source in self.shared:
            return
        subprocess.run(["mount", "--bind", str(source), str(source)], check=True)
        self.shared.append(source)
        subprocess.run(["mount", "--make-shared", str(source)], check=True)

    def _secret(self, spec: Mapping[str, Any], key: str | None) -> Path:
        data = self.secrets[spec["secretName"]]
        folder = self.scratch / f"secret-{spec['secretName']}"
        folder.mkdir(mode=0o700)
        for name, value in data.items():
            (folder / name).write_text(value)
            (folder / name).chmod(int(spec.get("defaultMode", 0o644)))
        return folder / key if key else folder


def quantity(value: str) -> str:
    for suffix, short in BINARY_SUFFIXES.items():
        if value.endswith(suffix):
            return value[: -len(suffix)] + short
    assert value.isdigit(), value
    return value


def ca_bundle_args() -> list[str]:
    """The host's CA bundle for pip in the build, where pip here is told to use one (a
    TLS-inspecting proxy); the Containerfile documents the same two flags."""
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if not bundle or not Path(bundle).is_file():
        return []
    folder = Path(bundle).resolve().parent
    inside = f"/etc/ssl/host-certs/{Path(bundle).resolve().name}"
    return ["--volume", f"{folder}:/etc/ssl/host-certs:ro", "--build-arg", f"PIP_CERT={inside}"]


@pytest.fixture(scope="module")
def node_image() -> str:
    """The image, built from the repository (layers cached between runs); a previous build
    it replaces is removed."""
    before = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False)
    build = subprocess.run(
        ["podman", "build", "--network", "host", *ca_bundle_args(),
         "--ignorefile", str(CONTAINER_DIR / "containerignore"),
         "-f", str(CONTAINER_DIR / "Containerfile"), "-t", IMAGE, str(REPO)],
        capture_output=True, text=True, env=podman_env(), timeout=1800, check=False)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    built = image_id(IMAGE)
    old = before.stdout.strip()
    if before.returncode == 0 and old != built:
        podman("rmi", old, check=False)
    return built


def test_the_image_builds_and_holds_atomicscan(node_image: str) -> None:
    version = podman("run", "--rm", "--pull", "never", "--network", "none",
                     "--entrypoint", "atomicscan", IMAGE, "--version")
    assert version.stdout.split()[-1] == __version__
    listing = podman("run", "--rm", "--pull", "never", "--network", "none",
                     "--entrypoint", "atomicscan", IMAGE, "--list", "--json")
    assert "packages" in listing.stdout
    labels = podman("image", "inspect", "--format", "{{json .Config.Entrypoint}}", IMAGE)
    assert "atomicscan-node" in labels.stdout


def external_containers() -> set[str]:
    out = podman("ps", "--all", "--external", "--format", "{{.Names}}").stdout
    return set(out.split())


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (mountinfo's fifth field; no test path has spaces)."""
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [point for point in points if Path(point) == root or root in Path(point).parents]


@pytest.fixture
def pod_run(tmp_path: Path, pg_url: str, node_image: str) -> Iterator[PodRun]:
    daemonset = load("daemonset.yaml")
    config = dict(load("configmap.yaml")["data"])
    config.update({"ATOMICSCAN_INTERVAL": "0", "ATOMICSCAN_SPLAY": "0",
                   "ATOMICSCAN_SCAN_ARGS": "--scanner packages " + " ".join(TARGETS)})
    run = PodRun(
        pod=daemonset["spec"]["template"]["spec"], config=config,
        node_name=f"kube-test-node-{uuid.uuid4().hex[:8]}", image=IMAGE,
        host_paths={path: tmp_path / "host" / path.strip("/").replace("/", "-")
                    for path in OWN_HOST_PATHS},
        secrets={"atomicscan-db": {"db-url": pg_url + "\n"}}, scratch=tmp_path / "pod")
    run.scratch.mkdir()
    try:
        yield run
    finally:
        run.release()


def test_doctor_in_the_pod_finds_podman_ready(pod_run: PodRun) -> None:
    """What `kubectl exec ... atomicscan doctor` shows on a node whose runtime is CRI-O:
    podman usable with its scanner images, no stale runs; docker and containerd absent,
    each saying why."""
    name = f"atomicscan-test-doctor-{uuid.uuid4().hex[:8]}"
    argv = pod_run.argv(name, ("atomicscan", "doctor", "--json"))
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=podman_env(),
                                timeout=600, check=False)
    finally:
        podman("rm", "--force", "--ignore", name, check=False)
    checks = {check["check"]: check for check in json.loads(result.stdout)}
    for ready in ("root", "scanners", "runtime podman", "podman locked-down run",
                  "stale runs"):
        assert checks[ready]["ok"], checks[ready]
    assert "usable" in checks["runtime podman"]["detail"]
    assert not checks["runtime docker"]["ok"]
    assert "docker.sock" in checks["runtime docker"]["detail"]
    assert not checks["runtime containerd"]["ok"]
    assert "containerd.sock" in checks["runtime containerd"]["detail"]


def test_the_daemonset_pod_scans_this_hosts_podman_images(
        pod_run: PodRun, pg_url: str, tmp_path: Path) -> None:
    (container,) = pod_run.pod["containers"]
    assert container["image"] == f"localhost/atomicscan/node:{__version__}"
    host_paths = {v["hostPath"]["path"] for v in pod_run.pod["volumes"] if "hostPath" in v}
    assert set(OWN_HOST_PATHS) <= host_paths
    name = f"atomicscan-test-pod-{uuid.uuid4().hex[:8]}"
    argv = pod_run.argv(name)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=podman_env(),
                                timeout=900, check=False)
    finally:
        podman("rm", "--force", "--ignore", name, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "scan finished (exit 0)" in result.stderr

    with psycopg.connect(pg_url) as connection:
        hosts = connection.execute("SELECT hostname, machine_id FROM hosts").fetchall()
        runs = connection.execute("SELECT run_id, targets, failed FROM runs").fetchall()
        rows = connection.execute(
            "SELECT t.ref, t.target_id, t.runtime, p.type, p.name, p.version, p.architecture "
            "FROM targets t JOIN package_set_members m ON m.set_id = t.package_set_id "
            "JOIN packages p ON p.id = m.package_id").fetchall()
    machine_id = Path("/etc/machine-id").read_text().strip()
    assert hosts == [(pod_run.node_name, machine_id)]
    ((run_id, target_count, failed),) = runs
    assert (target_count, failed) == (len(TARGETS), 0)

    recorded: dict[str, set[tuple[str, str, str]]] = {}
    for ref, target_id, runtime, _type, package, version, arch in rows:
        assert runtime == "podman"
        assert target_id == image_id(ref)
        recorded.setdefault(ref, set()).add((package, version, arch))
    with mounted_image(DEBIAN) as root:
        assert recorded[DEBIAN] == set(dpkg_packages(root))
    with mounted_image(ALPINE) as root:
        assert recorded[ALPINE] == set(apk_packages(root))
    with mounted_image(RPM_SQLITE) as root:
        assert recorded[RPM_SQLITE] == set(rpm_packages(root, bdb=False))

    # Nothing left: no scanner container of the run, no mount in the pod's host paths.
    assert not [c for c in external_containers() if run_id in c]
    assert mounts_under(tmp_path) == [str(path) for path in pod_run.shared]


def _run_pod_once(run: PodRun, pg_url: str) -> tuple[str, list[tuple[Any, ...]]]:
    """Run the pod to the end of one scan (it is removed whatever happens); return the one
    recorded run's ID and its (runtime, target ID, package, version, architecture) rows."""
    name = f"atomicscan-test-pod-{uuid.uuid4().hex[:8]}"
    try:
        result = subprocess.run(run.argv(name), capture_output=True, text=True,
                                env=podman_env(), timeout=900, check=False)
    finally:
        podman("rm", "--force", "--ignore", name, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with psycopg.connect(pg_url) as connection:
        ((run_id, failed),) = connection.execute("SELECT run_id, failed FROM runs").fetchall()
        rows = connection.execute(
            "SELECT t.runtime, t.target_id, p.name, p.version, p.architecture "
            "FROM targets t JOIN package_set_members m ON m.set_id = t.package_set_id "
            "JOIN packages p ON p.id = m.package_id").fetchall()
    assert failed == 0
    return str(run_id), [tuple(row) for row in rows]


def test_the_docker_variant_scans_a_docker_nodes_images(tmp_path: Path, pg_url: str,
                                                        node_image: str) -> None:
    """The docker variant's pod against this session's private dockerd, standing in for a
    node's: its socket and data root are mounted where the node's would be, targets and
    the scanner run through docker, and the mounts handed to the scanner reach dockerd
    through the Bidirectional state folder. dockerd resolves bind mounts on the host, so
    that folder has one path on both sides: on a node /run/atomicscan, here a test folder
    mounted at its own path and named by ATOMICSCAN_STATE_DIR (the host's /run/atomicscan
    belongs to whatever else runs atomicscan on this host)."""
    data_root = Path("/var/lib") / DOCKERD_NAME
    state = tmp_path / "state"
    state.mkdir()
    config = dict(load("configmap.yaml")["data"])
    config.update({"ATOMICSCAN_INTERVAL": "0", "ATOMICSCAN_SPLAY": "0",
                   "ATOMICSCAN_SCAN_ARGS": f"--scanner packages --runtime docker {ALPINE}"})
    run = PodRun(
        pod=docker_daemonset()["spec"]["template"]["spec"], config=config,
        node_name=f"kube-test-docker-node-{uuid.uuid4().hex[:8]}", image=IMAGE,
        host_paths={"/var/lib/atomicscan": tmp_path / "host-var-lib-atomicscan",
                    "/run/docker.sock": Path("/run") / DOCKERD_NAME / "docker.sock"},
        same_place={"/var/lib/docker": data_root, "/run/atomicscan": state},
        extra_env={"ATOMICSCAN_STATE_DIR": str(state)},
        secrets={"atomicscan-db": {"db-url": pg_url + "\n"}}, scratch=tmp_path / "pod")
    run.scratch.mkdir()
    try:
        run_id, rows = _run_pod_once(run, pg_url)
        assert {(runtime, target.removeprefix("sha256:")) for runtime, target, *_ in rows} == {
            ("docker", image_id(ALPINE))}
        with mounted_image(ALPINE) as root:
            assert {tuple(row[2:]) for row in rows} == set(apk_packages(root))
        leftovers = docker("ps", "--all", "--format", "{{.Names}}").stdout.split()
        assert not [c for c in leftovers if run_id in c]
        assert mounts_under(state) == [str(state)]
    finally:
        run.release()


def test_the_pod_scans_a_containerd_nodes_images_with_ctr_scanners(
        tmp_path: Path, pg_url: str, node_image: str, containerd_daemon: str) -> None:
    """The base DaemonSet's pod against this session's private containerd, standing in for
    a containerd node's: its root where the node's would be, the target in the k8s.io
    namespace, and the scanner run by `ctr run` (ATOMICSCAN_CONTAINERD_SCANNERS=ctr, as the
    docs tell containerd nodes to set), reading its /scanin through the Bidirectional state
    folder. ctr makes its stdio FIFOs in /run/containerd/fifo, which the daemon must find
    at the same path: so /run/containerd is this host's own, as in the manifest, and the
    private daemon's socket is an extra folder at its own path, named by
    CONTAINERD_ADDRESS (on a node, both are /run/containerd)."""
    paths = ContainerdPaths()
    assert str(paths.run_dir / "containerd.sock") == containerd_daemon
    state = tmp_path / "state"
    state.mkdir()
    config = dict(load("configmap.yaml")["data"])
    config.update({"ATOMICSCAN_INTERVAL": "0", "ATOMICSCAN_SPLAY": "0",
                   "ATOMICSCAN_CONTAINERD_SCANNERS": "ctr",
                   "ATOMICSCAN_SCAN_ARGS": f"--scanner packages --runtime containerd {ALPINE}"})
    run = PodRun(
        pod=load("daemonset.yaml")["spec"]["template"]["spec"], config=config,
        node_name=f"kube-test-containerd-node-{uuid.uuid4().hex[:8]}", image=IMAGE,
        host_paths={"/var/lib/atomicscan": tmp_path / "host-var-lib-atomicscan"},
        same_place={"/var/lib/containerd": paths.root, "/run/atomicscan": state},
        extra_env={"ATOMICSCAN_STATE_DIR": str(state), "CONTAINERD_ADDRESS": containerd_daemon},
        extra_folders=(paths.run_dir,),
        secrets={"atomicscan-db": {"db-url": pg_url + "\n"}}, scratch=tmp_path / "pod")
    run.scratch.mkdir()
    try:
        run_id, rows = _run_pod_once(run, pg_url)
        assert {(runtime, target) for runtime, target, *_ in rows} == {
            ("containerd", image_id(ALPINE))}
        with mounted_image(ALPINE) as root:
            assert {tuple(row[2:]) for row in rows} == set(apk_packages(root))
        for namespace in ("default", "k8s.io"):
            left = ctr("containers", "ls", "-q", address=containerd_daemon,
                       namespace=namespace).stdout.split()
            assert not [c for c in left if run_id in c]
        assert atomicscan_snapshots(containerd_daemon) == []
        assert mounts_under(state) == [str(state)]
    finally:
        run.release()
