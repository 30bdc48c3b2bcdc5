"""Suppressions: an ignore file (TOML, one ``[[ignore]]`` table per entry) applied to a report.

A file looks like this::

    [[ignore]]
    id = "CVE-2024-12345"              # required: the finding ID, exactly as reported
    reason = "not reachable: no network listener"   # required, shown in every report
    expires = 2025-06-30               # optional TOML date: suppresses through that day
    target = "registry.example/app:1"  # optional: name as typed, image/container ID or 12+ prefix
    package = "pkg:deb/debian/openssl" # optional: a package name or purl (version optional)
    path = "/usr/lib/python3/**"       # optional: path inside the target; * ? ** globs

Every narrowing key given must match; an entry without any suppresses the ID everywhere.
The first entry (in file order) that matches a finding gives its reason. Unknown keys are
errors, so a typo never silently widens a suppression. Errors are one line:
``FILE:LINE: problem`` (:class:`IgnoreFileError`, exit 2).

Default file: ``$ATOMICSCAN_IGNORE_FILE`` if set, else ``/etc/atomicscan/ignore.toml``
(missing is fine there). There is deliberately no per-directory default: atomicscan runs as
root from wherever the shell is, and a file in the current directory (a checked-out repository)
must not be able to quieten a gate without being named on the command line.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import posixpath
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from atomicscan.boundedread import read_at_most
from atomicscan.errors import AtomicscanError, ExitCode
from atomicscan.results import Finding, Report, ScanResult
from atomicscan.safetext import printable

DEFAULT_IGNORE_FILE = Path("/etc/atomicscan/ignore.toml")
IGNORE_FILE_ENV = "ATOMICSCAN_IGNORE_FILE"
MAX_FILE_BYTES = 1024 * 1024
MAX_ENTRIES = 10_000
MAX_VALUE_CHARS = 1000
KEYS = ("id", "reason", "expires", "target", "package", "path")
_SHOWN_CHARS = 60
# What printable() escapes, minus the whitespace a multi-line TOML reason legitimately holds.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069"
                      "\ufeff\ud800-\udfff]")
_HEX_ID = re.compile(r"[0-9a-f]{12,64}")
_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


class IgnoreFileError(AtomicscanError):
    """The ignore file cannot be used as written: one line naming the file, line and problem."""

    exit_code = ExitCode.USAGE

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        where = f"{printable(path)}:{line}" if line is not None else printable(path)
        super().__init__(f"{where}: {printable(problem)}")
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class Purl:
    """The parts of a package URL an ignore entry can be matched on."""

    type: str
    namespace: str
    name: str
    version: str | None
    qualifiers: Mapping[str, str]
    subpath: str | None

    @classmethod
    def parse(cls, text: str) -> Purl | None:
        """``text`` as a purl, or ``None`` when it is not one (no ``pkg:`` or no name)."""
        if text[:4].lower() != "pkg:":
            return None
        rest, _, subpath = text[4:].lstrip("/").partition("#")
        rest, _, query = rest.partition("?")
        if "/" not in rest:
            return None
        kind, _, path = rest.partition("/")
        namespace, _, last = path.rstrip("/").rpartition("/")
        name, at, version = last.partition("@")
        if not kind or not name:
            return None
        qualifiers = {}
        for pair in filter(None, query.split("&")):
            key, _, value = pair.partition("=")
            qualifiers[key.lower()] = unquote(value)
        return cls(type=kind.lower(), namespace=unquote(namespace), name=unquote(name),
                   version=unquote(version) if at else None, qualifiers=qualifiers,
                   subpath=subpath.strip("/") or None)

    def covers(self, other: Purl) -> bool:
        """Whether ``other`` is this package, where this purl's missing parts match anything."""
        return (self.type == other.type and self.namespace == other.namespace
                and self.name == other.name
                and (self.version is None or self.version == other.version)
                and all(other.qualifiers.get(k) == v for k, v in self.qualifiers.items())
                and (self.subpath is None or self.subpath == other.subpath))


def _inside(path: str) -> str:
    """A path inside a target, anchored at its root, with ``.``, ``..`` and ``//`` folded."""
    return posixpath.normpath("/" + path.lstrip("/"))


