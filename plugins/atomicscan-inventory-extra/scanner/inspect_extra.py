"""inventory-extra scanner: libc flavour, language runtimes and labels of each target.

For every target directory under /scanin it writes /scanout/<key>/json (atomic scan's
fields) with ``Custom``::

    {"libc": {"flavour": "glibc", "version": "2.36", "path": "/usr/lib/.../libc.so.6"},
     "runtimes": [{"name": "python", "version": "3.11.2", "path": "/usr/bin/python3.11"}],
     "labels": {"maintainer": "..."},
     "notes": ["..."]}

Nothing from a target is ever executed: versions come from file names, headers, release
files, package databases and the Go build information embedded in binaries. Targets are
untrusted: symlinks are resolved as if the target were "/", files are opened without
following links or blocking on FIFOs, and every read is bounded. Standard library only.
"""

from __future__ import annotations

import datetime
import errno
import math
import os
import re
import stat
import struct
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

SCANNER_NAME = "inventory-extra"
SCAN_TYPE = "lumogon"

MAX_SYMLINK_HOPS = 40
MAX_TEXT_BYTES = 64 * 1024 * 1024
#: How much of libc.so.6 is searched for its version banner.
MAX_LIBC_BYTES = 32 * 1024 * 1024
#: Without ELF section headers, how much of a file is searched for Go build information.
GO_SCAN_BYTES = 16 * 1024 * 1024
GO_CHUNK = 1024 * 1024
MAX_GO_SECTION = 4 * 1024 * 1024
MAX_GO_BINARIES = 1000
#: Directories whose files are never looked at when searching for Go binaries.
SKIPPED_TOP_DIRS = frozenset({"proc", "sys", "dev"})

LIB_DIRS = ("lib", "lib64", "lib32", "libx32", "usr/lib", "usr/lib64", "usr/lib32",
            "usr/libx32", "usr/local/lib")
BIN_DIRS = ("bin", "usr/bin", "usr/local/bin")
PYTHON_LIB_PARENTS = ("usr/lib", "usr/lib64", "usr/local/lib", "usr/local/lib64")
PYTHON_INCLUDE_PARENTS = ("usr/include", "usr/local/include")
NODE_BINARIES = ("usr/bin/node", "usr/local/bin/node", "usr/bin/nodejs")
NODE_HEADERS = ("usr/include/node/node_version.h", "usr/local/include/node/node_version.h")
NODE_PACKAGES = ("nodejs", "nodejs-current")
JAVA_PARENTS = ("usr/lib/jvm", "usr/java", "opt/java")

PYTHON_NAME = re.compile(r"python(\d)\.(\d{1,3})")
GLIBC_LOADER = re.compile(r"ld-linux[\w.-]*\.so\.\d+")
GLIBC_OLD_NAME = re.compile(r"libc-(\d+\.\d+(?:\.\d+)?)\.so")
MUSL_LOADER = re.compile(r"ld-musl-[\w.-]+\.so\.1")
GLIBC_BANNER = re.compile(rb"GNU C Library [^\x00\n]{0,200}?version (\d+\.\d+(?:\.\d+)?)")
DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)\s+(.+?)\s*$", re.MULTILINE)

ELF_MAGIC = b"\x7fELF"
GO_MAGIC = b"\xff Go buildinf:"
GO_HEADER_SIZE = 32
GO_FLAG_BIG_ENDIAN = 0x1
GO_FLAG_INLINE_STRINGS = 0x2
GO_VERSION = re.compile(r"(?:devel )?go\d[\w.+\- :]*")
SHT_NOBITS = 8
PT_LOAD = 1
PF_X = 1
PF_W = 2


class ScanError(Exception):
    """A problem with one target; it fails that target's scan, not the others."""


# --- JSON: python3-minimal has no json module, so a small reader and writer -------------

_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_JSON_STRING = re.compile(r'"((?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*)"')
_JSON_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])')
_JSON_WORDS = {"true": True, "false": False, "null": None}
_JSON_UNESCAPED = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n",
                   "r": "\r", "t": "\t"}
