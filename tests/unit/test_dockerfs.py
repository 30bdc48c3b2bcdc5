"""Planning docker rootfs mounts from `docker inspect` / `docker info` JSON (no daemon, no root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atomicscan import dockerfs
from atomicscan.dockerfs import BindPlan, DockerStorage, OverlayPlan, ThinDevicePlan
from atomicscan.errors import MountError

O2 = "/var/lib/docker/overlay2"
OVERLAY_STORAGE = DockerStorage("overlay2", Path("/var/lib/docker"), {})


def overlay_inspect(upper: str, lower: str | None = None, merged: str | None = None,
                    running: bool | None = None) -> dict[str, object]:
    data: dict[str, str] = {"UpperDir": upper, "WorkDir": upper.replace("/diff", "/work")}
    if lower is not None:
        data["LowerDir"] = lower
    if merged is not None:
        data["MergedDir"] = merged
    found: dict[str, object] = {"Id": "c" * 64, "GraphDriver": {"Name": "overlay2", "Data": data}}
    if running is not None:
        found["State"] = {"Running": running, "Status": "running" if running else "exited"}
    return found


def never_mounted(path: Path) -> bool:
    return False


def test_image_layers_are_stacked_upper_first_so_deletions_stay_deleted() -> None:
    inspect = overlay_inspect(f"{O2}/top/diff", f"{O2}/mid/diff:{O2}/base/diff")
    plan = dockerfs.plan_rootfs(inspect, "image", OVERLAY_STORAGE, is_mounted=never_mounted)
    assert plan == OverlayPlan((f"{O2}/top/diff", f"{O2}/mid/diff", f"{O2}/base/diff"))
    assert isinstance(plan, OverlayPlan)
    assert plan.options == f"ro,lowerdir={O2}/top/diff:{O2}/mid/diff:{O2}/base/diff"
    assert plan.argv(Path("/run/x")) == [
        "mount", "-t", "overlay", "-o", plan.options, "atomicscan-overlay", "/run/x"]


def test_single_layer_image_is_a_bind_of_its_upper_dir() -> None:
    # `docker import` images: no LowerDir, and a one-lowerdir overlay is refused.
    inspect = overlay_inspect(f"{O2}/only/diff")
    plan = dockerfs.plan_rootfs(inspect, "image", OVERLAY_STORAGE, is_mounted=never_mounted)
    assert plan == BindPlan(Path(f"{O2}/only/diff"))


def test_stopped_container_overlays_its_layer_then_init_then_image() -> None:
    inspect = overlay_inspect(f"{O2}/ctr/diff", f"{O2}/ctr-init/diff:{O2}/img/diff",
                              merged=f"{O2}/ctr/merged", running=False)
    plan = dockerfs.plan_rootfs(inspect, "container", OVERLAY_STORAGE, is_mounted=never_mounted)
    assert plan == OverlayPlan((f"{O2}/ctr/diff", f"{O2}/ctr-init/diff", f"{O2}/img/diff"))


def test_running_container_binds_its_live_merged_dir() -> None:
    inspect = overlay_inspect(f"{O2}/ctr/diff", f"{O2}/ctr-init/diff:{O2}/img/diff",
                              merged=f"{O2}/ctr/merged", running=True)
    asked: list[Path] = []

    def is_mounted(path: Path) -> bool:
        asked.append(path)
        return True

    plan = dockerfs.plan_rootfs(inspect, "container", OVERLAY_STORAGE, is_mounted=is_mounted)
    assert plan == BindPlan(Path(f"{O2}/ctr/merged"))
    assert asked == [Path(f"{O2}/ctr/merged")]


def test_running_container_whose_merged_dir_is_not_mounted_gets_an_overlay() -> None:
    inspect = overlay_inspect(f"{O2}/ctr/diff", f"{O2}/img/diff", merged=f"{O2}/ctr/merged",
                              running=True)
    plan = dockerfs.plan_rootfs(inspect, "container", OVERLAY_STORAGE, is_mounted=never_mounted)
    assert plan == OverlayPlan((f"{O2}/ctr/diff", f"{O2}/img/diff"))


def test_an_image_never_binds_merged_dir_even_if_mounted() -> None:
    inspect = overlay_inspect(f"{O2}/top/diff", f"{O2}/base/diff", merged=f"{O2}/top/merged")
    plan = dockerfs.plan_rootfs(inspect, "image", OVERLAY_STORAGE, is_mounted=lambda _: True)
    assert isinstance(plan, OverlayPlan)


def test_missing_upper_dir_is_a_mount_error() -> None:
    with pytest.raises(MountError, match="no overlay2 UpperDir"):
        dockerfs.plan_rootfs({"GraphDriver": {"Name": "overlay2", "Data": None}}, "image",
                             OVERLAY_STORAGE)


@pytest.mark.parametrize("driver", ["btrfs", "zfs", "aufs", "fuse-overlayfs", "overlay"])
def test_other_storage_drivers_are_refused_by_name(driver: str) -> None:
    inspect = {"GraphDriver": {"Name": driver, "Data": {"UpperDir": "/x/diff"}}}
    with pytest.raises(MountError) as caught:
        dockerfs.plan_rootfs(inspect, "image", DockerStorage(driver, Path("/d"), {}))
    assert str(caught.value) == (f"docker storage driver {driver} is not supported; "
                                 "supported: overlay2, vfs, devicemapper")


def test_driver_falls_back_to_docker_info_when_inspect_has_none() -> None:
    with pytest.raises(MountError, match="driver btrfs is not supported"):
        dockerfs.plan_rootfs({}, "image", DockerStorage("btrfs", Path("/d"), {}))


# -- long option strings: docker's l/ short links ---------------------------------------

def make_layers(root: Path, count: int) -> list[str]:
    """An overlay2 tree like docker's: <id>/diff, <id>/link and l/<short> -> ../<id>/diff."""
    overlay2 = root / "overlay2"
    (overlay2 / "l").mkdir(parents=True)
    layers = []
    for index in range(count):
        layer_id = f"{index:02d}" + "f" * 62
        (overlay2 / layer_id / "diff").mkdir(parents=True)
        short = f"SHORT{index:02d}" + "X" * 19
        (overlay2 / layer_id / "link").write_text(short)
        (overlay2 / "l" / short).symlink_to(f"../{layer_id}/diff")
        layers.append(str(overlay2 / layer_id / "diff"))
    return layers


