"""FAKE devicemapper: the docker devicemapper mount, run against fake dmsetup/mount/umount.

This kernel has no device-mapper, so nothing here touches a real device. Fake ``dmsetup``,
``mount`` and ``umount`` (and, once, ``docker``) shell scripts come first on PATH and log
their argv; the tests check the exact commands, their order, and that every exit path
(a failing step, an exception in the ``with`` body) removes what was set up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from atomicscan import dockerfs
from atomicscan.builtin.docker import DockerRuntime
from atomicscan.dockerfs import ThinDevicePlan
from atomicscan.errors import MountError
from atomicscan.runtime import Target

FAKE_TOOL = r"""#!/bin/sh
# Fake {name}: log argv (fields separated by \037), then fail or act as told.
tool=$(basename "$0")
{{ printf '%s' "$tool"; for arg in "$@"; do printf '\037%s' "$arg"; done; printf '\n'; }} \
    >> "$FAKE_LOG"
for last in "$@"; do :; done
if [ "${{FAKE_FAIL:-}}" = "$tool" ] || [ "${{FAKE_FAIL:-}}" = "$tool $1" ]; then
    echo "fake $tool: told to fail" >&2
    exit 32
fi
case "$tool" in
    mount) [ -n "${{FAKE_NO_ROOTFS:-}}" ] || mkdir -p "$last/rootfs" ;;
    umount) rmdir "$last/rootfs" 2>/dev/null || true ;;
