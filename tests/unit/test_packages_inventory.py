"""Fast-tier tests of the packages scanner (scanners/packages/inventory.py), no runtime needed."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import re
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import rpmfixtures
from rpmfixtures import SpecPackage

INVENTORY_PATH = Path(__file__).resolve().parents[2] / "scanners" / "packages" / "inventory.py"


def _load_inventory() -> ModuleType:
    spec = importlib.util.spec_from_file_location("packages_inventory", INVENTORY_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is created.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


inventory = _load_inventory()

DEBIAN_OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""

DPKG_STATUS = """\
Package: bash
Essential: yes
Status: install ok installed
Priority: required
Architecture: amd64
Multi-Arch: foreign
Version: 5.2.15-2+b7
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.
 .
 Package: not-a-package
 Status: install ok installed
Homepage: http://tiswww.case.edu/php/chet/bash/bashtop.html

Package: bsdutils
Status: install ok installed
Architecture: amd64
Source: util-linux (2.38.1-5)
Version: 1:2.38.1-5+b1

Package: leftover
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1
Conffiles:
 /etc/leftover.conf 0123456789abcdef0123456789abcdef

Package: purged
Status: purge ok not-installed
Architecture: amd64

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4

Package: libc6
Status: install ok installed
Architecture: i386
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4

Package: halfway
Status: hold reinstreq half-installed
Architecture: all
Version: 0.1

Package: unpacked-only
Status: install ok unpacked
Architecture: all
Version: 2.0
"""

APK_INSTALLED = """\
C:Q1abc=
P:musl
V:1.2.4-r2
A:x86_64
S:383152
L:MIT
o:musl
p:so:libc.musl-x86_64.so.1=1

P:libstdc++
V:12.2.1_git20220924-r10
A:x86_64
L:GPL-2.0-or-later
o:gcc

P:alpine-baselayout-data
V:3.4.3-r1
A:x86_64"""


def write(root: Path, relpath: str, text: str) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def symlink(root: Path, relpath: str, target: str) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def scan(root: Path, scan_type: str = "inventory") -> dict[str, Any]:
    document: dict[str, Any] = inventory.scan_target(str(root), "k1", scan_type, [])
    return document


def packages_of(document: dict[str, Any]) -> list[tuple[str, str, str | None, str | None]]:
    return [
        (p["name"], p["version"], p["architecture"], p["source"])
        for p in document["Custom"]["packages"]
    ]


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything observable about a tree, to prove a scan changed nothing."""
    state: dict[str, tuple[object, ...]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory, name)
            info = path.lstat()
            entry: tuple[object, ...] = (info.st_mode, info.st_size, info.st_mtime_ns)
            if path.is_symlink():
                entry += (os.readlink(path),)
            elif path.is_file():
                entry += (hashlib.sha256(path.read_bytes()).hexdigest(),)
            state[str(path.relative_to(root))] = entry
    return state


@pytest.fixture
def debian_root(tmp_path: Path) -> Path:
    root = tmp_path / "debian"
    write(root, "usr/lib/os-release", DEBIAN_OS_RELEASE)
    symlink(root, "etc/os-release", "../usr/lib/os-release")
    write(root, "var/lib/dpkg/status", DPKG_STATUS)
    return root


# --- path resolution inside the target --------------------------------------------------------


def test_relative_and_absolute_symlinks_resolve_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "usr/lib/os-release", "ID=x\n")
    symlink(root, "etc/relative", "../usr/lib/os-release")
    symlink(root, "etc/absolute", "/usr/lib/os-release")
    symlink(root, "etc/climbing", "../../../../../usr/lib/os-release")
    symlink(root, "lib", "usr/lib")
    target = inventory.TargetRoot(str(root))
    expected = str(root / "usr/lib/os-release")
    for relpath in ("etc/relative", "etc/absolute", "etc/climbing", "lib/os-release"):
        assert target.resolve(relpath) == expected, relpath
    assert target.resolve("etc/../../../usr/./lib/os-release") == expected


