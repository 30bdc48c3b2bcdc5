"""Tests of the inventory-extra plugin, written with the fixtures of atomicscan.testing.

The fast tests need only this package installed next to atomicscan. The ``real`` ones scan
with podman: they need root, the scanner image and atomicscan's test bed images, and skip
saying which is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from atomicscan import Scanner, ScanResult, ScanType
from atomicscan.testing import AtomicscanEnv, PluginsFactory, RootfsFactory, ScanFixture, Symlink

from atomicscan_inventory_extra import __version__, plugin

DEBIAN = "localhost/atomicscan-test/debian:bookworm"
ALPINE = "localhost/atomicscan-test/alpine-like:latest"
SCANNER_SCRIPT = Path(__file__).resolve().parents[1] / "scanner" / "inspect_extra.py"
BUILD_HINT = (f"build it with `podman build --network host -t {plugin.IMAGE} "
              "plugins/atomicscan-inventory-extra/scanner`; the test bed images come from "
              "atomicscan's tests/testbed/build-images")


def go_binary(version: str) -> bytes:
    """An ELF file holding nothing but Go build information (the inline form of Go 1.18+)."""
    elf_header = b"\x7fELF\x02\x01\x01" + bytes(57)
    info = b"\xff Go buildinf:" + bytes([8, 2]) + bytes(16)
    info += bytes([len(version)]) + version.encode() + bytes([0])
    return elf_header + bytes(64) + info + bytes(64)


#: A glibc system with python, node, java and a Go binary, and what the scanner reports.
RUNTIMES_TREE: dict[str, str | bytes | Symlink] = {
    "lib": Symlink("usr/lib"),
    "lib64": Symlink("usr/lib64"),
    "usr/lib/x86_64-linux-gnu/libc.so.6":
        b"\x7fELF junk\0GNU C Library (Test GLIBC 2.99-1) stable release version 2.99.\n",
    "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": b"\x7fELF",
    "usr/lib64/ld-linux-x86-64.so.2": Symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
    "usr/bin/python3.12": "#!not really python\n",
    "usr/bin/python3": Symlink("python3.12"),
    "usr/lib/python3.12/os.py": "",
    "usr/local/include/python3.12/patchlevel.h": '#define PY_VERSION              "3.12.4"\n',
    "usr/lib/python2.7/": "",
    "usr/lib/python3/dist-packages/": "",
    "usr/local/bin/node": "",
    "usr/local/include/node/node_version.h": (
        "#define NODE_MAJOR_VERSION 20\n#define NODE_MINOR_VERSION 11\n"
        "#define NODE_PATCH_VERSION 1\n"),
    "usr/lib/jvm/java-17-openjdk-amd64/release": 'IMPLEMENTOR="Test"\nJAVA_VERSION="17.0.9"\n',
    "usr/lib/jvm/default-java": Symlink("java-17-openjdk-amd64"),
    "app/server": go_binary("go1.22.5"),
    "app/not-go": b"\x7fELF" + bytes(200),
    "etc/os-release": "ID=test\n",
}
RUNTIMES_CUSTOM = {
    "libc": {"flavour": "glibc", "version": "2.99",
             "path": "/usr/lib/x86_64-linux-gnu/libc.so.6"},
    "runtimes": [
        {"name": "python", "version": "2.7", "path": "/usr/lib/python2.7"},
        {"name": "python", "version": "3.12.4", "path": "/usr/bin/python3.12"},
        {"name": "node", "version": "20.11.1", "path": "/usr/local/bin/node"},
        {"name": "java", "version": "17.0.9", "path": "/usr/lib/jvm/java-17-openjdk-amd64"},
        {"name": "go", "version": "1.22.5", "path": "/app/server"},
    ],
}


def run_scanner_script(root: Path, meta: Any = None) -> dict[str, Any]:
    """Run the scanner script on the host against ``root``, as the image would; its json."""
    out = root.parent.parent / "scanout"
    env = {**os.environ, "ATOMICSCAN_SCANIN": str(root.parent),
           "ATOMICSCAN_SCANOUT": str(out), "ATOMICSCAN_SCAN_TYPE": plugin.SCAN_TYPE,
           "ATOMICSCAN_SCANMETA": str(root.parent.parent / "targets.json")}
    if meta is not None:
        (root.parent.parent / "targets.json").write_text(json.dumps(meta))
    subprocess.run([sys.executable, str(SCANNER_SCRIPT)], env=env, check=True, timeout=120)
    document: dict[str, Any] = json.loads((out / root.name / "json").read_text())
    return document


def scanner_result(custom: dict[str, Any], scanner: str = plugin.SCANNER_NAME) -> ScanResult:
    return ScanResult(target="t", target_id="id", target_type="image", runtime="podman",
                      scanner=scanner, scan_type=plugin.SCAN_TYPE, successful=True,
                      started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:01Z",
                      custom=custom)


# --- fast: registration and result shaping ------------------------------------------------


def test_registered_through_its_entry_point(atomicscan_plugins: PluginsFactory) -> None:
    plugins = atomicscan_plugins()
    scanner = plugins.scanners.get("inventory-extra")
    assert scanner.image == "localhost/atomicscan/inventory-extra:latest"
    assert scanner.default_scan == "lumogon"
    assert scanner.scan_type(None).args == ("python3", "/opt/inventory-extra/inspect_extra.py")
    assert scanner.description
    assert scanner.capabilities == ()
    assert plugins.errors == []
    info = {entry.name: entry for entry in plugins.info()}["inventory-extra"]
    assert info.version == __version__ == "0.1.0"
    assert info.hooks == ("atomicscan_add_formats", "atomicscan_add_scanners",
                          "atomicscan_describe_result", "atomicscan_process_result")


def test_module_registers_without_entry_points(atomicscan_plugins: PluginsFactory) -> None:
    plugins = atomicscan_plugins(plugin, entry_points=False)
    assert "inventory-extra" in plugins.scanners.names()
    assert "packages" in plugins.scanners.names()


def test_result_is_checked_and_summarised(atomicscan_plugins: PluginsFactory) -> None:
    plugins = atomicscan_plugins()
    scanner = plugins.scanners.get(plugin.SCANNER_NAME)
    custom = {**RUNTIMES_CUSTOM, "labels": {"team": "scan"}, "notes": ["go: something"]}
    result = plugins.process_result(scanner_result(custom), scanner)
    assert result.successful
    assert result.custom == {**RUNTIMES_CUSTOM, "labels": {"team": "scan"}}
    assert result.notes == (
        "go: something",
        "libc: glibc 2.99 at /usr/lib/x86_64-linux-gnu/libc.so.6",
        "runtime: python 2.7 at /usr/lib/python2.7",
        "runtime: python 3.12.4 at /usr/bin/python3.12",
        "runtime: node 20.11.1 at /usr/local/bin/node",
        "runtime: java 17.0.9 at /usr/lib/jvm/java-17-openjdk-amd64",
        "runtime: go 1.22.5 at /app/server",
    )
    inventory = plugin.inventory_of(result)
    assert inventory is not None
    assert inventory.libc == plugin.Libc("glibc", "2.99", "/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert [runtime.name for runtime in inventory.runtimes] == [
        "python", "python", "node", "java", "go"]


@pytest.mark.parametrize(("custom", "message"), [
    ({"libc": None, "labels": {}}, "runtimes must be a list"),
    ({"libc": {"flavour": "bionic", "path": "/x"}, "runtimes": [], "labels": {}},
     "libc.flavour 'bionic'"),
    ({"libc": None, "runtimes": [{"name": "go"}], "labels": {}}, "runtimes[0].path"),
    ({"libc": None, "runtimes": [], "labels": {"a": 1}}, "labels must be an object of strings"),
])
def test_malformed_output_fails_the_target(atomicscan_plugins: PluginsFactory,
                                           custom: dict[str, Any], message: str) -> None:
    plugins = atomicscan_plugins()
    result = plugins.process_result(scanner_result(custom),
                                    plugins.scanners.get(plugin.SCANNER_NAME))
    assert not result.successful
    assert result.error is not None
    assert result.error.startswith("inventory-extra scanner output is malformed: ")
    assert message in result.error


def test_other_scanners_results_are_left_alone() -> None:
    hello = Scanner(name="hello", image="localhost/hello:latest", default_scan="count",
                    scan_types={"count": ScanType("count", ("sh", "/opt/hello/scan.sh"))})
    other = scanner_result({"libc": "not ours"}, scanner="hello")
    assert plugin.atomicscan_process_result(result=other, scanner=hello) is None


# --- fast: the scanner script on the host, against atomicscan_rootfs trees ----------------


def test_script_finds_runtimes_libc_and_labels(atomicscan_rootfs: RootfsFactory) -> None:
    root = atomicscan_rootfs(RUNTIMES_TREE)
    meta = [{"key": root.name, "config": {"labels": {"org.example": "yes"}}}]
    document = run_scanner_script(root, meta)
    assert document["Successful"] == "true"
    assert document["Scanner"] == "inventory-extra"
    assert document["Scan Type"] == "lumogon"
    assert document["UUID"] == root.name
    assert document["Custom"] == {**RUNTIMES_CUSTOM, "labels": {"org.example": "yes"},
                                  "notes": []}


def test_script_finds_musl_and_its_version(atomicscan_rootfs: RootfsFactory) -> None:
    root = atomicscan_rootfs({
        "lib/ld-musl-x86_64.so.1": b"\x7fELF",
        "lib/libc.musl-x86_64.so.1": Symlink("ld-musl-x86_64.so.1"),
        "lib/apk/db/installed": "P:busybox\nV:1.36.1-r2\n\nP:musl\nV:1.2.5-r0\nA:x86_64\n\n",
        "lib64/ld-linux-x86-64.so.2": b"\x7fELF",
    })
    custom = run_scanner_script(root)["Custom"]
    assert custom["libc"] == {"flavour": "musl", "version": "1.2.5",
                              "path": "/lib/ld-musl-x86_64.so.1"}
    assert "libc: also found glibc at /lib64/ld-linux-x86-64.so.2" in custom["notes"]
    assert any("labels unknown" in note for note in custom["notes"])


def test_script_resolves_links_inside_the_target(atomicscan_rootfs: RootfsFactory) -> None:
    # Each of these would reach the host's files if links were followed outside the target.
    up = "../" * 12
    root = atomicscan_rootfs({
        "usr/lib/x86_64-linux-gnu/libc.so.6": Symlink(f"{up}usr/lib/x86_64-linux-gnu/libc.so.6"),
        "usr/bin/python3.11": Symlink("/proc/self/exe"),
        "usr/lib/jvm/host": Symlink(f"{up}usr/lib/jvm/default-java"),
        "usr/local/bin/node": Symlink("node"),
        "app/go": Symlink(sys.executable),
    })
    custom = run_scanner_script(root)["Custom"]
    assert custom["libc"] is None
    assert custom["runtimes"] == []


def test_script_skips_paths_behind_symlink_loops_with_a_note(
    atomicscan_rootfs: RootfsFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    # A hostile target: every file the inventory reads is a link to itself.
    root = atomicscan_rootfs({
        **RUNTIMES_TREE,
        "var/lib/dpkg/status": Symlink("/var/lib/dpkg/status"),
        "usr/lib/apk/db/installed": Symlink("installed"),  # /lib is /usr/lib here
        "usr/local/include/node/node_version.h": Symlink("node_version.h"),
        "usr/lib/jvm/java-17-openjdk-amd64/release": Symlink("release"),
        "usr/lib32": Symlink("/usr/lib32"),
    })
    document = run_scanner_script(root)
    # Best effort, as for a file the scanner can't read: skipped, the target still scanned.
    assert document["Successful"] == "true"
    custom = document["Custom"]
    assert custom["libc"] == RUNTIMES_CUSTOM["libc"]
    assert {"name": "node", "version": None, "path": "/usr/local/bin/node"} in custom["runtimes"]
    assert "java" not in {runtime["name"] for runtime in custom["runtimes"]}  # no release
    loops = [note for note in custom["notes"] if "symlink loops" in note]
    assert loops == ["skipped 5 path(s) behind symlink loops (too many levels of symbolic "
                     "links), e.g. /usr/lib32"]
    assert "Traceback" not in capfd.readouterr().err


# --- real: the scanner image under atomicscan, with podman --------------------------------


@pytest.mark.real
def test_scans_debian_and_alpine_images(atomicscan_scan: ScanFixture,
                                        atomicscan_env: AtomicscanEnv) -> None:
    atomicscan_scan.require(plugin.IMAGE, DEBIAN, ALPINE, hint=BUILD_HINT)
    report = atomicscan_scan([DEBIAN, ALPINE], scanner="inventory-extra")
    assert report.successful, [result.error for result in report.results]
    assert report.scan_type == "lumogon"
    assert report.results_dir is not None
    assert atomicscan_env.results_dir in report.results_dir.parents
    debian, alpine = report.results

    assert debian.target == DEBIAN
    libc = debian.custom["libc"]
    assert libc["flavour"] == "glibc"
    assert libc["path"].endswith("/libc.so.6")
    assert libc["version"].startswith("2.")
    assert debian.custom["runtimes"] == []  # debootstrap's minbase ships no python
    assert debian.custom["labels"]["io.atomicscan.testbed"] == "1"
    assert f"libc: glibc {libc['version']} at {libc['path']}" in debian.notes

    assert alpine.target == ALPINE
    assert alpine.custom["libc"]["flavour"] == "musl"
    assert alpine.custom["libc"]["path"] == "/lib/ld-musl-x86_64.so.1"
    assert alpine.custom["libc"]["version"]
    assert alpine.custom["runtimes"] == []
    assert alpine.custom["labels"]["io.atomicscan.testbed"] == "1"


@pytest.mark.real
def test_scans_a_rootfs_with_runtimes(atomicscan_scan: ScanFixture,
                                      atomicscan_rootfs: RootfsFactory) -> None:
    atomicscan_scan.require(plugin.IMAGE, hint=BUILD_HINT)
    root = atomicscan_rootfs(RUNTIMES_TREE)
    report = atomicscan_scan(root, scanner="inventory-extra", runtime="podman")
    (result,) = report.results
    assert result.successful, result.error
    assert result.target_type == "rootfs"
    assert result.custom == {**RUNTIMES_CUSTOM, "labels": {}}
    assert "runtime: go 1.22.5 at /app/server" in result.notes