# Glob tokens: one character, "?", "*" (within a component), "**/" (zero or more whole
# components), "**" (anything).
_ANY, _STAR, _DEEP_DIR, _DEEP = "\x00?", "\x00*", "\x00**/", "\x00**"


class _Glob:
    """``*`` and ``?`` within one path component, ``**`` across any. Matched by stepping a set
    of pattern positions through the path once (time linear in the path for a given
    pattern): a backtracking regex of ``/**/**/**/x`` takes minutes on a path a scanner
    chose, and the path comes from the image."""

    def __init__(self, pattern: str) -> None:
        tokens: list[str] = []
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                token, index = _DEEP_DIR, index + 3
            elif pattern.startswith("**", index):
                token, index = _DEEP, index + 2
            else:
                char = pattern[index]
                token = _STAR if char == "*" else _ANY if char == "?" else char
                index += 1
            if not (tokens and token in (_STAR, _DEEP, _DEEP_DIR) and tokens[-1] == token):
                tokens.append(token)  # "**/**/" is "**/": no duplicate states
        self.tokens = tuple(tokens)

    def _closure(self, states: set[int]) -> set[int]:
        """``states`` and every state reachable without reading a character. State ``p`` is
        "at token p"; state ``-p - 1`` is "inside the ``**/`` at p", which leaves only
        through a ``/``."""
        out, todo = set(states), list(states)
        while todo:
            position = todo.pop()
            if position < 0 or position == len(self.tokens):
                continue
            token = self.tokens[position]
            reached = ([position + 1, -position - 1] if token == _DEEP_DIR
                       else [position + 1] if token in (_STAR, _DEEP) else [])
            for state in reached:
                if state not in out:
                    out.add(state)
                    todo.append(state)
        return out

    def _step(self, state: int, char: str) -> tuple[int, ...]:
        if state < 0:  # inside "**/": anything, and a "/" may end it
            return (state, -state) if char == "/" else (state,)
        if state == len(self.tokens):
            return ()
        token = self.tokens[state]
        if token == _DEEP or (token == _STAR and char != "/"):
            return (state,)
        if token == char or (token == _ANY and char != "/"):
            return (state + 1,)
        return ()

    def fullmatch(self, text: str) -> bool:
        states = self._closure({0})
        for char in text:
            following = {after for state in states for after in self._step(state, char)}
            if not following:
                return False
            states = self._closure(following)
        return len(self.tokens) in states


def _glob(pattern: str) -> _Glob | None:
    """The path pattern as a :class:`_Glob`; None without wildcards (compared as a path)."""
    if not any(char in pattern for char in "*?"):
        return None
    return _Glob(pattern)