_JSON_ESCAPED = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                 "\r": "\\r", "\t": "\\t"}
_JSON_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]')
MAX_JSON_DEPTH = 64


class _JsonReader:
    """RFC 8259 JSON, strictly: no trailing commas, no NaN, no comments."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"invalid JSON at character {self.at}: {what}")

    def skip_space(self) -> str:
        match = _JSON_SPACE.match(self.text, self.at)
        self.at = match.end() if match else self.at
        return self.text[self.at:self.at + 1]

    def expect(self, char: str) -> None:
        if self.skip_space() != char:
            raise self.fail(f"expected {char!r}")
        self.at += 1

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_JSON_DEPTH:
            raise self.fail("nested too deeply")
        char = self.skip_space()
        if char == "{":
            return self.members(depth)
        if char == "[":
            return self.elements(depth)
        if char == '"':
            return self.string()
        for word, value in _JSON_WORDS.items():
            if self.text.startswith(word, self.at):
                self.at += len(word)
                return value
        number = _JSON_NUMBER.match(self.text, self.at)
        if number is None or not number.group():
            raise self.fail("expected a value")
        self.at = number.end()
        return float(number.group()) if number.group(1) or number.group(2) else int(
            number.group())

    def string(self) -> str:
        match = _JSON_STRING.match(self.text, self.at)
        if match is None:
            raise self.fail("bad string")
        self.at = match.end()

        def unescape(escape: re.Match[str]) -> str:
            code = escape.group(1)
            return chr(int(code[1:], 16)) if code[0] == "u" else _JSON_UNESCAPED[code]

        text = _JSON_ESCAPE.sub(unescape, match.group(1))
        # Join the surrogate pairs that \uXXXX escapes leave; lone ones stay as they are.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")

    def members(self, depth: int) -> dict[str, Any]:
        self.at += 1
        result: dict[str, Any] = {}
        if self.skip_space() == "}":
            self.at += 1
            return result
        while True:
            if self.skip_space() != '"':
                raise self.fail("expected a member name")
            key = self.string()
            self.expect(":")
            result[key] = self.value(depth + 1)
            if self.skip_space() == "}":
                self.at += 1
                return result
            self.expect(",")

    def elements(self, depth: int) -> list[Any]:
        self.at += 1
        result: list[Any] = []
        if self.skip_space() == "]":
            self.at += 1
            return result
        while True:
            result.append(self.value(depth + 1))
            if self.skip_space() == "]":
                self.at += 1
                return result
            self.expect(",")


def json_loads(text: str) -> Any:
    """Parse one JSON document (the json module's ``loads``, for what scanners read)."""
    reader = _JsonReader(text)
    value = reader.value()
    if reader.skip_space():
        raise reader.fail("extra data after the document")
    return value


def _json_string(text: str) -> str:
    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if char in _JSON_ESCAPED:
            return _JSON_ESCAPED[char]
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            return f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}"
        return f"\\u{code:04x}"

    return '"' + _JSON_NEEDS_ESCAPE.sub(escape, text) + '"'


def _json_container(items: list[str], brackets: str, indent: int, level: int) -> str:
    if not items:
        return brackets
    inner = "\n" + " " * (indent * (level + 1))
    return brackets[0] + inner + ("," + inner).join(items) + "\n" + " " * (
        indent * level) + brackets[1]


def json_dumps(value: Any, indent: int = 2, level: int = 0) -> str:
    """Pure-ASCII JSON of dicts, lists, strings, numbers, booleans and None."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        members = [f"{_json_string(str(key))}: {json_dumps(item, indent, level + 1)}"
                   for key, item in value.items()]
        return _json_container(members, "{}", indent, level)
    if isinstance(value, list | tuple):
        elements = [json_dumps(item, indent, level + 1) for item in value]
        return _json_container(elements, "[]", indent, level)
    raise ValueError(f"{value!r} has no JSON form")


# --- the target's filesystem, resolved as if it were "/" ----------------------------------


def symlink_loop(relpath: str) -> OSError:
    """The error for a path whose links go round in circles, as the kernel's lookup gives."""
    return OSError(errno.ELOOP, "too many levels of symbolic links", "/" + relpath.lstrip("/"))


