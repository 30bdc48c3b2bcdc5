"""Scanner that lists the packages installed in every target rootfs mounted under /scanin."""

from __future__ import annotations

import contextlib
import datetime
import enum
import errno
import json
import os
import shlex
import sqlite3
import stat
import struct
import sys
import traceback
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SCANNER_NAME = "packages"
SCAN_TYPE = "inventory"
NO_DATABASE_NOTE = "no package database found (looked for dpkg, rpm, apk)"

# Linux gives up after 40 links; a target should never need more.
MAX_SYMLINKS = 40
# Text databases (dpkg status, apk installed) beyond this are treated as corrupt.
MAX_TEXT_BYTES = 256 * 1024 * 1024
# rpm itself rejects headers with more tags or data than this (hdrchkTags, hdrchkData).
MAX_HEADER_TAGS = 0xFFFF
MAX_HEADER_DATA = 0x0FFFFFFF
# A single Berkeley DB record (one rpm header) is never near this in practice.
MAX_BDB_RECORD = 64 * 1024 * 1024

OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")
OS_FIELDS = ("id", "version_id", "name", "pretty_name", "version_codename")

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_DIR = "var/lib/dpkg/status.d"
# Third word of dpkg's Status field for packages whose files are (at least partly) on disk.
DPKG_PRESENT_STATES = frozenset(
    {
        "installed",
        "half-configured",
        "unpacked",
        "half-installed",
        "triggers-awaited",
        "triggers-pending",
    }
)
APK_INSTALLED = "lib/apk/db/installed"
RPM_SQLITE_PATHS = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
RPM_BDB_PATHS = ("var/lib/rpm/Packages", "usr/lib/sysimage/rpm/Packages")
RPM_NDB_PATHS = ("var/lib/rpm/Packages.db", "usr/lib/sysimage/rpm/Packages.db")

RPMTAG_NAME = 1000
RPMTAG_VERSION = 1001
RPMTAG_RELEASE = 1002
RPMTAG_EPOCH = 1003
RPMTAG_ARCH = 1022
RPMTAG_SOURCERPM = 1044
RPM_WANTED_TAGS = frozenset(
    {RPMTAG_NAME, RPMTAG_VERSION, RPMTAG_RELEASE, RPMTAG_EPOCH, RPMTAG_ARCH, RPMTAG_SOURCERPM}
)
RPM_INT32_TYPE = 4
RPM_STRING_TYPES = frozenset({6, 9})  # STRING, I18NSTRING (first translation)

BDB_HASH_MAGIC = 0x061561
BDB_BTREE_MAGIC = 0x053162
BDB_PAGE_HEADER = 26
BDB_CHECKSUM_HEADER = 32
BDB_META_CHECKSUM_FLAG = 0x01
P_HASH_UNSORTED = 2
P_OVERFLOW = 7
P_HASH = 13
H_KEYDATA = 1
H_OFFPAGE = 3
# rpm keeps its next header number under key 0; that record is not a header.
BDB_RPM_COUNTER_KEY = b"\0\0\0\0"


class ExitCode(enum.IntEnum):
    OK = 0
    OUTPUT_FAILED = 1
    NO_INPUT = 2


class InventoryError(Exception):
    """A problem with one target (corrupt or unsupported data); reported in its json."""


@dataclass(frozen=True)
class Package:
    type: str
    name: str
    version: str
    architecture: str | None
    source: str | None
    # The version as the purl carries it: rpm's excludes the epoch, which is a qualifier.
    purl_version: str
    epoch: int | None = None

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.type, self.name, self.version, self.architecture or "")

    def to_json(self, os_info: dict[str, str | None] | None) -> dict[str, str | None]:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "source": self.source,
            "type": self.type,
            "purl": build_purl(self, os_info),
        }


def symlink_loop(relpath: str) -> OSError:
    """The error for a path whose links go round in circles, as the kernel's lookup gives."""
    return OSError(errno.ELOOP, "too many levels of symbolic links", "/" + relpath.lstrip("/"))


def is_symlink_loop(exc: OSError) -> bool:
    return exc.errno == errno.ELOOP