def test_escaping_symlink_never_reaches_the_host(tmp_path: Path) -> None:
    root = tmp_path / "root"
    symlink(root, "etc/os-release", "../../../../etc/passwd")
    target = inventory.TargetRoot(str(root))
    # The host has an /etc/passwd; the target has none, so there is nothing to read.
    assert Path("/etc/passwd").exists()
    assert target.resolve("etc/os-release") is None
    assert target.read_text("etc/os-release") is None
    write(root, "etc/passwd", "root:x:0:0:target root:/root:/bin/sh\n")
    assert target.resolve("etc/os-release") == str(root / "etc/passwd")
    assert "target root" in (target.read_text("etc/os-release") or "")


def test_symlink_loop_is_an_error_and_os_release_falls_back(tmp_path: Path) -> None:
    root = tmp_path / "root"
    symlink(root, "etc/os-release", "os-release.b")
    symlink(root, "etc/os-release.b", "/etc/os-release")
    write(root, "usr/lib/os-release", 'ID=fedora\nVERSION_ID=40\nNAME="Fedora Linux"\n')
    target = inventory.TargetRoot(str(root))
    with pytest.raises(OSError, match="symbolic links") as raised:
        target.resolve("etc/os-release")
    assert raised.value.errno == errno.ELOOP
    document = scan(root)
    assert document["Successful"] == "true"
    assert document["Custom"]["os"]["id"] == "fedora"
    assert "ignored /etc/os-release: too many levels of symbolic links" in (
        document["Custom"]["notes"])


@pytest.mark.parametrize("database", [
    "var/lib/dpkg/status", "var/lib/dpkg/status.d/base", "lib/apk/db/installed",
    "var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/Packages", "var/lib/rpm/Packages.db",
])
def test_symlink_loop_at_a_package_database_fails_the_target_in_one_line(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    write(root, "etc/os-release", DEBIAN_OS_RELEASE)
    if database != "var/lib/dpkg/status":
        write(root, "var/lib/dpkg/status", DPKG_STATUS)  # a good database beside the loop
    symlink(root, database, "/" + database)  # itself: a loop
    document = scan(root)
    # Never "no packages": a database hidden behind a loop is a failed target.
    assert document["Successful"] == "false"
    assert document["Error"] == (
        f"OSError: [Errno 40] too many levels of symbolic links: '/{database}'")
    assert document["Custom"]["packages"] == []
    assert "Traceback" not in capsys.readouterr().err


def test_file_used_as_directory_and_missing_paths_resolve_to_none(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "etc/hostname", "box\n")
    target = inventory.TargetRoot(str(root))
    assert target.resolve("etc/hostname/x") is None
    assert target.resolve("var/lib/dpkg/status") is None
    symlink(root, "etc/dangling", "/nowhere/at/all")
    assert target.resolve("etc/dangling") is None


def test_fifo_is_not_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc/os-release")
    write(root, "usr/lib/os-release", "ID=debian\n")
    # Opening the FIFO would block forever; the scan must skip it and use usr/lib.
    assert scan(root)["Custom"]["os"]["id"] == "debian"


# --- os-release -------------------------------------------------------------------------------


def test_os_release_prefers_etc_and_unquotes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "etc/os-release", 'ID=\'alpine\'\nVERSION_ID=3.19.1\nNAME="Alpine \\"Linux\\""\n')
    write(root, "usr/lib/os-release", "ID=other\n")
    os_info = scan(root)["Custom"]["os"]
    assert os_info == {
        "id": "alpine",
        "version_id": "3.19.1",
        "name": 'Alpine "Linux"',
        "pretty_name": None,
        "version_codename": None,
    }