class TargetRoot:
    """Read-only access to one target; every path is resolved inside it.

    A path behind a symlink loop is skipped like one that can't be read (the inventory is
    best effort); ``loops`` keeps each such path, for a note.
    """

    def __init__(self, top: str) -> None:
        self.top = top
        self.loops: list[str] = []

    def canonical(self, relpath: str) -> str | None:
        """``relpath`` with every symlink resolved inside the target ("" is the root).

        ``None`` when a component is missing or a non-directory is used as one; OSError
        (ELOOP) after more than MAX_SYMLINK_HOPS links, and each caller decides what a loop
        means.
        """
        todo = [part for part in reversed(relpath.split("/")) if part not in ("", ".")]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop()
            if part == "..":
                if done:
                    done.pop()
                continue
            host = os.path.join(self.top, *done, part)
            try:
                info = os.lstat(host)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                return None
            if stat.S_ISLNK(info.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise symlink_loop(relpath)
                link = os.readlink(host)
                if link.startswith("/"):
                    done = []
                todo.extend(p for p in reversed(link.split("/")) if p not in ("", "."))
                continue
            if todo and not stat.S_ISDIR(info.st_mode):
                return None
            done.append(part)
        return "/".join(done)

    def host_path(self, canonical: str) -> str:
        return os.path.join(self.top, canonical) if canonical else self.top

    def _kind(self, relpath: str, test: Callable[[int], bool]) -> str | None:
        try:
            canonical = self.canonical(relpath)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            if exc.filename not in self.loops:
                self.loops.append(str(exc.filename))
            return None
        if canonical is None:
            return None
        try:
            mode = os.lstat(self.host_path(canonical)).st_mode
        except FileNotFoundError:
            return None
        return canonical if test(mode) else None

    def regular_file(self, relpath: str) -> str | None:
        """The canonical path of ``relpath`` when it is a regular file."""
        return self._kind(relpath, stat.S_ISREG)

    def directory(self, relpath: str) -> str | None:
        """The canonical path of ``relpath`` when it is a directory."""
        return self._kind(relpath, stat.S_ISDIR)

    def list_dir(self, relpath: str) -> list[str]:
        canonical = self.directory(relpath)
        if canonical is None:
            return []
        try:
            return sorted(os.listdir(self.host_path(canonical)))
        except PermissionError:
            return []

    def read(self, relpath: str, limit: int, *, truncate: bool = False) -> bytes | None:
        """A regular file's bytes; ``None`` when there is none or it can't be read.

        Beyond ``limit`` bytes: the first ``limit`` bytes with ``truncate``, else an error.
        """
        canonical = self.regular_file(relpath)
        if canonical is None:
            return None
        try:
            fd = os.open(self.host_path(canonical),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except PermissionError:
            return None
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = stream.read(limit + 1)
        if len(data) > limit:
            if not truncate:
                raise ScanError(f"/{relpath} is larger than {limit} bytes")
            data = data[:limit]
        return data

    def read_text(self, relpath: str) -> str | None:
        data = self.read(relpath, MAX_TEXT_BYTES)
        return None if data is None else data.decode("utf-8", errors="replace")


# --- package databases (only to name versions; the packages scanner lists them) -----------


def upstream_version(version: str, kind: str) -> str:
    """The upstream part of a package version: 18.19.0 of 1:18.19.0+dfsg-6~deb12u2."""
    if kind == "deb":
        epoch, sep, rest = version.partition(":")
        if sep and epoch.isdigit():
            version = rest
        version = version.rpartition("-")[0] or version
    else:
        version = re.sub(r"-r\d+$", "", version)
    return re.split(r"[+~_]", version, maxsplit=1)[0]


class PackageVersions:
    """Installed package versions from dpkg's status file and apk's database, read once."""

    def __init__(self, target: TargetRoot) -> None:
        self.target = target
        self._versions: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        versions: dict[str, str] = {}
        status = self.target.read_text("var/lib/dpkg/status") or ""
        for stanza in status.split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                name, sep, value = line.partition(":")
                if sep and line[:1] not in (" ", "\t"):
                    fields[name.strip().lower()] = value.strip()
            installed = fields.get("status", "").endswith(" installed")
            if installed and fields.get("package") and fields.get("version"):
                versions.setdefault(fields["package"].partition(":")[0],
                                    upstream_version(fields["version"], "deb"))
        apk = self.target.read_text("lib/apk/db/installed") or ""
        for block in apk.split("\n\n"):
            entries = {line[0]: line[2:] for line in reversed(block.splitlines())
                       if len(line) > 2 and line[1] == ":"}
            if entries.get("P") and entries.get("V"):
                versions.setdefault(entries["P"], upstream_version(entries["V"], "apk"))
        return versions

    def get(self, *names: str) -> str | None:
        if self._versions is None:
            self._versions = self._load()
        return next((self._versions[name] for name in names if name in self._versions), None)


# --- libc ---------------------------------------------------------------------------------


class LibcFinding:
    def __init__(self, flavour: str, path: str, version: str | None = None) -> None:
        self.flavour = flavour
        self.path = path
        self.version = version


def _library_dirs(target: TargetRoot) -> list[str]:
    """Canonical library directories, with their multiarch subdirectories, each once."""
    seen: list[str] = []
    for relpath in LIB_DIRS:
        canonical = target.directory(relpath)
        if canonical is None or canonical in seen:
            continue
        seen.append(canonical)
        for name in target.list_dir(canonical):
            sub = target.directory(f"{canonical}/{name}")
            if "-linux" in name and sub is not None and sub not in seen:
                seen.append(sub)
    return seen


def glibc_version(target: TargetRoot, libc_path: str) -> str | None:
    data = target.read(libc_path, MAX_LIBC_BYTES, truncate=True)
    match = GLIBC_BANNER.search(data or b"")
    return match.group(1).decode("ascii") if match else None


def detect_libc(target: TargetRoot, packages: PackageVersions,
                notes: list[str]) -> dict[str, Any] | None:
    """The C library: glibc's libc.so.6 first, then musl's loader, then a lone glibc loader.

    A glibc loader without libc.so.6 beside it is what glibc compatibility layers on musl
    systems install: the system's C library is still musl.
    """
    libcs: list[LibcFinding] = []
    musl: list[LibcFinding] = []
    loaders: list[LibcFinding] = []
    for directory in _library_dirs(target):
        for name in target.list_dir(directory):
            old = GLIBC_OLD_NAME.fullmatch(name)
            if name == "libc.so.6" or old:
                found, flavour = libcs, "glibc"
            elif MUSL_LOADER.fullmatch(name):
                found, flavour = musl, "musl"
            elif GLIBC_LOADER.fullmatch(name):
                found, flavour = loaders, "glibc"
            else:
                continue
            path = target.regular_file(f"{directory}/{name}")
            if path is not None:
                found.append(LibcFinding(flavour, "/" + path, old.group(1) if old else None))
    ranked = [*libcs, *musl, *loaders]
    if not ranked:
        return None
    chosen = ranked[0]
    if chosen.flavour == "musl":
        chosen.version = packages.get("musl")
    elif chosen.version is None:
        versions = (glibc_version(target, finding.path) for finding in libcs)
        chosen.version = next((v for v in versions if v), None) or packages.get("libc6",
                                                                              "glibc")
    others = sorted({finding.path for finding in ranked if finding.flavour != chosen.flavour})
    if others:
        other = "musl" if chosen.flavour == "glibc" else "glibc"
        notes.append(f"libc: also found {other} at {', '.join(others)}")
    return {"flavour": chosen.flavour, "version": chosen.version, "path": chosen.path}


# --- language runtimes --------------------------------------------------------------------


class RuntimeFound(NamedTuple):
    name: str
    version: str | None
    path: str

    def to_json(self) -> dict[str, str | None]:
        return {"name": self.name, "version": self.version, "path": self.path}


def _defines(text: str) -> dict[str, str]:
    return {name: value.strip().strip('"') for name, value in DEFINE.findall(text)}


def detect_python(target: TargetRoot, packages: PackageVersions) -> list[RuntimeFound]:
    """One entry per pythonX.Y: a binary in a bin directory, or a library directory."""
    places: dict[tuple[int, int], str] = {}
    for parent in BIN_DIRS:
        for name in target.list_dir(parent):
            match = PYTHON_NAME.fullmatch(name)
            path = target.regular_file(f"{parent}/{name}") if match else None
            if match and path is not None:
                places.setdefault((int(match.group(1)), int(match.group(2))), "/" + path)
    for parent in PYTHON_LIB_PARENTS:
        for name in target.list_dir(parent):
            match = PYTHON_NAME.fullmatch(name)
            path = target.directory(f"{parent}/{name}") if match else None
            if match and path is not None:
                places.setdefault((int(match.group(1)), int(match.group(2))), "/" + path)
    found = []
    for (major, minor), path in sorted(places.items()):
        short = f"{major}.{minor}"
        version = None
        for parent in PYTHON_INCLUDE_PARENTS:
            header = target.read_text(f"{parent}/python{short}/patchlevel.h")
            full = _defines(header or "").get("PY_VERSION", "")
            if full.startswith(short + "."):
                version = full
                break
        if version is None:
            packaged = packages.get(f"python{short}-minimal", f"python{short}", f"python{major}")
            version = packaged if packaged and packaged.startswith(short + ".") else short
        found.append(RuntimeFound("python", version, path))
    return found


def detect_node(target: TargetRoot, packages: PackageVersions) -> list[RuntimeFound]:
    paths: list[str] = []
    for relpath in NODE_BINARIES:
        path = target.regular_file(relpath)
        if path is not None and "/" + path not in paths:
            paths.append("/" + path)
    if not paths:
        return []
    version = None
    for header in NODE_HEADERS:
        values = _defines(target.read_text(header) or "")
        parts = [values.get(f"NODE_{part}_VERSION", "") for part in ("MAJOR", "MINOR", "PATCH")]
        if all(part.isdigit() for part in parts):
            version = ".".join(parts)
            break
    version = version or packages.get(*NODE_PACKAGES)
    return [RuntimeFound("node", version, path) for path in paths]


def parse_release(text: str) -> dict[str, str]:
    """KEY="value" lines of a JDK's release file."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().isidentifier():
            values[key.strip()] = value.strip().strip('"')
    return values


def detect_java(target: TargetRoot) -> list[RuntimeFound]:
    found: dict[str, RuntimeFound] = {}
    for parent in JAVA_PARENTS:
        for name in target.list_dir(parent):
            home = target.directory(f"{parent}/{name}")
            if home is None or "/" + home in found:
                continue
            text = target.read_text(f"{home}/release")
            version = parse_release(text).get("JAVA_VERSION") if text is not None else None
            if version:
                found["/" + home] = RuntimeFound("java", version, "/" + home)
    return [found[path] for path in sorted(found)]


# --- Go build information -----------------------------------------------------------------


class ElfFile:
    """Just enough of an ELF file to find a section and map virtual addresses."""

    def __init__(self, fd: int, size: int, order: str, wide: bool) -> None:
        self.fd = fd
        self.size = size
        self.order = order
        self.wide = wide
        self.sections: list[tuple[str, int, int, int]] = []
        """(name, type, file offset, size)"""
        self.segments: list[tuple[int, int, int, int]] = []
        """PT_LOAD segments: (virtual address, file offset, file size, flags)"""

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset >= self.size:
            return b""
        return os.pread(self.fd, min(length, self.size - offset), offset)

    @classmethod
    def parse(cls, fd: int, size: int) -> ElfFile | None:
        ident = os.pread(fd, 64, 0)
        if len(ident) < 52 or ident[:4] != ELF_MAGIC or ident[4] not in (1, 2):
            return None
        wide = ident[4] == 2
        if wide and len(ident) < 64:
            return None
        order = "<" if ident[5] == 1 else ">"
        if wide:
            phoff, shoff = struct.unpack_from(order + "QQ", ident, 32)
            phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(
                order + "HHHHH", ident, 54)
        else:
            phoff, shoff = struct.unpack_from(order + "II", ident, 28)
            phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(
                order + "HHHHH", ident, 42)
        elf = cls(fd, size, order, wide)
        elf._segments(phoff, phentsize, phnum)
        elf._sections(shoff, shentsize, shnum, shstrndx)
        return elf

    def _segments(self, offset: int, entsize: int, count: int) -> None:
        if not 0 < count <= 4096 or entsize < (56 if self.wide else 32):
            return
        table = self.read(offset, entsize * count)
        for index in range(len(table) // entsize):
            entry = table[index * entsize:(index + 1) * entsize]
            if self.wide:
                kind, flags, p_offset, vaddr, _, filesz = struct.unpack_from(
                    self.order + "IIQQQQ", entry)
            else:
                kind, p_offset, vaddr, _, filesz, _, flags = struct.unpack_from(
                    self.order + "IIIIIII", entry)
            if kind == PT_LOAD:
                self.segments.append((vaddr, p_offset, filesz, flags))

    def _sections(self, offset: int, entsize: int, count: int, names_index: int) -> None:
        if not 0 < count <= 65535 or entsize < (64 if self.wide else 40) or names_index >= count:
            return
        table = self.read(offset, entsize * count)
        if len(table) < entsize * count:
            return
        raw = []
        for index in range(count):
            entry = table[index * entsize:(index + 1) * entsize]
            if self.wide:
                name, kind, _, _, s_offset, s_size = struct.unpack_from(
                    self.order + "IIQQQQ", entry)
            else:
                name, kind, _, _, s_offset, s_size = struct.unpack_from(
                    self.order + "IIIIII", entry)
            raw.append((name, kind, s_offset, s_size))
        _, _, names_offset, names_size = raw[names_index]
        names = self.read(names_offset, min(names_size, 1024 * 1024))
        for name_at, kind, s_offset, s_size in raw:
            end = names.find(b"\0", name_at)
            name = names[name_at:end].decode("ascii", "replace") if end >= 0 else ""
            self.sections.append((name, kind, s_offset, s_size))

    def section(self, wanted: str) -> tuple[int, int] | None:
        for name, kind, offset, size in self.sections:
            if name == wanted and kind != SHT_NOBITS:
                return offset, size
        return None

    def read_virtual(self, address: int, length: int) -> bytes:
        for vaddr, offset, filesz, _ in self.segments:
            if vaddr <= address < vaddr + filesz:
                available = vaddr + filesz - address
                return self.read(offset + address - vaddr, min(length, available))
        return b""


def _uvarint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while at < len(data) and shift < 64:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    raise ValueError("truncated varint")


def _go_version_from(elf: ElfFile, blob: bytes) -> str | None:
    """The Go version in a build-info blob that starts with the magic."""
    if len(blob) < GO_HEADER_SIZE or not blob.startswith(GO_MAGIC):
        return None
    pointer_size, flags = blob[14], blob[15]
    if flags & GO_FLAG_INLINE_STRINGS:
        try:
            length, start = _uvarint(blob, GO_HEADER_SIZE)
        except ValueError:
            return None
        raw = blob[start:start + length] if length <= 256 else b""
    elif pointer_size in (4, 8):
        # Before Go 1.18: pointers to the runtime's string headers (data pointer, length).
        order = ">" if flags & GO_FLAG_BIG_ENDIAN else "<"
        word = order + ("Q" if pointer_size == 8 else "I")
        (address,) = struct.unpack_from(word, blob, 16)
        header = elf.read_virtual(address, 2 * pointer_size)
        if len(header) < 2 * pointer_size:
            return None
        data, length = struct.unpack_from(order + word[1] * 2, header)
        raw = elf.read_virtual(data, length) if 0 < length <= 256 else b""
    else:
        return None
    text = raw.decode("ascii", errors="replace")
    if not GO_VERSION.fullmatch(text):
        return None
    return text[2:] if text.startswith("go") else text


def _search_go_magic(elf: ElfFile, start: int, length: int) -> str | None:
    """The first valid build information whose magic is 16-byte aligned in a file range."""
    tail = b""
    position = start
    while position < min(elf.size, start + length):
        chunk = elf.read(position, min(GO_CHUNK, start + length - position))
        if not chunk:
            break
        window = tail + chunk
        base = position - len(tail)
        at = window.find(GO_MAGIC)
        while at >= 0:
            if (base + at) % 16 == 0:
                version = _go_version_from(elf, elf.read(base + at, 64 * 1024))
                if version:
                    return version
            at = window.find(GO_MAGIC, at + 1)
        tail = chunk[-(len(GO_MAGIC) - 1):]
        position += len(chunk)
    return None


def go_version(fd: int, size: int) -> str | None:
    """The Go toolchain version recorded in an ELF file, or ``None`` if it has none."""
    elf = ElfFile.parse(fd, size)
    if elf is None:
        return None
    section = elf.section(".go.buildinfo")
    if section is not None:
        offset, length = section
        return _go_version_from(elf, elf.read(offset, min(length, MAX_GO_SECTION)))
    if elf.sections:
        return None
    # No section headers (stripped with sstrip and the like): Go's linker puts the build
    # information at the start of the first writable, non-executable segment; failing
    # that, look in the first MBs of the file.
    for _, offset, filesz, flags in elf.segments:
        if flags & (PF_X | PF_W) == PF_W:
            found = _search_go_magic(elf, offset, min(filesz, MAX_GO_SECTION))
            if found:
                return found
            break
    return _search_go_magic(elf, 0, GO_SCAN_BYTES)


def _walk(target: TargetRoot, unreadable: list[str]) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file of the target (relative path, lstat), never following links."""

    def failed(error: OSError) -> None:
        unreadable.append(os.path.relpath(str(error.filename or target.top), target.top))

    for directory, dirnames, filenames in os.walk(target.top, onerror=failed):
        relative = os.path.relpath(directory, target.top)
        if relative == ".":
            dirnames[:] = [name for name in dirnames if name not in SKIPPED_TOP_DIRS]
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(directory, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield os.path.relpath(path, target.top), info


def detect_go(target: TargetRoot, notes: list[str]) -> list[RuntimeFound]:
    found: list[RuntimeFound] = []
    unreadable: list[str] = []
    seen: set[tuple[int, int]] = set()
    for relpath, info in _walk(target, unreadable):
        if info.st_size < GO_HEADER_SIZE or (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            fd = os.open(os.path.join(target.top, relpath),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except PermissionError:
            unreadable.append(relpath)
            continue
        except OSError:
            continue
        try:
            if os.pread(fd, 4, 0) != ELF_MAGIC:
                continue
            version = go_version(fd, info.st_size)
        except (OSError, struct.error):
            continue
        finally:
            os.close(fd)
        if version is not None:
            found.append(RuntimeFound("go", version, "/" + relpath))
            if len(found) >= MAX_GO_BINARIES:
                notes.append(f"go: stopped after {MAX_GO_BINARIES} Go binaries")
                break
    if unreadable:
        notes.append(f"go: {len(unreadable)} path(s) unreadable by the scanner's user were not "
                     f"searched, e.g. /{unreadable[0]}")
    return found


# --- labels, from /scanmeta/targets.json --------------------------------------------------


def read_labels(meta_path: str, notes: list[str]) -> dict[str, dict[str, str]]:
    """Each target key's image or container labels; ``{}`` for --rootfs targets."""
    try:
        with open(meta_path, encoding="utf-8") as stream:
            entries = json_loads(stream.read(MAX_TEXT_BYTES))
    except FileNotFoundError:
        notes.append(f"no {meta_path}: labels unknown")
        return {}
    except (OSError, ValueError) as exc:
        notes.append(f"could not read {meta_path}: {exc}")
        return {}
    labels: dict[str, dict[str, str]] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            continue
        config = entry.get("config")
        raw = config.get("labels") if isinstance(config, dict) else None
        labels[entry["key"]] = ({str(k): str(v) for k, v in raw.items()}
                                if isinstance(raw, dict) else {})
    return labels


# --- one target, and the run --------------------------------------------------------------


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def inspect_target(top: str, labels: dict[str, str], notes: list[str]) -> dict[str, Any]:
    target = TargetRoot(top)
    packages = PackageVersions(target)
    libc = detect_libc(target, packages, notes)
    runtimes = [*detect_python(target, packages), *detect_node(target, packages),
                *detect_java(target), *detect_go(target, notes)]
    if target.loops:
        notes.append(f"skipped {len(target.loops)} path(s) behind symlink loops (too many "
                     f"levels of symbolic links), e.g. {target.loops[0]}")
    return {"libc": libc, "runtimes": [runtime.to_json() for runtime in runtimes],
            "labels": labels, "notes": notes}


def scan_target(top: str, key: str, scan_type: str, labels: dict[str, str],
                notes: list[str]) -> dict[str, Any]:
    """The json document of one target; a failure is reported in it, never raised."""
    started = utc_now()
    custom: dict[str, Any] = {"libc": None, "runtimes": [], "labels": labels, "notes": notes}
    error = None
    try:
        if scan_type != SCAN_TYPE:
            raise ScanError(f"unsupported scan type {scan_type!r}, only {SCAN_TYPE!r}")
        custom = inspect_target(top, labels, notes)
    except ScanError as exc:
        error = str(exc)
    except (OSError, UnicodeError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        traceback.print_exc()
        error = f"internal error: {type(exc).__name__}: {exc}"
    document: dict[str, Any] = {
        "Scanner": SCANNER_NAME,
        "Time": started,
        "Finished Time": utc_now(),
        "Successful": "false" if error else "true",
        "Scan Type": scan_type,
        "UUID": key,
        "Vulnerabilities": [],
        "Results": [],
        "Custom": custom,
    }
    if error:
        document["Error"] = " ".join(error.split())
    return document


def write_document(directory: str, document: dict[str, Any]) -> None:
    os.makedirs(directory, exist_ok=True)
    partial = os.path.join(directory, "json.partial")
    with open(partial, "w", encoding="utf-8") as stream:
        stream.write(json_dumps(document) + "\n")
    os.replace(partial, os.path.join(directory, "json"))


def main() -> int:
    scan_in = os.environ.get("ATOMICSCAN_SCANIN", "/scanin")
    scan_out = os.environ.get("ATOMICSCAN_SCANOUT", "/scanout")
    meta = os.environ.get("ATOMICSCAN_SCANMETA", "/scanmeta/targets.json")
    scan_type = os.environ.get("ATOMICSCAN_SCAN_TYPE", SCAN_TYPE)
    try:
        keys = sorted(entry.name for entry in os.scandir(scan_in)
                      if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False))
    except OSError as exc:
        print(f"{SCANNER_NAME}: cannot list {scan_in}: {exc}", file=sys.stderr)
        return 2
    meta_notes: list[str] = []
    labels = read_labels(meta, meta_notes)
    status = 0
    for key in keys:
        document = scan_target(os.path.join(scan_in, key), key, scan_type,
                               labels.get(key, {}), list(meta_notes))
        try:
            write_document(os.path.join(scan_out, key), document)
        except OSError as exc:
            print(f"{SCANNER_NAME}: cannot write the result of {key}: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