class TargetRoot:
    """Read-only access to a mounted rootfs, resolving symlinks as if it were '/'."""

    def __init__(self, root: str) -> None:
        self.root = root

    def resolve(self, relpath: str) -> str | None:
        """Return the host path of relpath with every symlink resolved inside the root.

        None when a component is missing or a non-directory is used as one; OSError (ELOOP)
        after more than MAX_SYMLINKS links, and each caller decides what a loop means.
        """
        pending = [part for part in reversed(relpath.split("/")) if part not in ("", ".")]
        resolved: list[str] = []
        links_followed = 0
        while pending:
            part = pending.pop()
            if part == "..":
                # Clamped at the root, like '/..' is '/'.
                if resolved:
                    resolved.pop()
                continue
            candidate = os.path.join(self.root, *resolved, part)
            try:
                info = os.lstat(candidate)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if stat.S_ISLNK(info.st_mode):
                links_followed += 1
                if links_followed > MAX_SYMLINKS:
                    raise symlink_loop(relpath)
                target = os.readlink(candidate)
                if target.startswith("/"):
                    resolved = []
                pending.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
                continue
            if pending and not stat.S_ISDIR(info.st_mode):
                return None
            resolved.append(part)
        return os.path.join(self.root, *resolved)

    def regular_file(self, relpath: str) -> str | None:
        """Host path of relpath if it resolves to a regular file, else None."""
        path = self.resolve(relpath)
        if path is None:
            return None
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        return path if stat.S_ISREG(info.st_mode) else None

    def is_dir(self, relpath: str) -> bool:
        path = self.resolve(relpath)
        return path is not None and stat.S_ISDIR(os.lstat(path).st_mode)

    def read_bytes(self, relpath: str, limit: int = MAX_TEXT_BYTES) -> bytes | None:
        """Contents of a regular file in the target, None when there is none."""
        path = self.regular_file(relpath)
        if path is None:
            return None
        # O_NOFOLLOW and O_NONBLOCK: never follow a link swapped in, never hang on a FIFO.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size > limit:
                raise InventoryError(f"/{relpath} is too large ({size} bytes)")
            chunks = []
            remaining = size
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def read_text(self, relpath: str) -> str | None:
        data = self.read_bytes(relpath)
        return None if data is None else data.decode("utf-8", errors="replace")

    def list_dir(self, relpath: str) -> list[str]:
        path = self.resolve(relpath)
        if path is None or not stat.S_ISDIR(os.lstat(path).st_mode):
            return []
        return sorted(os.listdir(path))


# --- os-release ---------------------------------------------------------------------------


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value pairs of an os-release file, with shell quoting removed."""
    values: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw_value = line.partition("=")
        key = key.strip()
        if not key.replace("_", "").isalnum():
            continue
        try:
            words = shlex.split(raw_value, comments=False, posix=True)
        except ValueError:
            # Unbalanced quotes: keep what is there rather than drop the field.
            words = [raw_value.strip().strip("\"'")]
        values[key] = " ".join(words)
    return values


def read_os_info(target: TargetRoot, notes: list[str]) -> dict[str, str | None] | None:
    for relpath in OS_RELEASE_PATHS:
        try:
            text = target.read_text(relpath)
        except InventoryError as exc:
            notes.append(f"ignored /{relpath}: {exc}")
            continue
        except OSError as exc:
            # A loop hides this file like a missing one; the next os-release still counts.
            if not is_symlink_loop(exc):
                raise
            notes.append(f"ignored /{relpath}: {exc.strerror}")
            continue
        if text is not None:
            fields = parse_os_release(text)
            return {name: fields.get(name.upper()) for name in OS_FIELDS}
    return None


# --- dpkg and apk (text stanzas) ----------------------------------------------------------


def iter_deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Stanzas of a dpkg status file; field names lowercased, continuation lines kept."""
    fields: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, current = {}, None
        elif line[0] in " \t":
            if current is not None:
                fields[current] += "\n" + line[1:]
        elif ":" in line:
            name, _, value = line.partition(":")
            current = name.strip().lower()
            fields[current] = value.strip()
        else:
            current = None
    if fields:
        yield fields


def dpkg_is_present(fields: dict[str, str], require_status: bool) -> bool:
    """Whether a dpkg stanza describes a package whose files are on disk."""
    status = fields.get("status")
    if status is None:
        # distroless status.d files carry no Status: everything there is installed.
        return not require_status
    words = status.split()
    return len(words) == 3 and words[2] in DPKG_PRESENT_STATES


