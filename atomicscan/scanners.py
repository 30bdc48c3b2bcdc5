"""Scanners: what a scanner is, the registry plugins add them to, and definition files."""

from __future__ import annotations

import os
import posixpath
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from atomicscan.errors import AtomicscanError, DuplicateScannerError, UnknownScannerError
from atomicscan.hostpaths import (
    HostPathError,
    check_host_path,
    option_syntax_reason,
    refused_reason,
)
from atomicscan.safetext import printable

#: The only capabilities a scanner may ask for, one at a time, where a check needs it.
ALLOWED_CAPABILITIES = frozenset({"SYS_CHROOT", "DAC_READ_SEARCH"})

#: Reads every file under a host mount whatever its permissions: never with a host mount.
_READS_EVERYTHING = "DAC_READ_SEARCH"

#: Scanner and scan type names: they become directory names under the results root.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
NAME_RULE = "1-63 of a-z 0-9 _ . -, starting with a letter or digit, no '..'"

#: A definition file is read only up to this size: nothing legitimate comes near it.
MAX_DEFINITION_BYTES = 256 * 1024

#: Nesting deeper than this in a definition is refused before the parser recurses.
MAX_YAML_DEPTH = 32

#: Where a scanner's own mounts live: a definition may not mount over them.
_RESERVED_DESTINATIONS = ("/scanin", "/scanout", "/scanmeta", "/scanhost", "/proc", "/sys",
                          "/dev")

#: Why each isolation request is refused, by the key that asks for it.
_REFUSED_REQUESTS = {
    "privileged": "privileged mode",
    "network": "a network (scanners run with --network none)",
    "net": "a network (scanners run with --network none)",
    "pid": "the host's PID namespace",
    "ipc": "the host's IPC namespace",
    "userns": "the host's user namespace",
    "devices": "host devices",
    "volumes": "host paths (only host_files, read-only, are handed over)",
    "user": "another user (scanners run as 65534:65534)",
    "security_opt": "weaker security options",
}


class DefinitionError(AtomicscanError):
    """A scanner definition file is malformed or asks for more than the contract allows."""

    def __init__(self, path: Path, message: str) -> None:
        # File names and contents are anyone's text: the message stays one line.
        super().__init__(printable(f"{path}: {message}"))
        self.path = path


class InvalidScannerError(AtomicscanError):
    """A plugin registered a scanner whose name or image atomicscan cannot use safely."""


def name_problem(name: str) -> str | None:
    """Why ``name`` can't be a scanner or scan type name (it names directories), or None."""
    if NAME_PATTERN.fullmatch(name) is None or ".." in name:
        return f"{printable(repr(name))} is not a valid name ({NAME_RULE})"
    return None


def image_problem(image: str) -> str | None:
    """Why ``image`` can't be handed to ``podman run`` / ``docker run`` as an image, or None."""
    if image.startswith("-"):
        return f"{printable(repr(image))} starts with '-' and would be read as an option"
    if any(char.isspace() or not char.isprintable() for char in image):
        return f"{printable(repr(image))} holds whitespace or control characters"
    return None


@dataclass(frozen=True)
class ScanType:
    """One kind of scan a scanner offers, and the command its image runs for it."""

    name: str
    args: tuple[str, ...]
    description: str = ""
    host_files: tuple[str, ...] = ()
    """Scanner arguments whose values are host files, handed over read-only in /scanhost."""


