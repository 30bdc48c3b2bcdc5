"""One image, two engines: the same inventory, deletions honoured, and no guessing."""

from __future__ import annotations

from pathlib import Path

import truth
from helpers import DEBIAN, PURGED, Atomicscan, mounted_image, packages_of


def test_a_package_deleted_in_an_upper_layer_is_gone_on_both_runtimes(tmp_path: Path) -> None:
    with mounted_image(PURGED) as root:
        expected = truth.dpkg_packages(root)
    with mounted_image(DEBIAN) as root:
        base = truth.dpkg_packages(root)
    deleted = {name for name, _, _ in base} - {name for name, _, _ in expected}
    assert deleted, "the purged test image must delete a package in its upper layer"

    inventories = {}
    for runtime in ("podman", "docker"):
        run = Atomicscan(tmp_path / runtime, runtime)("--scanner", "packages", "--json", PURGED)
        assert run.returncode == 0, run.stderr
        (result,) = run.json()["results"]
        assert result["runtime"] == runtime
        inventories[runtime] = packages_of(result)
        assert not deleted & {name for name, _, _ in inventories[runtime]}

    assert inventories["podman"] == inventories["docker"] == expected


def test_same_image_gives_identical_packages_on_both_runtimes(tmp_path: Path) -> None:
    found = {}
    for runtime in ("podman", "docker"):
        run = Atomicscan(tmp_path / runtime, runtime)("--scanner", "packages", "--json", DEBIAN)
        assert run.returncode == 0, run.stderr
        found[runtime] = run.json()["results"][0]["packages"]
    assert found["podman"] == found["docker"]


def test_a_target_held_by_both_runtimes_needs_runtime(tmp_path: Path) -> None:
    scan = Atomicscan(tmp_path)
    run = scan("--list")  # no --runtime is added for --list
    assert run.returncode == 0
    argv = [a for a in scan.argv("--scanner", "packages", DEBIAN)]
    argv = argv[:3] + argv[5:]  # drop the --runtime the helper adds
    import subprocess

    done = subprocess.run(argv, capture_output=True, text=True, env=scan.env, check=False)
    assert done.returncode == 2
    assert "exists in both" in done.stderr and "--runtime" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_list_says_which_runtimes_are_usable(tmp_path: Path) -> None:
    run = Atomicscan(tmp_path)("--list", "--json")
    runtimes = {r["name"]: r for r in run.json()["runtimes"]}
    assert set(runtimes) == {"podman", "docker", "containerd"}
    assert runtimes["podman"]["usable"] and runtimes["docker"]["usable"]
    # No containerd answers on the test bed's default socket (the containerd tests start a
    # private one); when it is unusable the line says why.
    containerd = runtimes["containerd"]
    assert containerd["usable"] or "containerd" in containerd["reason"]