esac
exit 0
"""

POOL = "docker-8:1-1234-pool"
PLAN = ThinDevicePlan(pool=POOL, device_id=7, sectors=20971520, fs_type="xfs")
TABLE = f"0 20971520 thin /dev/mapper/{POOL} 7"


class FakeTools:
    def __init__(self, directory: Path) -> None:
        self.log = directory / "calls.log"

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split("\x1f") for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name in ("dmsetup", "mount", "umount"):
        tool = bin_dir / name
        tool.write_text(FAKE_TOOL.format(name=name))
        tool.chmod(0o755)
    tools = FakeTools(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    monkeypatch.setenv("FAKE_LOG", str(tools.log))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    monkeypatch.delenv("FAKE_NO_ROOTFS", raising=False)
    return tools


def device_name(calls: list[list[str]]) -> str:
    assert calls[0][:2] == ["dmsetup", "create"]
    return calls[0][2]


def test_fake_devicemapper_mount_activates_mounts_and_undoes_in_order(
        fake_tools: FakeTools, tmp_path: Path) -> None:
    destination = tmp_path / "mnt"
    journal: list[tuple[dict[str, Any], int]] = []

    def record(entry: dict[str, Any]) -> None:
        journal.append((entry, len(fake_tools.calls())))

    with dockerfs.mounted(PLAN, destination, record) as rootfs:
        assert rootfs == destination / "rootfs"
        name = device_name(fake_tools.calls())
        assert len(fake_tools.calls()) == 2
    device = f"/dev/mapper/{name}"
    assert name.startswith("atomicscan-7-")
    assert fake_tools.calls() == [
        ["dmsetup", "create", name, "--readonly", "--table", TABLE],
        ["mount", "-t", "xfs", "-o", "ro,nouuid,norecovery", device, str(destination)],
        ["umount", str(destination)],
        ["dmsetup", "remove", "--retry", name],
    ]
    # Each step is journaled before its command runs, so a kill in between is undoable.
    assert journal == [({"action": "dm-device", "name": name}, 0),
                       ({"action": "mount", "path": str(destination)}, 1)]
    assert not destination.exists()


def test_fake_devicemapper_failed_mount_still_removes_the_device(
        fake_tools: FakeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "mount")
    destination = tmp_path / "mnt"
    with pytest.raises(MountError, match="told to fail"), \
            dockerfs.mounted(PLAN, destination, lambda entry: None):
        pytest.fail("the body must not run when the mount failed")
    name = device_name(fake_tools.calls())
    assert [call[:2] for call in fake_tools.calls()] == [
        ["dmsetup", "create"], ["mount", "-t"], ["dmsetup", "remove"]]
    assert fake_tools.calls()[-1] == ["dmsetup", "remove", "--retry", name]
    assert not destination.exists()


def test_fake_devicemapper_failed_activation_mounts_nothing(
        fake_tools: FakeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "dmsetup create")
    with pytest.raises(MountError, match="cannot activate docker's thin device 7"), \
            dockerfs.mounted(PLAN, tmp_path / "mnt", lambda entry: None):
        pytest.fail("the body must not run when activation failed")
    assert [call[:2] for call in fake_tools.calls()] == [
        ["dmsetup", "create"], ["dmsetup", "remove"]]


def test_fake_devicemapper_exception_in_body_unmounts_then_removes(
        fake_tools: FakeTools, tmp_path: Path) -> None:
    destination = tmp_path / "mnt"
    with pytest.raises(KeyboardInterrupt), \
            dockerfs.mounted(PLAN, destination, lambda entry: None):
        raise KeyboardInterrupt
    name = device_name(fake_tools.calls())
    assert fake_tools.calls()[2:] == [
        ["umount", str(destination)], ["dmsetup", "remove", "--retry", name]]
    assert not destination.exists()


def test_fake_devicemapper_device_without_rootfs_is_refused_and_undone(
        fake_tools: FakeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NO_ROOTFS", "1")
    with pytest.raises(MountError, match="has no rootfs/"), \
            dockerfs.mounted(PLAN, tmp_path / "mnt", lambda entry: None):
        pytest.fail("the body must not run without a rootfs/")
    assert [call[0] for call in fake_tools.calls()] == ["dmsetup", "mount", "umount", "dmsetup"]


def test_fake_devicemapper_undo_removes_only_our_devices(fake_tools: FakeTools) -> None:
    dockerfs.undo({"action": "dm-device", "name": "atomicscan-7-0123abcd"})
    dockerfs.undo({"action": "dm-device", "name": "docker-8:1-1234-pool"})
    assert fake_tools.calls() == [["dmsetup", "remove", "--retry", "atomicscan-7-0123abcd"]]


def test_fake_devicemapper_through_the_docker_runtime(
        fake_tools: FakeTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime feeds `docker image inspect` and `docker info` into the same mount."""
    image_id = "d" * 64
    inspect = [{"Id": f"sha256:{image_id}", "GraphDriver": {"Name": "devicemapper", "Data": {
        "DeviceId": "7", "DeviceName": f"docker-8:1-1234-{'e' * 64}", "DeviceSize": str(
            20971520 * 512)}}}]
    info = {"Driver": "devicemapper", "DockerRootDir": str(tmp_path / "docker"),
            "DriverStatus": [["Pool Name", POOL], ["Backing Filesystem", "xfs"]]}
    (tmp_path / "inspect.json").write_text(json.dumps(inspect))
    (tmp_path / "info.json").write_text(json.dumps(info))
    docker = tmp_path / "fakebin" / "docker"
    docker.write_text(f"""#!/bin/sh
case "$1 $2" in
    "image inspect") cat {tmp_path}/inspect.json ;;
    "info --format") cat {tmp_path}/info.json ;;
    *) echo "fake docker: unexpected $*" >&2; exit 1 ;;
esac
""")
    docker.chmod(0o755)
    monkeypatch.setenv("ATOMICSCAN_STATE_DIR", str(tmp_path / "state"))
    target = Target(ref="x:1", id=image_id, type="image", runtime="docker", key=image_id)
    journal: list[dict[str, Any]] = []
    workdir = tmp_path / "state" / "run" / "work" / image_id
    with DockerRuntime().mount_rootfs(target, journal.append, workdir) as rootfs:
        assert rootfs.parent.parent == workdir
        assert rootfs.name == "rootfs"
    name = device_name(fake_tools.calls())
    assert fake_tools.calls()[0] == ["dmsetup", "create", name, "--readonly", "--table", TABLE]
    assert [entry["action"] for entry in journal] == ["dm-device", "mount"]
    assert all(entry["runtime"] == "docker" and entry["id"] == image_id for entry in journal)
    assert fake_tools.calls()[-1] == ["dmsetup", "remove", "--retry", name]