def dpkg_package(fields: dict[str, str]) -> Package | None:
    name = fields.get("package")
    version = fields.get("version")
    if not name or not version:
        return None
    source = fields.get("source", "").split("(")[0].strip() or name
    return Package(
        type="deb",
        name=name,
        version=version,
        architecture=fields.get("architecture") or None,
        source=source,
        purl_version=version,
    )


def collect_dpkg(target: TargetRoot, notes: list[str]) -> list[Package] | None:
    texts: list[tuple[str, bool]] = []
    status = target.read_text(DPKG_STATUS)
    if status is not None:
        texts.append((status, True))
    has_status_dir = target.is_dir(DPKG_STATUS_DIR)
    for name in target.list_dir(DPKG_STATUS_DIR):
        if name.startswith(".") or name.endswith(".md5sums"):
            continue
        text = target.read_text(f"{DPKG_STATUS_DIR}/{name}")
        if text is not None:
            texts.append((text, False))
    if status is None and not has_status_dir:
        return None
    packages = []
    skipped = 0
    for text, require_status in texts:
        for fields in iter_deb822_stanzas(text):
            if not dpkg_is_present(fields, require_status):
                continue
            package = dpkg_package(fields)
            if package is None:
                skipped += 1
            else:
                packages.append(package)
    if skipped:
        notes.append(f"dpkg: skipped {skipped} stanza(s) without Package or Version")
    return packages


def collect_apk(target: TargetRoot) -> list[Package] | None:
    text = target.read_text(APK_INSTALLED)
    if text is None:
        return None
    packages = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            # apk keys are single case-sensitive letters ('P' name, 'p' provides).
            if len(line) >= 2 and line[1] == ":":
                fields.setdefault(line[0], line[2:])
        if "P" in fields and "V" in fields:
            packages.append(
                Package(
                    type="apk",
                    name=fields["P"],
                    version=fields["V"],
                    architecture=fields.get("A") or None,
                    source=fields.get("o") or None,
                    purl_version=fields["V"],
                )
            )
    return packages


# --- rpm headers --------------------------------------------------------------------------


def _header_string(store: bytes, tag: int, entry: tuple[int, int, int]) -> str:
    kind, offset, count = entry
    if kind not in RPM_STRING_TYPES or count < 1:
        raise InventoryError(f"rpm header tag {tag} has type {kind}, expected a string")
    if not 0 <= offset < len(store):
        raise InventoryError(f"rpm header tag {tag} points outside the data store")
    end = store.find(b"\0", offset)
    if end < 0:
        raise InventoryError(f"rpm header tag {tag} is not NUL-terminated")
    return store[offset:end].decode("utf-8", errors="replace")


def _header_int32(store: bytes, tag: int, entry: tuple[int, int, int]) -> int:
    kind, offset, count = entry
    if kind != RPM_INT32_TYPE or count < 1:
        raise InventoryError(f"rpm header tag {tag} has type {kind}, expected int32")
    if not 0 <= offset <= len(store) - 4:
        raise InventoryError(f"rpm header tag {tag} points outside the data store")
    value: int = struct.unpack_from(">I", store, offset)[0]
    return value


def source_name_from_srpm(srpm: str | None) -> str | None:
    """'foo-1.0-1.src.rpm' -> 'foo'; None when the name is not of that shape."""
    if not srpm:
        return None
    for suffix in (".src.rpm", ".nosrc.rpm"):
        if srpm.endswith(suffix):
            parts = srpm[: -len(suffix)].rsplit("-", 2)
            if len(parts) == 3 and all(parts):
                return parts[0]
    return None


