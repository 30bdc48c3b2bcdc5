"""Builders of rpm package databases for the packages scanner's tests.

Real databases come from rpmbuild, rpm and db5.3_load; synthetic headers and a tiny
hand-made Berkeley DB hash file cover corrupt inputs without any tool.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

RPM_TOOLS = ("rpmbuild", "rpm")
BDB_LOAD = "db5.3_load"
# rpm's own dbpath on Debian is ~/.rpmdb; the targets we imitate use the distro default.
DBPATH = "/var/lib/rpm"
# One line per package: name, [epoch:]version-release, arch, source rpm.
QUERY_FORMAT = "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\n"

RPMTAG_NAME = 1000
RPMTAG_VERSION = 1001
RPMTAG_RELEASE = 1002
RPMTAG_EPOCH = 1003
RPMTAG_ARCH = 1022
RPMTAG_SOURCERPM = 1044
TYPE_INT32 = 4
TYPE_STRING = 6


def missing(*tools: str) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


@dataclass(frozen=True)
class SpecPackage:
    """A trivial package without files; subpackages share its source rpm."""

    name: str
    version: str
    release: str
    epoch: int | None = None
    noarch: bool = True
    subpackages: tuple[str, ...] = ()
    description_lines: int = 1

    def spec(self) -> str:
        lines = [
            "%global debug_package %{nil}",
            f"Name: {self.name}",
            f"Version: {self.version}",
            f"Release: {self.release}",
            "Summary: atomicscan test package",
            "License: MIT",
        ]
        if self.epoch is not None:
            lines.append(f"Epoch: {self.epoch}")
        if self.noarch:
            lines.append("BuildArch: noarch")
        lines.append("%description")
        # A long description makes a header big enough for Berkeley DB overflow pages.
        lines += [f"line {n} of a deliberately long text" for n in range(self.description_lines)]
        lines.append("%files")
        for sub in self.subpackages:
            lines += [
                f"%package {sub}",
                f"Summary: subpackage {sub}",
                f"%description {sub}",
                "subpackage",
                f"%files {sub}",
            ]
        return "\n".join(lines) + "\n"


def run(argv: list[str], stdin: str | None = None) -> str:
    completed = subprocess.run(argv, input=stdin, check=True, capture_output=True, text=True)
    return completed.stdout


def build_rpms(workdir: Path, packages: list[SpecPackage]) -> list[Path]:
    topdir = workdir / "rpmbuild"
    for package in packages:
        spec = workdir / f"{package.name}.spec"
        spec.write_text(package.spec())
        run(["rpmbuild", "-bb", "--define", f"_topdir {topdir}", str(spec)])
    return sorted((topdir / "RPMS").rglob("*.rpm"))


def install_rpms(root: Path, rpms: list[Path]) -> Path:
    """Install into a fresh root; returns the rpmdb.sqlite rpm wrote there."""
    base = ["rpm", "--root", str(root), "--dbpath", DBPATH]
    run([*base, "--initdb"])
    run([*base, "-i", "--nodeps", "--ignorearch", "--ignoreos", *map(str, rpms)])
    return root / DBPATH.lstrip("/") / "rpmdb.sqlite"


def parse_query(output: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for line in output.splitlines():
        name, version, arch, srpm = line.split("\t")
        rows.append((name, version, arch, srpm))
    return sorted(rows)


def query_root(root: Path) -> list[tuple[str, str, str, str]]:
    return parse_query(
        run(["rpm", "--root", str(root), "--dbpath", DBPATH, "-qa", "--qf", QUERY_FORMAT])
    )


def query_bdb(dbdir: Path) -> list[tuple[str, str, str, str]]:
    argv = ["rpm", "--dbpath", str(dbdir), "--define", "_db_backend bdb_ro"]
    return parse_query(run([*argv, "-qa", "--qf", QUERY_FORMAT]))


def sqlite_headers(database: Path) -> list[tuple[int, bytes]]:
    uri = f"file:{database}?immutable=1"
    connection = sqlite3.connect(uri, uri=True)
    try:
        rows = connection.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
    finally:
        connection.close()
    return [(int(hnum), bytes(blob)) for hnum, blob in rows]


def _dump_escape(data: bytes) -> str:
    # db_load -T: printable bytes as they are, everything else (and '\') as \xx.
    return "".join(
        chr(byte) if 0x20 <= byte < 0x7F and byte != 0x5C else f"\\{byte:02x}" for byte in data
    )


def write_bdb(
    path: Path,
    headers: list[tuple[int, bytes]],
    *,
    big_endian: bool = False,
    page_size: int | None = None,
    checksum: bool = False,
) -> None:
    """A CentOS-7-style Packages hash database holding these headers, made by db5.3_load."""
    order = ">" if big_endian else "<"
    records = [(0, struct.pack(order + "I", max((h for h, _ in headers), default=0) + 1))]
    records += headers
    lines = []
    for key, value in records:
        lines += [_dump_escape(struct.pack(order + "I", key)), _dump_escape(value)]
    argv = [BDB_LOAD, "-T", "-t", "hash"]
    if big_endian:
        argv += ["-c", "db_lorder=4321"]
    if page_size is not None:
        argv += ["-c", f"db_pagesize={page_size}"]
    if checksum:
        argv += ["-c", "chksum=1"]
    run([*argv, str(path)], stdin="\n".join(lines) + "\n")


def encode_header(entries: list[tuple[int, int, str | int]]) -> bytes:
    """An rpmdb header blob (il, dl, index, store) from (tag, type, value) entries."""
    store = bytearray()
    index = bytearray()
    for tag, kind, value in entries:
        if kind == TYPE_INT32:
            store.extend(b"\0" * (-len(store) % 4))
            offset = len(store)
            store.extend(struct.pack(">I", int(value)))
        else:
            offset = len(store)
            store.extend(str(value).encode() + b"\0")
        index.extend(struct.pack(">IIiI", tag, kind, offset, 1))
    return struct.pack(">II", len(entries), len(store)) + bytes(index) + bytes(store)


def nevra_header(
    name: str,
    version: str,
    release: str,
    *,
    epoch: int | None = None,
    arch: str | None = "noarch",
    srpm: str | None = None,
) -> bytes:
    entries: list[tuple[int, int, str | int]] = [
        (RPMTAG_NAME, TYPE_STRING, name),
        (RPMTAG_VERSION, TYPE_STRING, version),
        (RPMTAG_RELEASE, TYPE_STRING, release),
    ]
    if epoch is not None:
        entries.append((RPMTAG_EPOCH, TYPE_INT32, epoch))
    if arch is not None:
        entries.append((RPMTAG_ARCH, TYPE_STRING, arch))
    if srpm is not None:
        entries.append((RPMTAG_SOURCERPM, TYPE_STRING, srpm))
    return encode_header(entries)


def write_rpm_sqlite(path: Path, headers: list[tuple[int, bytes]]) -> None:
    """An rpmdb.sqlite with just the Packages table, for blobs rpm itself would not write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.execute(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)"
        )
        connection.executemany("INSERT INTO Packages VALUES (?, ?)", headers)
        connection.commit()
    finally:
        connection.close()


def tiny_bdb(items: list[tuple[bytes, bytes]], *, page_size: int = 512) -> bytes:
    """A little-endian Berkeley DB hash file: metadata page plus one page of inline items.

    Good enough for the scanner's reader, which walks pages; libdb would want more.
    """
    meta = bytearray(page_size)
    struct.pack_into("<III", meta, 12, 0x061561, 9, page_size)
    meta[25] = 8  # P_HASHMETA
    page = bytearray(page_size)
    struct.pack_into("<I", page, 8, 1)
    offsets = []
    end = page_size
    for key, value in items:
        for item in (key, value):
            start = end - 1 - len(item)
            page[start] = 1  # H_KEYDATA
            page[start + 1 : end] = item
            offsets.append(start)
            end = start
    struct.pack_into("<HH", page, 20, len(offsets), end)
    page[25] = 13  # P_HASH
    struct.pack_into(f"<{len(offsets)}H", page, 26, *offsets)
    return bytes(meta) + bytes(page)
