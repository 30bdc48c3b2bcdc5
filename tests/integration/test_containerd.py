"""The containerd runtime on a private containerd: the same packages as podman, Kubernetes
labels in the result, and nothing of ours left behind, even after SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd import (
    atomicscan_snapshots,
    ctr,
    remove_container,
    run_container,
)
from helpers import (
    DEBIAN,
    LINT_BAD,
    Atomicscan,
    Engine,
    HostSnapshot,
    assert_no_leftovers,
    packages_of,
    snapshot,
)

K8S_LABELS = {"io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.namespace": "shop",
              "io.kubernetes.container.name": "nginx"}


@pytest.fixture
def runtime(containerd_address: str) -> str:
    return "containerd"


@pytest.fixture
def pod(containerd_address: str, unique: str) -> Iterator[str]:
    """A running container in k8s.io with a Kubernetes pod's labels and a file of its own.
    Tests name it before ``host_before``: its task's own rootfs mount is not ours to leak."""
    name = f"test-pod-{unique}"
    run_container(name, DEBIAN, K8S_LABELS, containerd_address,
                  command=("sh", "-c", "echo written > /pod-marker; exec sleep 3600"))
    try:
        deadline = time.monotonic() + 60
        while ctr("tasks", "exec", "--exec-id", "probe", name, "test", "-f", "/pod-marker",
                  address=containerd_address, check=False).returncode != 0:
            assert time.monotonic() < deadline, "the pod's container never wrote its file"
            time.sleep(0.1)
        yield name
    finally:
        remove_container(name, containerd_address)


def _podman_scan(tmp_path: Path, *args: str) -> dict[str, object]:
    run = Atomicscan(tmp_path / "podman", "podman")(*args)
    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert isinstance(result, dict)
    return result


def test_debian_inventory_equals_podmans(
    atomicscan: Atomicscan, host_before: HostSnapshot, containerd_address: str,
    tmp_path: Path,
) -> None:
    expected = _podman_scan(tmp_path, "--scanner", "packages", "--json", DEBIAN)

    run = atomicscan("--scanner", "packages", "--json", DEBIAN)

    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert result["successful"] is True
    assert result["runtime"] == "containerd"
    assert result["target_type"] == "image"
    assert result["target_id"] == Engine("podman").image_id(DEBIAN)
    assert len(packages_of(result)) > 50
    assert packages_of(result) == packages_of(expected)
    assert result["os"] == expected["os"]
    assert_no_leftovers(host_before, atomicscan.state_dir)
    assert atomicscan_snapshots(containerd_address) == []


def test_a_pods_container_is_scanned_with_its_kubernetes_labels(
    atomicscan: Atomicscan, pod: str, host_before: HostSnapshot, containerd_address: str,
) -> None:
    atomicscan.add_scanner("podreader", (
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        'cp /scanmeta/targets.json "/scanout/$k/targets.json"; '
        'if [ -f "$d/pod-marker" ]; then m=yes; else m=no; fi; '
        'if touch "$d/new" 2>/dev/null; then w=yes; else w=no; fi; '
        'printf \'{"Successful":"true","Custom":{"marker":"%s","writable":"%s"}}\' '
        '"$m" "$w" > "/scanout/$k/json"; done'))

    run = atomicscan("--scanner", "podreader", "--json", pod)

    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert (result["target"], result["target_type"]) == (pod, "container")
    assert result["custom"] == {"marker": "yes", "writable": "no"}
    labels = result["target_meta"]["labels"]
    assert {key: labels[key] for key in K8S_LABELS} == K8S_LABELS
    assert result["target_meta"]["state"] == "running"
    (entry,) = json.loads((Path(result["raw_dir"]) / "targets.json").read_text())
    assert entry["runtime"] == "containerd"
    assert entry["config"]["labels"]["io.kubernetes.pod.namespace"] == "shop"
    assert entry["config"]["labels"]["io.kubernetes.pod.name"] == "web-1"
    assert entry["config"]["cmd"][:2] == ["sh", "-c"]
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_the_containers_listing_finds_the_pod_by_its_namespace_too(
    atomicscan: Atomicscan, pod: str,
) -> None:
    run = atomicscan("--scanner", "packages", "--json", f"k8s.io/{pod}")
    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert result["successful"] is True
    assert ("coreutils" in {p[0] for p in packages_of(result)})


def test_a_failing_scanner_leaves_nothing_behind(
    atomicscan: Atomicscan, pod: str, host_before: HostSnapshot, containerd_address: str,
) -> None:
    atomicscan.add_scanner("broken", "echo broken >&2; exit 3")

    run = atomicscan("--scanner", "broken", "--json", DEBIAN, pod)

    assert run.returncode != 0
    assert_no_leftovers(host_before, atomicscan.state_dir)
    assert atomicscan_snapshots(containerd_address) == []


def _wait_for_scanner_container(atomicscan: Atomicscan, proc: subprocess.Popen[str],
                                timeout: float = 60) -> str:
    # containerd's targets are scanned by podman here (docs/containerd.md).
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        names = Engine("podman").scanner_containers(atomicscan.state_dir)
        if names:
            return names[0]
        time.sleep(0.2)
    raise AssertionError("the scanner container never started")


