"""ScannerRegistry.add holds a plugin's own Scanner to the isolation rules of definition files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from atomicscan.hookspecs import hookimpl
from atomicscan.plugins import Plugins
from atomicscan.scanners import (
    InvalidScannerError,
    Scanner,
    ScannerRegistry,
    ScanType,
    isolation_problem,
)


def _scanner(capabilities: tuple[str, ...] = (),
             host_mounts: tuple[tuple[str, str], ...] = ()) -> Scanner:
    return Scanner(name="mine", image="localhost/mine:latest", default_scan="s",
                   scan_types={"s": ScanType("s", ("true",))}, origin="my-plugin",
                   capabilities=capabilities, host_mounts=host_mounts)


def _refusal(scanner: Scanner) -> str:
    registry = ScannerRegistry()
    with pytest.raises(InvalidScannerError) as caught:
        registry.add(scanner)
    assert len(registry) == 0
    message = str(caught.value)
    assert message.startswith("scanner from my-plugin refused: "), message
    assert "\n" not in message and "\x1b" not in message and "\x00" not in message
    return message


@pytest.fixture
def feeds(tmp_path: Path) -> Path:
    directory = tmp_path / "srv" / "feeds"
    directory.mkdir(parents=True)
    (directory / "feed.xml").write_text("<feed/>")
    return directory


@pytest.mark.parametrize(("capabilities", "message"), [
    (("SYS_ADMIN",), "'SYS_ADMIN' is not allowed"),
    (("CAP_SYS_CHROOT",), "'CAP_SYS_CHROOT' is not allowed"),
    (("sys_chroot",), "'sys_chroot' is not allowed"),
    (("NET_RAW",), "'NET_RAW' is not allowed"),
    (("ALL",), "'ALL' is not allowed"),
    (("SYS_CHROOT", "DAC_READ_SEARCH"), "one capability at most"),
    (("SYS_CHROOT", "SYS_CHROOT"), "one capability at most"),
])
def test_capabilities_beyond_the_allow_list_are_refused(
    capabilities: tuple[str, ...], message: str
) -> None:
    assert message in _refusal(_scanner(capabilities=capabilities))


@pytest.mark.parametrize("capability", ["SYS_CHROOT", "DAC_READ_SEARCH"])
def test_one_allowed_capability_is_accepted(capability: str) -> None:
    registry = ScannerRegistry()
    registry.add(_scanner(capabilities=(capability,)))
    assert registry.get("mine").capabilities == (capability,)


def test_a_readonly_mount_of_a_plain_directory_is_accepted(feeds: Path) -> None:
    registry = ScannerRegistry()
    registry.add(_scanner(host_mounts=((str(feeds), "/feeds"),
                                       (f"{feeds}/feed.xml", "/etc/feed.xml")),
                          capabilities=("SYS_CHROOT",)))
    assert [d for _, d in registry.get("mine").host_mounts] == ["/feeds", "/etc/feed.xml"]


@pytest.mark.parametrize(("source", "message"), [
    ("/", "/ is the whole host"),
    ("/etc", "/etc holds /etc/shadow"),
    ("/etc/shadow", "/etc/shadow is a refused place"),
    ("/var/run/docker.sock", "docker's socket"),
    ("/run/podman/podman.sock", "/run/podman"),
    ("/var/lib/containers/storage", "podman's image and container storage"),
    ("/proc/1/root", "/proc"),
    ("/dev", "/dev is a refused place"),
    ("/root", "root's home"),
    ("relative/feeds", "must be an absolute host path"),
])
def test_host_paths_no_scanner_may_see_are_refused(source: str, message: str) -> None:
    text = _refusal(_scanner(host_mounts=((source, "/host"),)))
    assert message in text and "host mount" in text


def test_a_symlink_to_a_refused_place_is_judged_on_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "innocent").symlink_to("/var/run")
    assert "/run is a refused place" in _refusal(
        _scanner(host_mounts=((str(tmp_path / "innocent"), "/host"),)))


def test_sockets_and_fifos_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        for name in ("fifo", "sock"):
            message = _refusal(_scanner(host_mounts=((str(tmp_path / name), "/x"),)))
            assert "not a directory or a regular file" in message


@pytest.mark.parametrize(("destination", "message"), [
    ("feeds", "absolute"),
    ("/x/../scanout", "without '.', '..' or '//'"),
    ("//scanout", "without '.', '..' or '//'"),
    ("/", "belongs to the scan"),
    ("/scanin", "belongs to the scan"),
    ("/scanout/key", "belongs to the scan"),
    ("/scanmeta", "belongs to the scan"),
    ("/scanhost", "belongs to the scan"),
    ("/proc/sys", "belongs to the scan"),
    ("/sys", "belongs to the scan"),
    ("/dev/shm", "belongs to the scan"),
])
def test_destinations_that_belong_to_the_scan_are_refused(
    feeds: Path, destination: str, message: str
) -> None:
    assert message in _refusal(_scanner(host_mounts=((str(feeds), destination),)))


@pytest.mark.parametrize(("source", "destination"), [
    ("{feeds},readonly=false", "/x"),
    ("{feeds}", "/x,readonly=false"),
    ("{feeds}", "/x:rw"),
    ("{feeds}", "/x\nnext"),
    ("{feeds}\x1b[2J", "/x"),
    ('{feeds}"', "/x"),
])
def test_mount_option_syntax_is_refused(feeds: Path, source: str, destination: str) -> None:
    message = _refusal(_scanner(host_mounts=((source.format(feeds=feeds), destination),)))
    assert "mount options" in message


def test_a_source_whose_real_path_holds_option_syntax_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "a,U=true"
    odd.mkdir()
    (tmp_path / "plain").symlink_to(odd)
    message = _refusal(_scanner(host_mounts=((str(tmp_path / "plain"), "/x"),)))
    assert "its real path" in message and "mount options" in message


def test_a_destination_used_twice_is_refused(feeds: Path) -> None:
    message = _refusal(_scanner(host_mounts=((str(feeds), "/x"), (str(feeds), "/x"))))
    assert "mounted twice" in message


def test_a_host_mount_never_comes_with_dac_read_search(feeds: Path) -> None:
    message = _refusal(_scanner(capabilities=("DAC_READ_SEARCH",),
                                host_mounts=((str(feeds), "/x"),)))
    assert "DAC_READ_SEARCH" in message and "host mount" in message


def test_a_malformed_host_mount_is_refused() -> None:
    scanner = _scanner(host_mounts=(("/srv", "/x", "rw"),))  # type: ignore[arg-type]
    assert "not a (source, destination) pair" in _refusal(scanner)


def test_a_missing_source_is_judged_where_it_would_resolve(tmp_path: Path) -> None:
    assert isolation_problem(_scanner(host_mounts=((f"{tmp_path}/later", "/x"),))) is None
    assert "inside /root" in (isolation_problem(
        _scanner(host_mounts=(("/root/not-yet", "/x"),))) or "")


def test_a_plugin_asking_for_too_much_is_named_and_the_others_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATOMICSCAN_CONFIG_DIR", str(tmp_path / "none"))

    class Greedy:
        @hookimpl
        def atomicscan_add_scanners(self, registry: ScannerRegistry) -> None:
            registry.add(_scanner(capabilities=("SYS_ADMIN",)))

    plugins = Plugins.load([Greedy()], entry_points=False)
    assert "mine" not in plugins.scanners.names()
    assert "packages" in plugins.scanners.names()
    (error,) = plugins.errors
    assert "\n" not in error
    assert "my-plugin" in error and "'SYS_ADMIN' is not allowed" in error


def test_every_builtin_scanner_passes_the_registry_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATOMICSCAN_CONFIG_DIR", str(tmp_path / "none"))
    plugins = Plugins.load(entry_points=False)
    assert {"packages", "openscap", "configlint"} <= set(plugins.scanners.names())
    assert not plugins.errors
    assert all(isolation_problem(scanner) is None for scanner in plugins.scanners)