@dataclass(frozen=True)
class Scanner:
    """A scanner: an image, the scans it offers, and the isolation it asks for."""

    name: str
    image: str
    scan_types: Mapping[str, ScanType]
    default_scan: str
    description: str = ""
    capabilities: tuple[str, ...] = ()
    host_mounts: tuple[tuple[str, str], ...] = ()
    """Read-only host paths from an atomic scan definition's ``custom_args`` (source, dest)."""
    origin: str = ""
    """Where the scanner came from: a definition file's path or a plugin's name."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default_scan not in self.scan_types:
            raise ValueError(f"scanner {self.name}: default scan {self.default_scan!r} not defined")

    def scan_type(self, name: str | None) -> ScanType:
        """The named scan type, or the default one; an unknown name is a usage error."""
        chosen = name or self.default_scan
        try:
            return self.scan_types[chosen]
        except KeyError:
            offered = ", ".join(sorted(self.scan_types))
            raise UnknownScannerError(
                f"scanner {self.name} has no scan type {chosen!r}; it offers: {offered}"
            ) from None


class ScannerRegistry:
    """What `atomicscan_add_scanners` hooks receive: add scanners, never two of one name."""

    def __init__(self) -> None:
        self._scanners: dict[str, Scanner] = {}

    def add(self, scanner: Scanner) -> None:
        """Register ``scanner``; a second scanner of the same name, a name that is not a
        safe directory name, or isolation beyond the contract (:func:`isolation_problem`)
        is an error."""
        problems = [name_problem(scanner.name), image_problem(scanner.image),
                    *(name_problem(scan) for scan in scanner.scan_types),
                    isolation_problem(scanner)]
        problem = next((p for p in problems if p is not None), None)
        if problem is not None:
            raise InvalidScannerError(
                printable(f"scanner from {scanner.origin or '?'} refused: {problem}"))
        existing = self._scanners.get(scanner.name)
        if existing is not None:
            raise DuplicateScannerError(
                printable(f"scanner {scanner.name!r} is defined twice: by "
                          f"{existing.origin or '?'} and by {scanner.origin or '?'}")
            )
        self._scanners[scanner.name] = scanner

    def get(self, name: str) -> Scanner:
        try:
            return self._scanners[name]
        except KeyError:
            raise UnknownScannerError(
                f"unknown scanner {name!r}; installed scanners: {self.names_text()}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._scanners)

    def names_text(self) -> str:
        return ", ".join(self.names()) or "none (see `atomicscan doctor`)"

    def __iter__(self) -> Iterator[Scanner]:
        return iter(self._scanners[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._scanners)


def _string(path: Path, doc: Mapping[str, Any], key: str, *, default: str | None = None) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str) or not value:
        raise DefinitionError(path, f"key {key!r} must be a non-empty string")
    return value


def _string_list(path: Path, value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DefinitionError(path, f"key {key!r} must be a list of strings")
    return tuple(value)


def _optional_string(path: Path, doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str):
        raise DefinitionError(path, f"key {key!r} must be a string")
    return value


def _name(path: Path, doc: Mapping[str, Any], key: str, *, default: str | None = None) -> str:
    value = _string(path, doc, key, default=default)
    problem = name_problem(value)
    if problem is not None:
        raise DefinitionError(path, f"{key}: refused: {problem}")
    return value


def _host_file_names(path: Path, raw: Any) -> tuple[str, ...]:
    """Scanner argument names whose values are host files: each names a directory of ours."""
    names = _string_list(path, raw, "host_files")
    for name in names:
        problem = name_problem(name)
        if problem is not None:
            raise DefinitionError(path, f"host_files: refused: {problem}")
    return names


def _scan_types(path: Path, raw_scans: Any) -> dict[str, ScanType]:
    if not isinstance(raw_scans, list) or not raw_scans:
        raise DefinitionError(path, "key 'scans' must be a non-empty list of scan types")
    scan_types: dict[str, ScanType] = {}
    for raw in raw_scans:
        if not isinstance(raw, Mapping):
            raise DefinitionError(path, "each entry of 'scans' must be a table")
        scan_name = _name(path, raw, "name")
        if scan_name in scan_types:
            raise DefinitionError(path, f"scan type {scan_name!r} is defined twice")
        scan_types[scan_name] = ScanType(
            name=scan_name,
            args=_string_list(path, raw.get("args"), "args"),
            description=_optional_string(path, raw, "description"),
            host_files=_host_file_names(path, raw.get("host_files", [])),
        )
    return scan_types


def _capabilities(path: Path, isolation: Any, custom: _CustomArgs) -> tuple[str, ...]:
    """The one capability asked for, in ``[isolation]`` or ``custom_args``, if it is allowed."""
    if not isinstance(isolation, Mapping):
        raise DefinitionError(path, "key 'isolation' must be a table")
    for key in sorted(isolation):
        if key == "capabilities":
            continue
        why = _REFUSED_REQUESTS.get(key, "a request atomicscan does not grant")
        raise DefinitionError(path, f"isolation.{key}: refused: asks for {why}")
    requested = list(_string_list(path, isolation.get("capabilities", []), "capabilities"))
    requested += custom.capabilities
    capabilities = tuple(dict.fromkeys(
        cap.upper().removeprefix("CAP_") for cap in requested))
    if len(capabilities) > 1:
        raise DefinitionError(path, "isolation.capabilities may name one capability at most")
    for cap in capabilities:
        if cap not in ALLOWED_CAPABILITIES:
            allowed = ", ".join(sorted(ALLOWED_CAPABILITIES))
            raise DefinitionError(
                path, f"isolation.capabilities: {cap} is not allowed (allowed: {allowed})"
            )
    if custom.mounts and _READS_EVERYTHING in capabilities:
        raise DefinitionError(
            path, f"custom_args: a host mount (-v) together with {_READS_EVERYTHING} is "
                  f"refused: {_READS_EVERYTHING} would read every file under the mount, "
                  "whatever its permissions")
    return capabilities


def scanner_from_mapping(path: Path, doc: Mapping[str, Any]) -> Scanner:
    """Build a :class:`Scanner` from a parsed definition (atomic scan's key names)."""
    if doc.get("type", "scanner") != "scanner":
        raise DefinitionError(path, "key 'type' must be \"scanner\"")
    name = _name(path, doc, "scanner_name")
    image = _string(path, doc, "image_name")
    problem = image_problem(image)
    if problem is not None:
        raise DefinitionError(path, f"image_name: refused: {problem}")
    scan_types = _scan_types(path, doc.get("scans"))
    default_scan = _string(path, doc, "default_scan", default=next(iter(scan_types)))
    if default_scan not in scan_types:
        raise DefinitionError(path, f"default_scan {default_scan!r} is not one of 'scans'")
    custom = _custom_args(path, doc.get("custom_args", []))
    return Scanner(
        name=name,
        image=image,
        scan_types=scan_types,
        default_scan=default_scan,
        description=_optional_string(path, doc, "description"),
        capabilities=_capabilities(path, doc.get("isolation", {}), custom),
        host_mounts=tuple(custom.mounts),
        origin=str(path),
    )


@dataclass
class _CustomArgs:
    mounts: list[tuple[str, str]] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)