def parse_rpm_header(blob: bytes) -> Package:
    """The package described by an rpmdb header blob (il, dl, index, data store; no magic)."""
    if len(blob) < 8:
        raise InventoryError(f"rpm header of {len(blob)} bytes is truncated")
    index_count, data_length = struct.unpack_from(">II", blob, 0)
    if not 1 <= index_count <= MAX_HEADER_TAGS:
        raise InventoryError(f"rpm header claims {index_count} tags")
    if data_length > MAX_HEADER_DATA:
        raise InventoryError(f"rpm header claims {data_length} bytes of data")
    store_start = 8 + 16 * index_count
    store_end = store_start + data_length
    if store_end > len(blob):
        raise InventoryError(f"rpm header is truncated ({len(blob)} of {store_end} bytes)")
    store = blob[store_start:store_end]
    entries: dict[int, tuple[int, int, int]] = {}
    for tag, kind, offset, count in struct.iter_unpack(">IIiI", blob[8:store_start]):
        # A later entry for the same tag overrides, as rpm does for dribble entries.
        if tag in RPM_WANTED_TAGS:
            entries[tag] = (kind, offset, count)
    for required in (RPMTAG_NAME, RPMTAG_VERSION, RPMTAG_RELEASE):
        if required not in entries:
            raise InventoryError(f"rpm header lacks tag {required}")

    def optional_string(tag: int) -> str | None:
        return _header_string(store, tag, entries[tag]) if tag in entries else None

    name = _header_string(store, RPMTAG_NAME, entries[RPMTAG_NAME])
    version = _header_string(store, RPMTAG_VERSION, entries[RPMTAG_VERSION])
    release = _header_string(store, RPMTAG_RELEASE, entries[RPMTAG_RELEASE])
    epoch = None
    if RPMTAG_EPOCH in entries:
        epoch = _header_int32(store, RPMTAG_EPOCH, entries[RPMTAG_EPOCH])
    arch = optional_string(RPMTAG_ARCH)
    srpm = optional_string(RPMTAG_SOURCERPM)
    version_release = f"{version}-{release}"
    return Package(
        type="rpm",
        name=name,
        version=version_release if epoch is None else f"{epoch}:{version_release}",
        architecture=arch,
        source=source_name_from_srpm(srpm),
        purl_version=version_release,
        epoch=epoch,
    )


# --- rpm databases ------------------------------------------------------------------------


def read_rpm_sqlite(path: str) -> list[Package]:
    # immutable=1: no locks, no -shm/-wal files, nothing ever written next to the database.
    uri = f"file:{urllib.parse.quote(path)}?mode=ro&immutable=1"
    packages = []
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            connection.execute("PRAGMA query_only = 1")
            for hnum, blob in connection.execute("SELECT hnum, blob FROM Packages ORDER BY hnum"):
                if not isinstance(blob, bytes):
                    raise InventoryError(f"rpm header #{hnum} is not a blob")
                try:
                    packages.append(parse_rpm_header(blob))
                except InventoryError as exc:
                    raise InventoryError(f"rpm header #{hnum}: {exc}") from exc
    except sqlite3.Error as exc:
        raise InventoryError(f"sqlite: {exc}") from exc
    return packages