def test_no_os_release_and_no_database(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    document = scan(root)
    assert document["Successful"] == "true"
    assert document["Custom"]["os"] is None
    assert document["Custom"]["packages"] == []
    assert document["Custom"]["notes"] == ["no package database found (looked for dpkg, rpm, apk)"]


# --- dpkg -------------------------------------------------------------------------------------


def test_dpkg_status_with_tricky_stanzas(debian_root: Path) -> None:
    document = scan(debian_root)
    assert document["Successful"] == "true"
    assert document["Custom"]["os"] == {
        "id": "debian",
        "version_id": "12",
        "name": "Debian GNU/Linux",
        "pretty_name": "Debian GNU/Linux 12 (bookworm)",
        "version_codename": "bookworm",
    }
    assert packages_of(document) == [
        ("bash", "5.2.15-2+b7", "amd64", "bash"),
        ("bsdutils", "1:2.38.1-5+b1", "amd64", "util-linux"),
        ("halfway", "0.1", "all", "halfway"),
        ("libc6", "2.36-9+deb12u4", "amd64", "glibc"),
        ("libc6", "2.36-9+deb12u4", "i386", "glibc"),
        ("unpacked-only", "2.0", "all", "unpacked-only"),
    ]
    purls = {p["name"] + "/" + p["architecture"]: p["purl"] for p in document["Custom"]["packages"]}
    assert purls["bash/amd64"] == "pkg:deb/debian/bash@5.2.15-2%2Bb7?arch=amd64&distro=debian-12"
    assert (
        purls["bsdutils/amd64"]
        == "pkg:deb/debian/bsdutils@1%3A2.38.1-5%2Bb1?arch=amd64&distro=debian-12"
    )
    assert {p["type"] for p in document["Custom"]["packages"]} == {"deb"}


def test_dpkg_matches_dpkg_query(debian_root: Path) -> None:
    if rpmfixtures.missing("dpkg-query"):
        pytest.skip("dpkg-query is not installed")
    fmt = "${db:Status-Status}\\t${Package}\\t${Version}\\t${Architecture}\\n"
    admindir = f"--admindir={debian_root / 'var/lib/dpkg'}"
    output = rpmfixtures.run(["dpkg-query", admindir, "-W", "-f", fmt])
    present = sorted(
        (name, version, arch)
        for status, name, version, arch in (line.split("\t") for line in output.splitlines())
        if status in inventory.DPKG_PRESENT_STATES
    )
    assert [row[:3] for row in packages_of(scan(debian_root))] == present


def test_distroless_status_d_and_linked_database_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    # No Status field, as distroless writes them; md5sums files sit alongside.
    write(
        root,
        "opt/dpkg/status.d/base",
        "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\nMaintainer: x\n",
    )
    write(
        root,
        "opt/dpkg/status.d/tzdata",
        "Package: tzdata\nVersion: 2024a-0+deb12u1\n"
        "Architecture: all\nSource: tzdata (2024a-0+deb12u1)\n",
    )
    write(root, "opt/dpkg/status.d/tzdata.md5sums", "0123  usr/share/zoneinfo/UTC\n")
    symlink(root, "var/lib/dpkg", "/opt/dpkg")
    document = scan(root)
    assert packages_of(document) == [
        ("base-files", "12.4+deb12u5", "amd64", "base-files"),
        ("tzdata", "2024a-0+deb12u1", "all", "tzdata"),
    ]
    # Without os-release the purl still has a namespace but no distro qualifier.
    assert document["Custom"]["packages"][0]["purl"] == (
        "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64"
    )


# --- apk --------------------------------------------------------------------------------------


def test_apk_installed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "lib/apk/db/installed", APK_INSTALLED)
    write(root, "etc/os-release", "ID=alpine\nVERSION_ID=3.19.1\n")
    document = scan(root)
    assert packages_of(document) == [
        ("alpine-baselayout-data", "3.4.3-r1", "x86_64", None),
        ("libstdc++", "12.2.1_git20220924-r10", "x86_64", "gcc"),
        ("musl", "1.2.4-r2", "x86_64", "musl"),
    ]
    purls = [p["purl"] for p in document["Custom"]["packages"]]
    assert purls[1] == "pkg:apk/alpine/libstdc%2B%2B@12.2.1_git20220924-r10?arch=x86_64"
    assert {p["type"] for p in document["Custom"]["packages"]} == {"apk"}


def test_packages_of_several_kinds_are_sorted_by_type_then_name(
    debian_root: Path,
) -> None:
    write(debian_root, "lib/apk/db/installed", "P:aaa\nV:1\nA:x86_64\n")
    rpmfixtures.write_rpm_sqlite(
        debian_root / "var/lib/rpm/rpmdb.sqlite",
        [
            (1, rpmfixtures.nevra_header("zz", "1", "1")),
            (2, rpmfixtures.nevra_header("a", "1", "1")),
        ],
    )
    keys = [(p["type"], p["name"]) for p in scan(debian_root)["Custom"]["packages"]]
    assert keys == sorted(keys)
    assert [kind for kind, _ in keys][:1] == ["apk"]
    assert ("rpm", "a") in keys and ("deb", "bash") in keys