def _custom_args(path: Path, raw: Any) -> _CustomArgs:
    """atomic scan's ``custom_args`` (extra ``docker run`` flags), kept only where safe.

    Read-only host mounts (``-v SRC:DST:ro``) and one allowed ``--cap-add`` are honoured;
    anything else (privileged, host namespaces, writable mounts, runtime sockets) is
    refused, naming the flag.
    """
    args = list(_string_list(path, raw, "custom_args")) if raw else []
    parsed = _CustomArgs()
    index = 0
    while index < len(args):
        flag, _, inline = args[index].partition("=")
        takes_value = flag in {"-v", "--volume", "--cap-add"}
        value = inline or (args[index + 1] if takes_value and index + 1 < len(args) else "")
        index += 1 if inline or not takes_value else 2
        if flag in {"-v", "--volume"}:
            parsed.mounts.append(_readonly_mount(path, value, [d for _, d in parsed.mounts]))
        elif flag == "--cap-add":
            parsed.capabilities.append(value)
        else:
            raise DefinitionError(path, f"custom_args: {args[index - 1]!r} is refused "
                                        "(only read-only -v mounts and --cap-add are honoured)")
    return parsed


def _readonly_mount(path: Path, spec: str, taken: Sequence[str]) -> tuple[str, str]:
    """``SRC:DST:ro`` as (the real path of SRC, DST), if a scanner may see SRC at DST
    (:func:`checked_host_mount`)."""
    shown = repr(spec)
    parts = spec.split(":")
    if len(parts) != 3 or parts[2] != "ro":
        raise DefinitionError(path, f"custom_args: -v {shown}: refused: host paths are only "
                                    "mounted read-only, as SRC:DST:ro")
    try:
        return checked_host_mount(parts[0], parts[1], taken)
    except HostMountRefused as exc:
        raise DefinitionError(path, f"custom_args: -v {shown}: {exc}") from None


