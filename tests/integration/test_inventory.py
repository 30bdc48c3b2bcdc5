"""The packages scanner on real images, containers and directories, against the truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import truth
from helpers import (
    ALPINE,
    DEBIAN,
    RPM_BDB,
    RPM_SQLITE,
    Atomicscan,
    Engine,
    HostSnapshot,
    assert_no_leftovers,
    mounted_image,
    packages_of,
    snapshot,
)


def _truth(image: str, root: Path) -> list[tuple[str, str, str]]:
    if image == DEBIAN:
        return truth.dpkg_packages(root)
    if image == RPM_SQLITE:
        return truth.rpm_packages(root, bdb=False)
    if image == RPM_BDB:
        return truth.rpm_packages(root, bdb=True)
    return truth.apk_packages(root)


@pytest.mark.parametrize(("image", "kind", "os_id"), [
    (DEBIAN, "deb", "debian"),
    (RPM_SQLITE, "rpm", None),
    (RPM_BDB, "rpm", None),
    (ALPINE, "apk", "alpine"),
])
def test_image_inventory_equals_package_database(
    atomicscan: Atomicscan, engine: Engine, host_before: HostSnapshot, image: str, kind: str,
    os_id: str | None,
) -> None:
    with mounted_image(image) as root:
        expected = _truth(image, root)
    assert len(expected) >= 4, f"test bed image {image} holds too few packages to prove much"

    run = atomicscan("--scanner", "packages", "--json", image)

    assert run.returncode == 0, run.stderr
    report = run.json()
    (result,) = report["results"]
    assert result["successful"] is True
    assert result["target"] == image
    assert result["target_id"] == engine.image_id(image)
    assert result["target_type"] == "image"
    assert result["runtime"] == atomicscan.runtime
    assert packages_of(result) == expected
    assert {p["type"] for p in result["packages"]} == {kind}
    assert all(p["purl"].startswith(f"pkg:{kind}/") for p in result["packages"])
    if os_id:
        assert result["os"]["id"] == os_id
    raw = Path(report["results_dir"]) / engine.image_id(image) / "json"
    assert raw.is_file(), "the scanner's raw output is kept in the results directory"
    assert (Path(report["results_dir"]) / "report.json").is_file()
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_debian_sources_and_epochs_are_reported(atomicscan: Atomicscan) -> None:
    run = atomicscan("--scanner", "packages", "--json", DEBIAN)
    (result,) = run.json()["results"]
    by_name = {p["name"]: p for p in result["packages"]}
    # libc6 is built from glibc; its purl carries the distro.
    assert by_name["libc6"]["source"] == "glibc"
    assert "distro=debian-12" in by_name["libc6"]["purl"]
    assert result["os"]["version_id"] == "12"


def test_running_and_stopped_containers_are_scanned_as_they_are(
    atomicscan: Atomicscan, engine: Engine, containers: list[str], unique: str
) -> None:
    running, stopped = f"atomicscan-test-running-{unique}", f"atomicscan-test-stopped-{unique}"
    containers += [running, stopped]
    engine("run", "-d", "--name", running, DEBIAN, "sleep", "600")
    # The stopped container changed its own filesystem: the scan must see the change.
    marker = ("Package: atomicscan-marker\\nStatus: install ok installed\\n"
              "Version: 1.0-1\\nArchitecture: all\\n\\n")
    engine("run", "--name", stopped, DEBIAN, "sh", "-c",
           f"printf '{marker}' >> /var/lib/dpkg/status")
    with mounted_image(DEBIAN) as root:
        expected = truth.dpkg_packages(root)
    host_before = snapshot(atomicscan.state_dir)  # after the running container's own mounts

    run = atomicscan("--scanner", "packages", "--json", running, stopped)

    assert run.returncode == 0, run.stderr
    results = {r["target"]: r for r in run.json()["results"]}
    assert results[running]["target_type"] == "container"
    assert packages_of(results[running]) == expected
    marker_package = ("atomicscan-marker", "1.0-1", "all")
    assert packages_of(results[stopped]) == sorted([*expected, marker_package])
    state = engine("inspect", "--format", "{{.State.Running}}", running).stdout.strip()
    assert state == "true", "scanning a running container must not stop it"
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_rootfs_directory(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    with mounted_image(ALPINE) as root:
        shutil.copytree(root, tree, symlinks=True)
    expected = truth.apk_packages(tree)

    run = atomicscan("--scanner", "packages", "--json", "--rootfs", str(tree))

    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert result["target_type"] == "rootfs"
    assert result["runtime"] is None
    assert packages_of(result) == expected
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_empty_rootfs_is_a_successful_scan_with_a_note(atomicscan: Atomicscan,
                                                        tmp_path: Path) -> None:
    (tmp_path / "empty" / "etc").mkdir(parents=True)
    run = atomicscan("--scanner", "packages", "--json", "--rootfs", str(tmp_path / "empty"))
    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert result["successful"] is True
    assert result["packages"] == []
    assert any("no package database" in note for note in result["notes"])


def test_human_output_names_target_and_results_directory(atomicscan: Atomicscan) -> None:
    run = atomicscan("--scanner", "packages", ALPINE)
    assert run.returncode == 0, run.stderr
    assert ALPINE in run.stdout
    assert "apk" in run.stdout
    assert str(atomicscan.results_dir / "packages") in run.stdout