# --- rpm headers, synthetic -------------------------------------------------------------------


def test_source_name_from_source_rpm() -> None:
    assert inventory.source_name_from_srpm("util-linux-2.38.1-5.el9.src.rpm") == "util-linux"
    assert inventory.source_name_from_srpm("foo-1.0-1.nosrc.rpm") == "foo"
    assert inventory.source_name_from_srpm("weird.src.rpm") is None
    assert inventory.source_name_from_srpm("foo-1.0-1.noarch.rpm") is None
    assert inventory.source_name_from_srpm(None) is None


def test_header_without_arch_or_source_like_gpg_pubkey() -> None:
    blob = rpmfixtures.nevra_header("gpg-pubkey", "fd431d51", "4ae0493b", arch=None)
    package = inventory.parse_rpm_header(blob)
    assert (package.name, package.version, package.architecture, package.source) == (
        "gpg-pubkey",
        "fd431d51-4ae0493b",
        None,
        None,
    )
    assert inventory.build_purl(package, {"id": "rhel"}) == (
        "pkg:rpm/rhel/gpg-pubkey@fd431d51-4ae0493b"
    )


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\0\0\0", "truncated"),
        (struct.pack(">II", 0xFFFFFFFF, 0), "claims 4294967295 tags"),
        (struct.pack(">II", 1, 0x7FFFFFFF), "claims"),
        (rpmfixtures.nevra_header("a", "1", "1")[:-3], "truncated"),
        (rpmfixtures.encode_header([(1000, 6, "a"), (1001, 6, "1")]), "lacks tag 1002"),
        (rpmfixtures.encode_header([(1000, 4, 7), (1001, 6, "1"), (1002, 6, "1")]), "string"),
    ],
)
def test_corrupt_headers_raise_inventory_errors(blob: bytes, message: str) -> None:
    with pytest.raises(inventory.InventoryError, match=message):
        inventory.parse_rpm_header(blob)


def test_header_offsets_outside_the_store_are_rejected() -> None:
    blob = bytearray(rpmfixtures.nevra_header("name", "1", "2"))
    # First index entry (NAME) gets an offset far beyond the data store.
    struct.pack_into(">i", blob, 8 + 8, 10_000)
    with pytest.raises(inventory.InventoryError, match="outside"):
        inventory.parse_rpm_header(bytes(blob))
    # A string running to the end of the store without its NUL.
    whole = rpmfixtures.nevra_header("name", "1", "2", arch=None)
    index_count, data_length = struct.unpack_from(">II", whole)
    unterminated = struct.pack(">II", index_count, data_length - 1) + whole[8:-1]
    with pytest.raises(inventory.InventoryError, match="NUL"):
        inventory.parse_rpm_header(unterminated)