class HostMountRefused(Exception):
    """Why a host path may not be shown to a scanner: one line, completed by the caller."""


def checked_host_mount(source: str, destination: str, taken: Sequence[str] = ()
                       ) -> tuple[str, str]:
    """``(real path of source, destination)`` if a scanner may see ``source`` read-only at
    ``destination``, else :class:`HostMountRefused`; ``taken`` are destinations already used.

    Every part is checked as text before it reaches a runtime's ``--mount`` flag, and the
    source is judged by its real path (symlinks, ``..``, ``//`` resolved) against the refused
    places. Definition files and :meth:`ScannerRegistry.add` ask the same questions.
    """
    for part, text in (("source", source), ("destination", destination)):
        problem = option_syntax_reason(text)
        if problem is not None:
            raise HostMountRefused(f"refused: the {part} {problem}")
    if not source.startswith("/"):
        raise HostMountRefused("refused: the source must be an absolute host path")
    if (not destination.startswith("/") or "//" in destination
            or posixpath.normpath(destination) != destination):
        raise HostMountRefused("refused: the destination must be an absolute path without "
                               "'.', '..' or '//'")
    if destination == "/" or any(destination == reserved or destination.startswith(reserved + "/")
                                 for reserved in _RESERVED_DESTINATIONS):
        raise HostMountRefused(f"refused: {destination} belongs to the scan or the scanner's "
                               "own system")
    if destination in taken:
        raise HostMountRefused(f"refused: {destination} is mounted twice")
    return _real_source(source), destination


def _real_source(source: str) -> str:
    """The real path of a host mount's source, or :class:`HostMountRefused`.

    A source that does not exist yet is kept (atomic scan files name paths a package creates
    later), judged by where it would resolve now; the scan judges it again before mounting.
    """
    try:
        real = check_host_path(source, what="source")
    except HostPathError as exc:
        if os.path.lexists(source):
            raise HostMountRefused(str(exc)) from None
        real = Path(os.path.realpath(source))
        reason = refused_reason(real)
        if reason is not None:
            raise HostMountRefused(f"refused: source {reason}") from None
    else:
        mode = real.stat().st_mode
        # A socket stays usable through a read-only mount; devices and FIFOs are no files.
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise HostMountRefused(f"refused: {real} is not a directory or a regular file")
    problem = option_syntax_reason(str(real))
    if problem is not None:
        raise HostMountRefused(f"refused: its real path {real} {problem.removeprefix('it ')}")
    return str(real)


def capability_problem(capabilities: Sequence[str], *, host_mounts: bool) -> str | None:
    """Why a scanner may not hold ``capabilities`` (names without ``CAP_``), or None."""
    if len(capabilities) > 1:
        return f"capabilities {', '.join(capabilities)}: one capability at most"
    for cap in capabilities:
        if cap not in ALLOWED_CAPABILITIES:
            allowed = ", ".join(sorted(ALLOWED_CAPABILITIES))
            return f"capability {cap!r} is not allowed (allowed: {allowed})"
    if host_mounts and _READS_EVERYTHING in capabilities:
        return (f"a host mount together with {_READS_EVERYTHING}: it would read every file "
                "under the mount, whatever its permissions")
    return None


