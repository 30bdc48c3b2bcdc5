"""deploy/kubernetes: every manifest valid against Kubernetes' own schemas (offline, with
kubernetes-validate --strict), the docker variant included; the pod's privileges and host
paths are the documented ones; the node image's entry point scans, loops and stops."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from atomicscan import __version__

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
BASE = KUBE / "base"
DOCKER = KUBE / "docker"
ENTRYPOINT = REPO / "deploy" / "container" / "atomicscan-node"
KUBERNETES_VERSION = "1.30"

#: Every host path the pod mounts writable, and why it can't be read-only.
WRITABLE_HOST_PATHS = {
    # Run journals, locks and the read-only mounts handed to scanners; docker and ctr
    # start scanners from the node, so the node must see these mounts (Bidirectional).
    "/run/atomicscan",
    # Results, the results cache and the pod's own podman container database.
    "/var/lib/atomicscan",
    # c/storage takes its locks and creates each layer's mount point here, and keeps the
    # scanner containers' layers.
    "/var/lib/containers/storage",
    # c/storage's count of each layer's users, shared with the node's CRI-O/podman.
    "/run/containers/storage",
    # containerd's socket (ctr connects to it) and its state.
    "/run/containerd",
    # Target snapshots are mounted read-only, but a scanner run by `ctr run` gets a
    # throwaway snapshot whose writable upper layer is here, mounted by atomicscan.
    "/var/lib/containerd",
}
#: Mounted read-only: what atomicscan only reads.
READ_ONLY_HOST_PATHS = {"/etc/machine-id"}


def documents(path: Path) -> list[dict[str, Any]]:
    loaded = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in loaded), path
    return loaded


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run([str(tool), "--strict", "--kubernetes-version", KUBERNETES_VERSION,
                           *map(str, paths)], capture_output=True, text=True, check=False)


def base_resources() -> list[Path]:
    kustomization = documents(BASE / "kustomization.yaml")[0]
    return [BASE / name for name in kustomization["resources"]]


def daemonset() -> dict[str, Any]:
    (found,) = [doc for path in base_resources() for doc in documents(path)
                if doc["kind"] == "DaemonSet"]
    return found


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def json_patch(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add`` operations (all the docker variant uses), applied independently of
    kustomize."""
    patched = copy.deepcopy(document)
    for operation in operations:
        assert operation["op"] == "add", operation
        *parents, last = operation["path"].lstrip("/").split("/")
        node: Any = patched
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), operation["value"])
        else:
            node[last] = operation["value"]
    return patched


def docker_variant() -> dict[str, Any]:
    kustomization = documents(DOCKER / "kustomization.yaml")[0]
    assert kustomization["resources"] == ["../base"]
    (patch,) = kustomization["patches"]
    assert patch["target"] == {"group": "apps", "version": "v1", "kind": "DaemonSet",
                               "name": daemonset()["metadata"]["name"]}
    operations = yaml.safe_load((DOCKER / patch["path"]).read_text())
    return json_patch(daemonset(), operations)