def test_truncated_blob_in_sqlite_fails_only_that_target(tmp_path: Path) -> None:
    root = tmp_path / "root"
    good = rpmfixtures.nevra_header("ok", "1", "1")
    rpmfixtures.write_rpm_sqlite(
        root / "var/lib/rpm/rpmdb.sqlite", [(1, good), (2, good[: len(good) // 2])]
    )
    document = scan(root)
    assert document["Successful"] == "false"
    assert document["Custom"]["packages"] == []
    assert "/var/lib/rpm/rpmdb.sqlite" in document["Error"]
    assert "#2" in document["Error"] and "truncated" in document["Error"]
    assert "\n" not in document["Error"]


def test_garbage_sqlite_database(tmp_path: Path) -> None:
    write(tmp_path / "root", "usr/lib/sysimage/rpm/rpmdb.sqlite", "this is not sqlite\n" * 300)
    document = scan(tmp_path / "root")
    assert document["Successful"] == "false"
    assert document["Error"].startswith("/usr/lib/sysimage/rpm/rpmdb.sqlite: sqlite:")


def test_wal_mode_sqlite_is_read_without_writing_anything(tmp_path: Path) -> None:
    root = tmp_path / "root"
    database = root / "var/lib/rpm/rpmdb.sqlite"
    rpmfixtures.write_rpm_sqlite(database, [(1, rpmfixtures.nevra_header("a", "1", "1"))])
    connection = sqlite3.connect(database)
    assert connection.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    connection.close()
    before = snapshot(root)
    assert packages_of(scan(root)) == [("a", "1-1", "noarch", None)]
    assert snapshot(root) == before


# --- Berkeley DB, hand-made -------------------------------------------------------------------


def test_tiny_hand_made_bdb_skips_the_counter_record(tmp_path: Path) -> None:
    root = tmp_path / "root"
    items = [
        (b"\0\0\0\0", struct.pack("<I", 3)),
        (struct.pack("<I", 1), rpmfixtures.nevra_header("one", "1", "1", srpm="one-1-1.src.rpm")),
        (struct.pack("<I", 2), rpmfixtures.nevra_header("two", "2", "2", epoch=1)),
    ]
    (root / "var/lib/rpm").mkdir(parents=True)
    (root / "var/lib/rpm/Packages").write_bytes(rpmfixtures.tiny_bdb(items, page_size=1024))
    assert packages_of(scan(root)) == [
        ("one", "1-1", "noarch", "one"),
        ("two", "1:2-2", "noarch", None),
    ]


def _bdb_target(tmp_path: Path, content: bytes) -> Path:
    root = tmp_path / "root"
    (root / "var/lib/rpm").mkdir(parents=True)
    (root / "var/lib/rpm/Packages").write_bytes(content)
    return root


def _offpage_reference(first_page: int, total: int, extra_pages: bytes = b"") -> bytes:
    """A tiny BDB whose single data item is an H_OFFPAGE reference."""
    database = bytearray(rpmfixtures.tiny_bdb([(b"\1\0\0\0", b"\0" * 11)], page_size=512))
    data_offset = struct.unpack_from("<H", database, 512 + 26 + 2)[0]
    struct.pack_into("<BxxxII", database, 512 + data_offset, 3, first_page, total)
    return bytes(database) + extra_pages


def _overflow_page(pgno: int, next_pgno: int, length: int) -> bytes:
    page = bytearray(512)
    struct.pack_into("<IIIHH", page, 8, pgno, 0, next_pgno, 1, length)
    page[25] = 7
    return bytes(page)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "too short"),
        (os.urandom(8192), "bad magic"),
        (b"\0" * 12 + struct.pack("<I", 0x053162) + b"\0" * 4096, "btree"),
        (
            b"\0" * 12 + struct.pack("<II", 0x061561, 9) + struct.pack("<I", 1000) + b"\0" * 4096,
            "page size",
        ),
        (_offpage_reference(99, 100), "points to page 99"),
        (_offpage_reference(2, 0xFFFFFFFF, _overflow_page(2, 0, 10)), "claims"),
        (_offpage_reference(2, 1000, _overflow_page(2, 2, 10)), "cyclic"),
        (_offpage_reference(2, 100, _overflow_page(2, 0, 10)), "points to page 0"),
        (_offpage_reference(2, 5, _overflow_page(2, 0, 10)), "bad length"),
    ],
)
def test_corrupt_bdb_fails_cleanly(tmp_path: Path, content: bytes, message: str) -> None:
    document = scan(_bdb_target(tmp_path, content))
    assert document["Successful"] == "false"
    assert document["Error"].startswith("/var/lib/rpm/Packages: ")
    assert message in document["Error"]


# --- rpm databases made by the real tools -----------------------------------------------------

RPM_SPECS = [
    SpecPackage("alpha", "1.0", "1", epoch=2, subpackages=("libs",)),
    SpecPackage("beta", "2.5", "3.el9", noarch=False, description_lines=400),
    SpecPackage("gamma++", "1.0~rc1", "1"),
]