def test_after_sigkill_cleanup_removes_mounts_and_snapshots(
    atomicscan: Atomicscan, pod: str, host_before: HostSnapshot, containerd_address: str,
) -> None:
    atomicscan.add_scanner("sleeper", "sleep 300")
    proc = atomicscan.popen("--scanner", "sleeper", DEBIAN, pod)
    _wait_for_scanner_container(atomicscan, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    leaked = snapshot(atomicscan.state_dir)
    assert leaked.mounts != host_before.mounts, "the killed run should have left its mounts"
    assert atomicscan_snapshots(containerd_address), "and the image's view snapshot"

    run = atomicscan("cleanup", "--json")

    assert run.returncode == 0, run.stderr
    removed = run.json()
    assert removed["runs"]
    assert any(entry.startswith("containerd:snapshot-view:") for entry in removed["mounts"])
    assert_no_leftovers(host_before, atomicscan.state_dir)
    assert atomicscan_snapshots(containerd_address) == []


def test_configlint_finds_what_it_finds_through_podman(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path,
) -> None:
    expected = _podman_scan(tmp_path, "--scanner", "configlint", "--json", LINT_BAD)

    run = atomicscan("--scanner", "configlint", "--json", LINT_BAD)

    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]

    def found(scan: dict[str, object]) -> set[tuple[str, str | None]]:
        findings = scan["findings"]
        assert isinstance(findings, list)
        return {(f["id"], f["details"].get("path")) for f in findings}

    assert ("CL-ENV-SECRET", None) in found(result)
    assert found(result) == found(expected)
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_openscap_counts_equal_podmans(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path,
) -> None:
    expected = _podman_scan(tmp_path, "--scanner", "openscap", "--json", DEBIAN)

    run = atomicscan("--scanner", "openscap", "--json", DEBIAN)

    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert result["successful"] is True
    assert result["counts"] == expected["counts"]
    assert result["counts"]["pass"] > 0
    assert_no_leftovers(host_before, atomicscan.state_dir)


def _ctr_scanners(address: str) -> list[str]:
    listed = ctr("containers", "ls", "-q", 'labels."io.atomicscan.run"', address=address,
                 namespace="default")
    return listed.stdout.split()


def test_ctr_runs_the_scanner_when_podman_and_docker_are_not_used(
    atomicscan: Atomicscan, pod: str, host_before: HostSnapshot, containerd_address: str,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = _podman_scan(tmp_path, "--scanner", "packages", "--json", DEBIAN)
    monkeypatch.setenv("ATOMICSCAN_CONTAINERD_SCANNERS", "ctr")

    run = atomicscan("--scanner", "packages", "--json", DEBIAN, pod)

    assert run.returncode == 0, run.stderr
    image, container = run.json()["results"]
    assert image["successful"] is True and container["successful"] is True
    assert packages_of(image) == packages_of(expected)
    assert packages_of(container) == packages_of(expected)
    assert_no_leftovers(host_before, atomicscan.state_dir)
    assert atomicscan_snapshots(containerd_address) == []
    assert _ctr_scanners(containerd_address) == []


def test_a_scanner_ctr_ran_is_locked_down(
    atomicscan: Atomicscan, containerd_address: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ATOMICSCAN_CONTAINERD_SCANNERS", "ctr")
    atomicscan.add_scanner("prober", (
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        'u=$(id -u); c=$(grep CapEff /proc/self/status | cut -f2); '
        'if touch "$d/x" 2>/dev/null; then i=yes; else i=no; fi; '
        'if touch /x 2>/dev/null; then r=yes; else r=no; fi; '
        'if unshare -U true 2>/dev/null; then n=yes; else n=no; fi; '
        "l=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' '); "
        'printf \'{"Successful":"true","Custom":{"uid":"%s","caps":"%s","scanin_writable":"%s",'
        '"root_writable":"%s","unshare":"%s","links":"%s"}}\' "$u" "$c" "$i" "$r" "$n" "$l" '
        '> "/scanout/$k/json"; done'))

    run = atomicscan("--scanner", "prober", "--json", DEBIAN)

    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert result["custom"] == {"uid": "65534", "caps": "0000000000000000",
                                "scanin_writable": "no", "root_writable": "no",
                                "unshare": "no", "links": "lo "}


def test_after_sigkill_cleanup_removes_the_scanner_ctr_ran(
    atomicscan: Atomicscan, host_before: HostSnapshot, containerd_address: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ATOMICSCAN_CONTAINERD_SCANNERS", "ctr")
    atomicscan.add_scanner("sleeper", "sleep 300")
    proc = atomicscan.popen("--scanner", "sleeper", DEBIAN)
    deadline = time.monotonic() + 60
    while not _ctr_scanners(containerd_address):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the scanner container never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)

    run = atomicscan("cleanup", "--json")

    assert run.returncode == 0, run.stderr
    assert run.json()["containers"]
    assert_no_leftovers(host_before, atomicscan.state_dir)
    assert atomicscan_snapshots(containerd_address) == []
    assert _ctr_scanners(containerd_address) == []