def host_mounts(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each host path, with the mount of it in the one container."""
    (container,) = spec["containers"]
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    return {volumes[m["name"]]: m for m in container["volumeMounts"] if m["name"] in volumes}


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    files = sorted(KUBE.rglob("*.yaml"))
    resources = [path for path in files
                 if path.name != "kustomization.yaml" and path.parent != DOCKER]
    result = validate(*resources)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed ") == len(resources)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = {path.name for path in base_resources()}
    present = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert {doc["kind"] for path in base_resources() for doc in documents(path)} == {
        "Namespace", "ServiceAccount", "ConfigMap", "DaemonSet"}


def test_the_docker_variant_validates(tmp_path: Path) -> None:
    rendered = tmp_path / "daemonset-docker.yaml"
    rendered.write_text(yaml.safe_dump(docker_variant()))
    result = validate(rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    mounts = host_mounts(pod_spec(docker_variant()))
    assert mounts["/var/lib/docker"]["readOnly"] is True
    assert "/run/docker.sock" in mounts
    sources = {v["hostPath"]["path"]: v["hostPath"]["type"]
               for v in pod_spec(docker_variant())["volumes"] if "hostPath" in v}
    assert sources["/run/docker.sock"] == "Socket"


def test_the_pod_is_read_only_where_it_can_be() -> None:
    spec = pod_spec(daemonset())
    (container,) = spec["containers"]
    assert container["securityContext"] == {"privileged": True, "readOnlyRootFilesystem": True}
    mounts = host_mounts(spec)
    writable = {path for path, mount in mounts.items() if not mount.get("readOnly")}
    assert writable == WRITABLE_HOST_PATHS
    assert set(mounts) - writable == READ_ONLY_HOST_PATHS
    propagating = {path for path, mount in mounts.items() if "mountPropagation" in mount}
    assert propagating == {"/run/atomicscan"}
    assert mounts["/run/atomicscan"]["mountPropagation"] == "Bidirectional"
    assert not any(spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))


def test_the_pod_needs_no_kubernetes_api_and_keeps_the_url_out_of_its_environment() -> None:
    spec = pod_spec(daemonset())
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    (secret_mount,) = [m for m in container["volumeMounts"] if m["name"] == "db-url"]
    assert secret_mount == {"name": "db-url", "mountPath": "/etc/atomicscan/db-url",
                            "subPath": "db-url", "readOnly": True}
    (secret,) = [v["secret"] for v in spec["volumes"] if "secret" in v]
    assert secret == {"secretName": "atomicscan-db", "defaultMode": 0o400}
    assert all("secretKeyRef" not in str(variable) for variable in container.get("env", []))


def test_the_node_is_named_after_itself_and_the_image_is_this_version() -> None:
    (container,) = pod_spec(daemonset())["containers"]
    env = {variable["name"]: variable for variable in container["env"]}
    assert env["ATOMICSCAN_HOSTNAME"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "spec.nodeName"}}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env["ATOMICSCAN_MACHINE_ID_FILE"]["value"] in mounts
    assert container["image"] == f"localhost/atomicscan/node:{__version__}"


# -- the entry point, with a stand-in for atomicscan ----------------------------------------

FAKE_ATOMICSCAN = """#!/bin/sh
echo "$*" >> "$CALLS"
case $1 in cleanup) exit 0 ;; esac
if [ -n "${HANG:-}" ]; then
    trap 'echo terminated >> "$CALLS"; exit 130' TERM
    touch "$HANG"
    while :; do sleep 1; done
fi
exit "${STATUS:-0}"
"""


def entrypoint(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "atomicscan"
    fake.write_text(FAKE_ATOMICSCAN)
    fake.chmod(0o755)
    environment = {"PATH": f"{bindir}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls"),
                   **env}
    return subprocess.Popen(["sh", str(ENTRYPOINT)], env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_the_entry_point_cleans_up_then_scans_with_the_configured_arguments(
        tmp_path: Path) -> None:
    process = entrypoint(tmp_path, ATOMICSCAN_INTERVAL="0", STATUS="3",
                         ATOMICSCAN_SCAN_ARGS="--images --scanner packages")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3
    assert (tmp_path / "calls").read_text().splitlines() == [
        "cleanup", "--images --scanner packages"]
    assert "scan finished (exit 3)" in stderr


@pytest.mark.parametrize("setting", ["ATOMICSCAN_INTERVAL", "ATOMICSCAN_SPLAY"])
def test_the_entry_point_refuses_a_bad_number(tmp_path: Path, setting: str) -> None:
    process = entrypoint(tmp_path, **{setting: "1d"})
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"{setting}=1d" in stderr
    assert not (tmp_path / "calls").exists()


def test_the_entry_point_passes_sigterm_to_the_scan_and_waits_for_it(tmp_path: Path) -> None:
    started = tmp_path / "started"
    process = entrypoint(tmp_path, ATOMICSCAN_INTERVAL="0", HANG=str(started))
    try:
        while not started.exists():
            assert process.poll() is None, process.communicate()
            subprocess.run(["sleep", "0.05"], check=True)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143
    assert (tmp_path / "calls").read_text().splitlines()[-1] == "terminated"