@pytest.fixture(scope="session")
def built_rpms(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    absent = rpmfixtures.missing(*rpmfixtures.RPM_TOOLS)
    if absent:
        pytest.skip(f"needs {', '.join(absent)} (Debian package rpm) to make real rpm databases")
    return rpmfixtures.build_rpms(tmp_path_factory.mktemp("rpmbuild"), RPM_SPECS)


@pytest.fixture
def rpm_root(tmp_path: Path, built_rpms: list[Path]) -> Path:
    root = tmp_path / "fedora"
    rpmfixtures.install_rpms(root, built_rpms)
    write(root, "usr/lib/os-release", 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\n')
    symlink(root, "etc/os-release", "../usr/lib/os-release")
    return root


def _expected(rows: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str]]:
    return sorted((name, version, arch) for name, version, arch, _ in rows)


def test_rpm_sqlite_matches_rpm_query(rpm_root: Path) -> None:
    truth = rpmfixtures.query_root(rpm_root)
    assert {row[0] for row in truth} == {"alpha", "alpha-libs", "beta", "gamma++"}
    before = snapshot(rpm_root)
    document = scan(rpm_root)
    assert snapshot(rpm_root) == before
    assert document["Successful"] == "true", document.get("Error")
    assert [row[:3] for row in packages_of(document)] == _expected(truth)
    by_name = {p["name"]: p for p in document["Custom"]["packages"]}
    assert {name: p["source"] for name, p in by_name.items()} == {
        "alpha": "alpha",
        "alpha-libs": "alpha",
        "beta": "beta",
        "gamma++": "gamma++",
    }
    assert by_name["alpha"]["version"] == "2:1.0-1"
    assert by_name["alpha"]["purl"] == "pkg:rpm/fedora/alpha@1.0-1?arch=noarch&epoch=2"
    assert by_name["gamma++"]["purl"] == "pkg:rpm/fedora/gamma%2B%2B@1.0~rc1-1?arch=noarch"
    assert by_name["beta"]["architecture"] not in (None, "noarch")


def test_rpm_sqlite_under_usr_lib_sysimage_with_var_link(rpm_root: Path) -> None:
    sysimage = rpm_root / "usr/lib/sysimage"
    sysimage.mkdir(parents=True)
    (rpm_root / "var/lib/rpm").rename(sysimage / "rpm")
    symlink(rpm_root, "var/lib/rpm", "../../usr/lib/sysimage/rpm")
    document = scan(rpm_root)
    assert len(document["Custom"]["packages"]) == 4
    # One database reached by two names is read once, without an "ignored" note.
    assert document["Custom"]["notes"] == []


@pytest.mark.parametrize(
    ("big_endian", "page_size", "checksum"),
    [
        (False, None, False),
        (False, 8192, False),
        (False, 512, False),
        (True, None, False),
        (True, 512, False),
        (False, 1024, True),
    ],
    # 4096: every header on overflow pages; 8192: small headers inline, big one not; 512: all
    # split over long overflow chains.
    ids=["le", "le-8192-inline", "le-512-overflow", "be", "be-512-overflow", "le-checksum"],
)
def test_rpm_bdb_matches_rpm_query(
    tmp_path: Path, rpm_root: Path, big_endian: bool, page_size: int | None, checksum: bool
) -> None:
    if rpmfixtures.missing(rpmfixtures.BDB_LOAD):
        pytest.skip(f"needs {rpmfixtures.BDB_LOAD} (Debian package db5.3-util) to make a BDB")
    truth = rpmfixtures.query_root(rpm_root)
    headers = rpmfixtures.sqlite_headers(rpm_root / "var/lib/rpm/rpmdb.sqlite")
    root = tmp_path / "centos"
    dbdir = root / "var/lib/rpm"
    dbdir.mkdir(parents=True)
    rpmfixtures.write_bdb(
        dbdir / "Packages", headers, big_endian=big_endian, page_size=page_size, checksum=checksum
    )
    if not checksum:
        # rpm's own read-only BDB backend agrees on what the file holds.
        assert rpmfixtures.query_bdb(dbdir) == truth
    before = snapshot(root)
    document = scan(root)
    assert snapshot(root) == before
    assert document["Successful"] == "true", document.get("Error")
    assert [row[:3] for row in packages_of(document)] == _expected(truth)
    assert {p["source"] for p in document["Custom"]["packages"]} == {"alpha", "beta", "gamma++"}


def test_bdb_overflow_chain_truncated_by_corruption(tmp_path: Path, rpm_root: Path) -> None:
    if rpmfixtures.missing(rpmfixtures.BDB_LOAD):
        pytest.skip(f"needs {rpmfixtures.BDB_LOAD} (Debian package db5.3-util) to make a BDB")
    headers = rpmfixtures.sqlite_headers(rpm_root / "var/lib/rpm/rpmdb.sqlite")
    root = tmp_path / "centos"
    (root / "var/lib/rpm").mkdir(parents=True)
    database = root / "var/lib/rpm/Packages"
    rpmfixtures.write_bdb(database, headers, page_size=512)
    content = bytearray(database.read_bytes())
    # Cut every overflow chain short: the first overflow page now ends its chain.
    overflow = next(offset for offset in range(512, len(content), 512) if content[offset + 25] == 7)
    struct.pack_into("<I", content, overflow + 16, 0)
    database.write_bytes(bytes(content))
    document = scan(root)
    assert document["Successful"] == "false"
    assert document["Error"].startswith("/var/lib/rpm/Packages: ")


# --- the script as the container runs it ------------------------------------------------------


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(INVENTORY_PATH)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_end_to_end_with_several_keys(tmp_path: Path, debian_root: Path) -> None:
    scanin = tmp_path / "scanin"
    scanout = tmp_path / "scanout"
    scanout.mkdir()
    good = "a" * 64
    bad = "rootfs-1a2b3c4d5e6f"
    scanin.mkdir()
    debian_root.rename(scanin / good)
    write(scanin / bad, "var/lib/rpm/Packages", "garbage " * 1000)
    write(scanin / ".hidden", "var/lib/dpkg/status", DPKG_STATUS)
    write(scanin, "not-a-directory", "")
    before = snapshot(scanin)
    result = run_script(
        {
            "ATOMICSCAN_SCANIN": str(scanin),
            "ATOMICSCAN_SCANOUT": str(scanout),
            "ATOMICSCAN_SCAN_TYPE": "inventory",
            "ATOMICSCAN_SCANNER_ARGS": json.dumps({"unknown": "ignored"}),
        }
    )
    assert result.returncode == 0, result.stderr
    assert snapshot(scanin) == before
    assert sorted(p.name for p in scanout.iterdir()) == sorted([good, bad])
    assert [p.name for p in (scanout / good).iterdir()] == ["json"]
    documents = {key: json.loads((scanout / key / "json").read_text()) for key in (good, bad)}
    for key, document in documents.items():
        assert document["Scanner"] == "packages"
        assert document["Scan Type"] == "inventory"
        assert document["UUID"] == key
        assert document["Results"] == []
        for field in ("Time", "Finished Time"):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", document[field])
    assert documents[good]["Successful"] == "true"
    assert "Error" not in documents[good]
    assert len(documents[good]["Custom"]["packages"]) == 6
    assert documents[bad]["Successful"] == "false"
    assert "bad magic" in documents[bad]["Error"]


def test_unsupported_scan_type_and_malformed_args_still_write_output(
    tmp_path: Path, debian_root: Path
) -> None:
    scanin = tmp_path / "scanin"
    scanin.mkdir()
    debian_root.rename(scanin / "k1")
    scanout = tmp_path / "scanout"
    result = run_script(
        {
            "ATOMICSCAN_SCANIN": str(scanin),
            "ATOMICSCAN_SCANOUT": str(scanout),
            "ATOMICSCAN_SCAN_TYPE": "vulnerabilities",
            "ATOMICSCAN_SCANNER_ARGS": "[not json",
        }
    )
    assert result.returncode == 0, result.stderr
    document = json.loads((scanout / "k1" / "json").read_text())
    assert document["Successful"] == "false"
    assert "unsupported scan type 'vulnerabilities'" in document["Error"]
    assert document["Custom"]["notes"] == ["ignored ATOMICSCAN_SCANNER_ARGS: not a JSON object"]


def test_exit_codes_when_output_or_input_is_unusable(tmp_path: Path, debian_root: Path) -> None:
    scanin = tmp_path / "scanin"
    scanin.mkdir()
    debian_root.rename(scanin / "k1")
    blocked = write(tmp_path, "scanout", "a file where the output directory should be")
    result = run_script({"ATOMICSCAN_SCANIN": str(scanin), "ATOMICSCAN_SCANOUT": str(blocked)})
    assert result.returncode == 1
    assert "cannot write output for k1" in result.stderr
    missing = run_script(
        {"ATOMICSCAN_SCANIN": str(tmp_path / "absent"), "ATOMICSCAN_SCANOUT": str(tmp_path)}
    )
    assert missing.returncode == 2
    assert "cannot list" in missing.stderr