def test_options_that_fit_use_full_paths(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, 3)
    assert dockerfs.fit_overlay(layers, limit=4095) == OverlayPlan(tuple(layers))


def test_too_long_options_use_the_absolute_short_links(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, 3)
    full = len(OverlayPlan(tuple(layers)).options)
    plan = dockerfs.fit_overlay(layers, limit=full - 1)
    links = tmp_path / "overlay2" / "l"
    assert plan.cwd is None
    assert plan.lowerdirs == tuple(str(links / f"SHORT{i:02d}{'X' * 19}") for i in range(3))
    assert [os.path.realpath(d) for d in plan.lowerdirs] == layers


def test_still_too_long_uses_relative_short_links_from_the_overlay2_dir(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, 3)
    plan = dockerfs.fit_overlay(layers, limit=100)
    assert plan.cwd == tmp_path / "overlay2"
    assert plan.lowerdirs == tuple(f"l/SHORT{i:02d}{'X' * 19}" for i in range(3))
    assert plan.argv(Path("/m"))[:3] == ["env", "-C", str(tmp_path / "overlay2")]
    assert plan.argv(Path("/m"))[3:] == [
        "mount", "-t", "overlay", "-o", plan.options, "atomicscan-overlay", "/m"]


def test_too_many_layers_even_for_short_links_is_a_clear_error(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, 3)
    with pytest.raises(MountError, match=r"3 layers.*exceed the kernel's 51-byte limit"):
        dockerfs.fit_overlay(layers, limit=50)


def test_a_short_link_that_leads_elsewhere_is_refused(tmp_path: Path) -> None:
    layers = make_layers(tmp_path, 2)
    short = (Path(layers[1]).parent / "link").read_text()
    link = tmp_path / "overlay2" / "l" / short
    link.unlink()
    link.symlink_to(f"../{Path(layers[0]).parent.name}/diff")
    with pytest.raises(MountError, match="does not lead to"):
        dockerfs.fit_overlay(layers, limit=100)


# -- vfs -------------------------------------------------------------------------------

BASE = "sha256:7026188b9d6c9aeb7d84e70c04e39cb1e0a1f4bf6dc97f92249002373a1418cb"
PURGE = "sha256:be7de9d053753bacb849be55fad0fd48283e6ffb0d4943334d00496f9881c297"
#: From a real dockerd's image/vfs/layerdb after loading the test bed's debian-purged image.
PURGED_CHAIN = "sha256:61317558e9f78b3a819e057bb04fc4fe6d3ac6547bfa07f6df1d0dc3ef17a187"