class BerkeleyHashReader:
    """Key/data pairs of a Berkeley DB hash database, read page by page without libdb."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        meta = os.pread(fd, 512, 0)
        if len(meta) < 512:
            raise InventoryError("file is too short to be a Berkeley DB database")
        for order in ("<", ">"):
            magic = struct.unpack_from(order + "I", meta, 12)[0]
            if magic == BDB_HASH_MAGIC:
                break
            if magic == BDB_BTREE_MAGIC:
                raise InventoryError("Berkeley DB btree database, expected hash")
        else:
            raise InventoryError("not a Berkeley DB hash database (bad magic)")
        self.order = order
        self.page_size: int = struct.unpack_from(order + "I", meta, 20)[0]
        if self.page_size not in {512 << shift for shift in range(8)}:
            raise InventoryError(f"Berkeley DB page size {self.page_size} is invalid")
        if meta[24] != 0:
            raise InventoryError("encrypted Berkeley DB databases are not supported")
        checksummed = meta[26] & BDB_META_CHECKSUM_FLAG
        self.header_size = BDB_CHECKSUM_HEADER if checksummed else BDB_PAGE_HEADER
        self.page_count = os.fstat(fd).st_size // self.page_size

    def _page(self, pgno: int) -> bytes:
        page = os.pread(self.fd, self.page_size, pgno * self.page_size)
        if len(page) != self.page_size:
            raise InventoryError(f"Berkeley DB page {pgno} is truncated")
        return page

    def _overflow(self, pgno: int, total: int) -> bytes:
        if total > MAX_BDB_RECORD or total > self.page_count * self.page_size:
            raise InventoryError(f"Berkeley DB overflow item claims {total} bytes")
        chunks = []
        remaining = total
        pages_read = 0
        while remaining > 0:
            pages_read += 1
            if pages_read > self.page_count:
                raise InventoryError("Berkeley DB overflow chain is cyclic")
            if not 0 < pgno < self.page_count:
                raise InventoryError(f"Berkeley DB overflow chain points to page {pgno}")
            page = self._page(pgno)
            if page[25] != P_OVERFLOW:
                raise InventoryError(f"Berkeley DB page {pgno} is not an overflow page")
            # On overflow pages the hf_offset field holds the length of the data on the page.
            next_pgno, _, length = struct.unpack_from(self.order + "IHH", page, 16)
            if not 0 < length <= min(remaining, self.page_size - self.header_size):
                raise InventoryError(f"Berkeley DB overflow page {pgno} has a bad length")
            chunks.append(page[self.header_size : self.header_size + length])
            remaining -= length
            pgno = next_pgno
        return b"".join(chunks)

    def _item(self, page: bytes, pgno: int, offsets: tuple[int, ...], index: int) -> bytes:
        start = offsets[index]
        end = self.page_size if index == 0 else offsets[index - 1]
        if not self.header_size + 2 * len(offsets) <= start < end <= self.page_size:
            raise InventoryError(f"Berkeley DB page {pgno} has a bad item offset")
        kind = page[start]
        if kind == H_KEYDATA:
            return page[start + 1 : end]
        if kind == H_OFFPAGE:
            if end - start < 12:
                raise InventoryError(f"Berkeley DB page {pgno} has a short overflow reference")
            first, total = struct.unpack_from(self.order + "II", page, start + 4)
            return self._overflow(first, total)
        raise InventoryError(f"Berkeley DB page {pgno} has an unsupported item type {kind}")

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for pgno in range(1, self.page_count):
            page = self._page(pgno)
            if page[25] not in (P_HASH, P_HASH_UNSORTED):
                continue
            entries: int = struct.unpack_from(self.order + "H", page, 20)[0]
            if entries % 2 or self.header_size + 2 * entries > self.page_size:
                raise InventoryError(f"Berkeley DB page {pgno} has a bad entry count")
            offsets = struct.unpack_from(f"{self.order}{entries}H", page, self.header_size)
            for index in range(0, entries, 2):
                key = self._item(page, pgno, offsets, index)
                yield key, self._item(page, pgno, offsets, index + 1)


def read_rpm_bdb(path: str) -> list[Package]:
    packages = []
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        reader = BerkeleyHashReader(fd)
        for key, data in reader.items():
            if key == BDB_RPM_COUNTER_KEY:
                continue
            try:
                packages.append(parse_rpm_header(data))
            except InventoryError as exc:
                raise InventoryError(f"rpm header with key {key.hex()}: {exc}") from exc
    finally:
        os.close(fd)
    return packages


def collect_rpm(target: TargetRoot, notes: list[str]) -> list[Package] | None:
    candidates: list[tuple[str, str]] = []
    seen: set[str] = set()
    for relpath in (*RPM_SQLITE_PATHS, *RPM_BDB_PATHS):
        path = target.regular_file(relpath)
        # /var/lib/rpm is often a link to /usr/lib/sysimage/rpm: one database, two names.
        if path is not None and path not in seen:
            seen.add(path)
            candidates.append((relpath, path))
    if not candidates:
        for relpath in RPM_NDB_PATHS:
            if target.regular_file(relpath) is not None:
                raise InventoryError(f"/{relpath}: rpm ndb databases are not supported")
        return None
    relpath, path = candidates[0]
    for ignored, _ in candidates[1:]:
        notes.append(f"rpm: read /{relpath}, ignored /{ignored}")
    try:
        if relpath.endswith(".sqlite"):
            wal = target.regular_file(relpath + "-wal")
            if wal is not None and os.path.getsize(wal) > 0:
                notes.append(f"rpm: /{relpath}-wal is not empty; changes only in it were not read")
            return read_rpm_sqlite(path)
        return read_rpm_bdb(path)
    except InventoryError as exc:
        raise InventoryError(f"/{relpath}: {exc}") from exc


# --- purl and the per-target document -----------------------------------------------------


def _purl_quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def build_purl(package: Package, os_info: dict[str, str | None] | None) -> str:
    os_id = ((os_info or {}).get("id") or "").lower() or None
    version_id = (os_info or {}).get("version_id")
    qualifiers: dict[str, str] = {}
    if package.architecture:
        qualifiers["arch"] = package.architecture
    if package.type == "deb":
        namespace: str | None = os_id or "debian"
        if os_id:
            qualifiers["distro"] = f"{os_id}-{version_id}" if version_id else os_id
    elif package.type == "rpm":
        namespace = os_id
        if package.epoch is not None:
            qualifiers["epoch"] = str(package.epoch)
    else:
        namespace = os_id or "alpine"
    purl = f"pkg:{package.type}/"
    if namespace:
        purl += _purl_quote(namespace) + "/"
    purl += f"{_purl_quote(package.name)}@{_purl_quote(package.purl_version)}"
    if qualifiers:
        pairs = sorted(qualifiers.items())
        purl += "?" + "&".join(f"{key}={_purl_quote(value)}" for key, value in pairs)
    return purl


def collect_packages(target: TargetRoot, notes: list[str]) -> list[Package]:
    found = [collect_dpkg(target, notes), collect_rpm(target, notes), collect_apk(target)]
    if all(packages is None for packages in found):
        notes.append(NO_DATABASE_NOTE)
    packages = [package for group in found if group for package in group]
    return sorted(packages, key=Package.sort_key)


def one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scan_target(root: str, key: str, scan_type: str, notes: list[str]) -> dict[str, Any]:
    """The json document for one target; failures are reported in it, not raised."""
    started = utc_now()
    os_info: dict[str, str | None] | None = None
    packages: list[Package] = []
    error: str | None = None
    try:
        if scan_type != SCAN_TYPE:
            raise InventoryError(f"unsupported scan type {scan_type!r}, only {SCAN_TYPE!r}")
        target = TargetRoot(root)
        os_info = read_os_info(target, notes)
        packages = collect_packages(target, notes)
    except InventoryError as exc:
        error = one_line(str(exc))
    except (OSError, UnicodeError) as exc:
        error = one_line(f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        # One bad target must not cost the others their output; the traceback goes to stderr.
        traceback.print_exc()
        error = one_line(f"internal error: {type(exc).__name__}: {exc}")
    document: dict[str, Any] = {
        "Scanner": SCANNER_NAME,
        "Time": started,
        "Finished Time": utc_now(),
        "Successful": "false" if error else "true",
        "Scan Type": scan_type,
        "UUID": key,
        "Results": [],
        "Custom": {
            "os": os_info,
            "packages": [] if error else [package.to_json(os_info) for package in packages],
            "notes": notes,
        },
    }
    if error:
        document["Error"] = error
    return document


def write_document(out_dir: str, document: dict[str, Any]) -> None:
    os.makedirs(out_dir, exist_ok=True)
    final = os.path.join(out_dir, "json")
    partial = final + ".partial"
    with open(partial, "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=2, ensure_ascii=False)
        stream.write("\n")
    os.replace(partial, final)


def scanner_args_notes(raw: str | None) -> list[str]:
    """This scanner takes no arguments; a malformed value is only worth a note."""
    if raw is None:
        return []
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return ["ignored ATOMICSCAN_SCANNER_ARGS: not a JSON object"]
    return []


def main() -> int:
    scan_in = os.environ.get("ATOMICSCAN_SCANIN", "/scanin")
    scan_out = os.environ.get("ATOMICSCAN_SCANOUT", "/scanout")
    scan_type = os.environ.get("ATOMICSCAN_SCAN_TYPE", SCAN_TYPE)
    args_notes = scanner_args_notes(os.environ.get("ATOMICSCAN_SCANNER_ARGS"))
    try:
        keys = sorted(
            entry.name
            for entry in os.scandir(scan_in)
            if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)
        )
    except OSError as exc:
        print(f"packages scanner: cannot list {scan_in}: {exc}", file=sys.stderr)
        return ExitCode.NO_INPUT
    status = ExitCode.OK
    for key in keys:
        document = scan_target(os.path.join(scan_in, key), key, scan_type, list(args_notes))
        try:
            write_document(os.path.join(scan_out, key), document)
        except OSError as exc:
            print(f"packages scanner: cannot write output for {key}: {exc}", file=sys.stderr)
            status = ExitCode.OUTPUT_FAILED
    return status


if __name__ == "__main__":
    sys.exit(main())