@dataclass(frozen=True)
class IgnoreEntry:
    """One ``[[ignore]]`` table; ``line`` is where it starts in the file (0 when unknown)."""

    id: str
    reason: str
    line: int
    target: str | None = None
    package: str | None = None
    path: str | None = None
    expires: date | None = None
    _purl: Purl | None = field(default=None, repr=False, compare=False)
    _path_glob: _Glob | None = field(default=None, repr=False, compare=False)

    def is_expired(self, today: date) -> bool:
        """Expired the day after ``expires``: the date is the last day it suppresses."""
        return self.expires is not None and self.expires < today

    def describe(self) -> str:
        """One line for the run's output, e.g. which entry expired (not yet made safe to print)."""
        expiry = f", expired {self.expires.isoformat()}" if self.expires else ""
        return f"{self.id} (line {self.line}{expiry}): {self.reason}"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "reason": self.reason, "line": self.line}
        for key in ("target", "package", "path"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        if self.expires is not None:
            doc["expires"] = self.expires.isoformat()
        return doc

    def matches(self, result: ScanResult, finding: Finding) -> bool:
        """Whether this entry suppresses ``finding`` of ``result``."""
        return (finding.id == self.id and self._matches_target(result)
                and self._matches_package(finding.package) and self._matches_path(finding.path))

    def _matches_target(self, result: ScanResult) -> bool:
        if self.target is None or self.target == result.target:
            return True
        wanted = self.target.removeprefix("sha256:")
        have = result.target_id.removeprefix("sha256:")
        return wanted == have or (_HEX_ID.fullmatch(wanted) is not None
                                  and have.startswith(wanted))

    def _matches_package(self, package: str | None) -> bool:
        if self.package is None:
            return True
        if package is None:
            return False
        if package == self.package:
            return True
        found = Purl.parse(package)
        if found is None:
            return False
        if self._purl is None:
            return found.name == self.package
        return self._purl.covers(found)

    def _matches_path(self, path: str | None) -> bool:
        if self.path is None:
            return True
        if path is None:
            return False
        if self._path_glob is None:
            return _inside(path) == self.path
        return self._path_glob.fullmatch(_inside(path))


@dataclass(frozen=True)
class IgnoreList:
    """The entries of one ignore file: those in force today and those that have expired."""

    source: Path | None = None
    entries: tuple[IgnoreEntry, ...] = ()
    expired: tuple[IgnoreEntry, ...] = ()

    def by_id(self) -> dict[str, list[IgnoreEntry]]:
        index: dict[str, list[IgnoreEntry]] = {}
        for entry in self.entries:
            index.setdefault(entry.id, []).append(entry)
        return index


def default_ignore_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where the ignore file is when ``--ignore-file`` is not given."""
    value = (os.environ if environ is None else environ).get(IGNORE_FILE_ENV, "")
    return Path(value) if value else DEFAULT_IGNORE_FILE


def load_ignores(given: Path | None, *, today: date,
                 environ: Mapping[str, str] | None = None) -> IgnoreList:
    """The ignore file the run uses: ``given``, else the default. A file named on the command
    line or in the environment must exist; the built-in default may be missing."""
    env = os.environ if environ is None else environ
    if given is not None or env.get(IGNORE_FILE_ENV):
        return load_ignore_file(given or default_ignore_file(env), today=today)
    try:
        return load_ignore_file(DEFAULT_IGNORE_FILE, today=today)
    except IgnoreFileError as exc:
        if exc.problem == _MISSING:
            return IgnoreList()
        raise


_MISSING = "no such file"


def _read(path: Path) -> bytes:
    """At most MAX_FILE_BYTES of a regular file (or /dev/null); never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise IgnoreFileError(path, None, _MISSING if exc.errno == errno.ENOENT
                              else f"cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) and os.path.realpath(path) != os.devnull:
            raise IgnoreFileError(path, None, "not a regular file")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = read_at_most(handle, MAX_FILE_BYTES)
    except OSError as exc:
        raise IgnoreFileError(path, None, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise IgnoreFileError(path, None, f"larger than {MAX_FILE_BYTES // 1024} KiB")
    return data


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise IgnoreFileError(path, line, "not UTF-8 text") from None


def _structural_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines that start outside a multi-line string: only these can open a table or a key."""
    open_quote: str | None = None
    for number, line in enumerate(text.split("\n"), 1):
        if open_quote is None:
            yield number, line
        index = 0
        while index < len(line):
            char = line[index]
            if open_quote is not None:
                if open_quote == '"""' and char == "\\":
                    index += 2
                elif line.startswith(open_quote, index):
                    open_quote, index = None, index + 3
                else:
                    index += 1
            elif char == "#":
                break
            elif line.startswith(('"""', "'''"), index):
                open_quote, index = line[index:index + 3], index + 3
            elif char in "\"'":
                index += 1
                while index < len(line) and line[index] != char:
                    index += 2 if char == '"' and line[index] == "\\" else 1
                index += 1
            else:
                index += 1


_ARRAY_HEADER = re.compile(r"\s*\[\[\s*(?P<name>[^\]]*?)\s*\]\]")
_TABLE_HEADER = re.compile(r"\s*\[\s*(?P<name>[^\]]*?)\s*\]")
_KEY = re.compile(r"""\s*(?P<key>[A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*[.=]""")


def _first_name(dotted: str) -> str:
    return dotted.split(".", maxsplit=1)[0].strip().strip("\"'")


class _Layout:
    """Where things are in the file's text, found by scanning it: tomllib keeps no positions.
    Answers are best effort; when the scan and the parse disagree, the entry's line is 0."""

    def __init__(self, text: str) -> None:
        self.entry_lines: list[int] = []
        self.keys: list[list[tuple[str, int]]] = []  # per [[ignore]] entry
        self.top: dict[str, int] = {}
        in_ignore = False
        for number, line in _structural_lines(text):
            header = _ARRAY_HEADER.match(line) or _TABLE_HEADER.match(line)
            if header is not None:
                dotted = header.group("name")
                name = _first_name(dotted)
                self.top.setdefault(name, number)
                in_ignore = (header.re is _ARRAY_HEADER and name == "ignore"
                             and "." not in dotted)
                if in_ignore:
                    self.entry_lines.append(number)
                    self.keys.append([])
                elif name == "ignore" and "." in dotted and self.keys:
                    # [ignore.sub] or [[ignore.sub]] adds a key "sub" to the entry above it
                    self.keys[-1].append((_first_name(dotted.split(".", 1)[1]), number))
                continue
            key = _KEY.match(line)
            if key is None:
                continue
            name = _first_name(key.group("key"))
            if in_ignore:
                self.keys[-1].append((name, number))
            elif not self.entry_lines:
                self.top.setdefault(name, number)

    def entry(self, index: int) -> int:
        return self.entry_lines[index] if index < len(self.entry_lines) else 0

    def key(self, index: int, name: str) -> int:
        if index < len(self.keys):
            for key, number in self.keys[index]:
                if key == name:
                    return number
        return self.entry(index)


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _syntax_line(text: str, exc: Exception) -> tuple[int | None, str]:
    """The line and message of an error tomllib raised (it names the line for syntax errors,
    not for a number too long to convert or nesting too deep for the parser)."""
    if isinstance(exc, RecursionError):
        depth, number = 0, 1
        for char in text:
            depth += (char in "[{") - (char in "]}")
            number += char == "\n"
            if depth > 100:
                return number, "nested too deeply"
        return None, "nested too deeply"
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if message.endswith("(at end of document)"):
        return text.count("\n") + 1, message.removesuffix("(at end of document)").strip()
    position = _POSITION.search(message)
    if position is not None:
        return int(position.group(1)), (f"{message[:position.start()]} "
                                         f"(column {position.group(2)})")
    digits = re.search(r"[0-9_]{4000,}", text)
    if digits is not None and "digits" in message:
        return text.count("\n", 0, digits.start()) + 1, "number too long"
    return None, _shown(message)


def _text_value(path: Path, line: int | None, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise IgnoreFileError(path, line, f"{key} must be a string, not {_type_name(value)}")
    if _CONTROL.search(value):
        raise IgnoreFileError(path, line, f"{key} holds a control character")
    if key == "reason":
        value = " ".join(value.split())
    if not value.strip():
        raise IgnoreFileError(path, line, f"{key} is empty")
    if len(value) > MAX_VALUE_CHARS:
        raise IgnoreFileError(path, line, f"{key} is longer than {MAX_VALUE_CHARS} characters")
    if key != "reason" and (value != value.strip() or "\n" in value or "\t" in value):
        raise IgnoreFileError(path, line, f"{key} has leading, trailing or inner line space")
    return value


def _type_name(value: object) -> str:
    if isinstance(value, datetime):
        return "a date and time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time"
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _entry(path: Path, layout: _Layout, index: int, raw: object) -> IgnoreEntry:
    line = layout.entry(index)
    if not isinstance(raw, dict):
        raise IgnoreFileError(path, line or None,
                              f"ignore entries must be tables, not {_type_name(raw)}")
    for key in raw:
        if key not in KEYS:
            raise IgnoreFileError(path, layout.key(index, key) or None,
                                  f"unknown key {_shown(key)!r} in [[ignore]] "
                                  f"(known: {', '.join(KEYS)})")
    for key in ("id", "reason"):
        if key not in raw:
            raise IgnoreFileError(path, line or None, f"[[ignore]] entry has no {key}")
    values = {key: _text_value(path, layout.key(index, key) or None, key, raw[key])
              for key in ("id", "reason", "target", "package", "path") if key in raw}
    expires = raw.get("expires")
    if expires is not None and (isinstance(expires, datetime) or not isinstance(expires, date)):
        raise IgnoreFileError(path, layout.key(index, "expires") or None,
                              f"expires must be a TOML date like 2025-06-30 (no quotes, no "
                              f"time), not {_type_name(expires)}")
    purl: Purl | None = None
    package = values.get("package")
    if package is not None and package[:4].lower() == "pkg:":
        purl = Purl.parse(package)
        if purl is None:
            raise IgnoreFileError(path, layout.key(index, "package") or None,
                                  f"package {_shown(package)!r} is not a valid purl "
                                  "(pkg:TYPE/[NAMESPACE/]NAME[@VERSION])")
    where = values.get("path")
    if where is not None:
        where = values["path"] = _inside(where)
    return IgnoreEntry(id=values["id"], reason=values["reason"], line=line,
                       target=values.get("target"), package=package, path=where,
                       expires=expires, _purl=purl,
                       _path_glob=_glob(where) if where is not None else None)


def parse_ignore_text(path: Path, text: str, *, today: date) -> IgnoreList:
    """The entries of an ignore file's ``text``; ``path`` only names it in errors."""
    try:
        document = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        line, problem = _syntax_line(text, exc)
        raise IgnoreFileError(path, line, problem) from None
    layout = _Layout(text)
    for key, value in document.items():
        if key != "ignore":
            raise IgnoreFileError(path, layout.top.get(key),
                                  f"unknown key {_shown(key)!r} (the file holds [[ignore]] "
                                  "tables only)")
        if not isinstance(value, list):
            raise IgnoreFileError(path, layout.top.get(key),
                                  "ignore must be [[ignore]] tables (an array), "
                                  f"not {_type_name(value)}")
    raw_entries: list[object] = document.get("ignore", [])
    if len(raw_entries) > MAX_ENTRIES:
        raise IgnoreFileError(path, layout.entry(MAX_ENTRIES) or None,
                              f"more than {MAX_ENTRIES} [[ignore]] entries")
    active: list[IgnoreEntry] = []
    expired: list[IgnoreEntry] = []
    seen: dict[tuple[str, str | None, str | None, str | None], IgnoreEntry] = {}
    for index, raw in enumerate(raw_entries):
        entry = _entry(path, layout, index, raw)
        scope = (entry.id, entry.target, entry.package, entry.path)
        if scope in seen:
            raise IgnoreFileError(path, entry.line or None,
                                  f"duplicate of the [[ignore]] entry at line "
                                  f"{seen[scope].line} (same id, target, package and path)")
        seen[scope] = entry
        (expired if entry.is_expired(today) else active).append(entry)
    return IgnoreList(source=path, entries=tuple(active), expired=tuple(expired))


def load_ignore_file(path: Path, *, today: date) -> IgnoreList:
    """The ignore file at ``path``, which must exist; :class:`IgnoreFileError` if unusable."""
    return parse_ignore_text(path, _decode(path, _read(path)), today=today)


def _suppressed(report: Report, ignores: IgnoreList) -> tuple[Report, set[int]]:
    index = ignores.by_id()
    used: set[int] = set()
    results: list[ScanResult] = []
    for result in report.results:
        findings: list[Finding] = []
        changed = False
        for finding in result.findings:
            entry = next((e for e in index.get(finding.id, ()) if e.matches(result, finding)),
                         None)
            if entry is not None:
                used.add(id(entry))
            if entry is not None and finding.suppressed != entry.reason:
                findings.append(dataclasses.replace(finding, suppressed=entry.reason))
                changed = True
            else:
                findings.append(finding)
        results.append(result.replace(findings=tuple(findings)) if changed else result)
    return dataclasses.replace(report, results=tuple(results)), used


def apply(report: Report, ignores: IgnoreList) -> Report:
    """``report`` with every finding an entry in force matches marked suppressed with that
    entry's reason. Findings stay in the report; findings no entry matches are unchanged."""
    return _suppressed(report, ignores)[0]


def unused(report: Report, ignores: IgnoreList) -> tuple[IgnoreEntry, ...]:
    """Entries in force that match no finding of ``report`` (candidates for removal)."""
    used = _suppressed(report, ignores)[1]
    return tuple(entry for entry in ignores.entries if id(entry) not in used)