def test_chain_id_matches_dockers_layer_db() -> None:
    assert dockerfs.chain_id([BASE]) == BASE
    assert dockerfs.chain_id([BASE, PURGE]) == PURGED_CHAIN
    with pytest.raises(MountError, match="no layers"):
        dockerfs.chain_id([])


def test_vfs_image_and_container_are_binds_of_their_vfs_dirs(tmp_path: Path) -> None:
    layerdb = tmp_path / "image" / "vfs" / "layerdb"
    chain_dir = layerdb / "sha256" / PURGED_CHAIN.removeprefix("sha256:")
    chain_dir.mkdir(parents=True)
    (chain_dir / "cache-id").write_text("cafe" * 16)
    mount_dir = layerdb / "mounts" / ("c" * 64)
    mount_dir.mkdir(parents=True)
    (mount_dir / "mount-id").write_text("beef" * 16)
    storage = DockerStorage("vfs", tmp_path, {})
    image = {"GraphDriver": {"Name": "vfs", "Data": None},
             "RootFS": {"Type": "layers", "Layers": [BASE, PURGE]}}
    container = {"Id": "c" * 64, "GraphDriver": {"Name": "vfs", "Data": None},
                 "State": {"Running": True}}
    assert dockerfs.plan_rootfs(image, "image", storage) == BindPlan(
        tmp_path / "vfs" / "dir" / ("cafe" * 16))
    assert dockerfs.plan_rootfs(container, "container", storage) == BindPlan(
        tmp_path / "vfs" / "dir" / ("beef" * 16))


def test_vfs_without_its_layer_db_names_the_data_root(tmp_path: Path) -> None:
    image = {"GraphDriver": {"Name": "vfs", "Data": None}, "RootFS": {"Layers": [BASE]}}
    with pytest.raises(MountError, match=f"data root {tmp_path} on this host"):
        dockerfs.plan_rootfs(image, "image", DockerStorage("vfs", tmp_path, {}))


# -- devicemapper planning (the mounting itself: test_devicemapper_fake.py) -------------

DM_INFO = {
    "Driver": "devicemapper",
    "DockerRootDir": "/var/lib/docker",
    "DriverStatus": [["Pool Name", "docker-8:1-1234-pool"], ["Pool Blocksize", "65.54kB"],
                     ["Backing Filesystem", "xfs"], ["Udev Sync Supported", "true"]],
}
DM_DATA = {"DeviceId": "42", "DeviceName": "docker-8:1-1234-" + "a" * 64,
           "DeviceSize": "10737418240"}


def test_storage_reads_docker_info() -> None:
    storage = DockerStorage.from_info(DM_INFO)
    assert storage.driver == "devicemapper"
    assert storage.root_dir == Path("/var/lib/docker")
    assert storage.status["Pool Name"] == "docker-8:1-1234-pool"


def test_devicemapper_plan_builds_the_thin_table() -> None:
    inspect = {"GraphDriver": {"Name": "devicemapper", "Data": DM_DATA}}
    plan = dockerfs.plan_rootfs(inspect, "image", DockerStorage.from_info(DM_INFO),
                                is_mounted=never_mounted)
    assert plan == ThinDevicePlan("docker-8:1-1234-pool", 42, 20971520, "xfs")
    assert isinstance(plan, ThinDevicePlan)
    assert plan.table == "0 20971520 thin /dev/mapper/docker-8:1-1234-pool 42"
    assert plan.mount_options == "ro,nouuid,norecovery"


def test_devicemapper_running_container_binds_dockers_own_mount() -> None:
    inspect = {"GraphDriver": {"Name": "devicemapper", "Data": DM_DATA},
               "State": {"Running": True}}
    live = Path("/var/lib/docker/devicemapper/mnt") / ("a" * 64)
    plan = dockerfs.plan_rootfs(inspect, "container", DockerStorage.from_info(DM_INFO),
                                is_mounted=lambda path: path == live)
    assert plan == BindPlan(live / "rootfs")


def test_devicemapper_without_pool_name_is_a_mount_error() -> None:
    inspect = {"GraphDriver": {"Name": "devicemapper", "Data": DM_DATA}}
    with pytest.raises(MountError, match="Pool Name"):
        dockerfs.plan_rootfs(inspect, "image", DockerStorage("devicemapper", Path("/d"), {}))