def isolation_problem(scanner: Scanner) -> str | None:
    """Why ``scanner`` asks for more isolation than the contract grants, or None.

    The same rules as definition files, for scanners a Python plugin builds itself: one
    capability from the allow-list, read-only host mounts only of places a scanner may see,
    never on the scan's own paths, never with DAC_READ_SEARCH.
    """
    problem = capability_problem(scanner.capabilities, host_mounts=bool(scanner.host_mounts))
    if problem is not None:
        return problem
    taken: list[str] = []
    for mount in scanner.host_mounts:
        if (not isinstance(mount, tuple) or len(mount) != 2
                or not all(isinstance(part, str) for part in mount)):
            return f"host mount {mount!r} is not a (source, destination) pair of strings"
        source, destination = mount
        try:
            checked_host_mount(source, destination, taken)
        except HostMountRefused as exc:
            return f"host mount {source!r} at {destination!r}: {str(exc).removeprefix('refused: ')}"
        taken.append(destination)
    return None


class _RefusedYAML(yaml.MarkedYAMLError):
    """YAML that a definition has no use for and that can make parsing explode."""


class _DefinitionLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases, and with bounded nesting.

    Aliases let a few hundred bytes expand to gigabytes (a "billion laughs"); nesting lets
    the composer, which recurses, exhaust the stack. No scanner definition needs either.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _RefusedYAML(None, None, "anchors and aliases (& and *) are refused",
                               event.start_mark)
        if self._depth >= MAX_YAML_DEPTH:
            raise _RefusedYAML(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                               event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _parse(path: Path, text: str) -> Any:
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise DefinitionError(path, f"not valid TOML: {exc}") from exc
        except (RecursionError, ValueError) as exc:
            # Deep nesting, or an integer of thousands of digits.
            raise DefinitionError(path, f"not usable TOML: {type(exc).__name__}: {exc}") from exc
    try:
        return yaml.load(text, Loader=_DefinitionLoader)  # noqa: S506 - a SafeLoader subclass
    except _RefusedYAML as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise DefinitionError(path, f"{where}refused YAML: {exc.problem}") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise DefinitionError(path, f"{where}not valid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise DefinitionError(path, f"not valid YAML: {exc}") from exc
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        # The safe constructor's own failures: a date like 2020-13-45, a 5,000-digit number.
        raise DefinitionError(path, f"not usable YAML: {type(exc).__name__}: {exc}") from exc


def _read(path: Path) -> str:
    """The file's text, refusing anything but a regular file of at most MAX_DEFINITION_BYTES."""
    try:
        # Non-blocking so a FIFO put in place of a file can't hang every invocation.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise DefinitionError(path, f"cannot read: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DefinitionError(path, "cannot read: not a regular file")
        data = b""
        while len(data) <= MAX_DEFINITION_BYTES:
            chunk = os.read(fd, MAX_DEFINITION_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise DefinitionError(path, f"cannot read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_DEFINITION_BYTES:
        raise DefinitionError(path, f"refused: larger than {MAX_DEFINITION_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(path, f"cannot read: not UTF-8 text ({exc.reason})") from exc


def load_definition(path: Path) -> Scanner:
    """Read one scanner definition: TOML (``*.toml``), or atomic scan's YAML files as they are."""
    doc = _parse(path, _read(path))
    if not isinstance(doc, Mapping):
        raise DefinitionError(path, "a scanner definition must be a mapping of keys")
    return scanner_from_mapping(path, doc)


def definition_files(directory: Path) -> Sequence[Path]:
    """Files in a definitions directory, as atomic scan read /etc/atomic.d: skip hidden files,
    editor backups and package-manager leftovers."""
    skipped = (".rpmnew", ".rpmsave", ".dpkg-old", ".dpkg-new", ".dpkg-dist", ".bak", "~")
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and not p.name.startswith(".") and not p.name.endswith(skipped))
