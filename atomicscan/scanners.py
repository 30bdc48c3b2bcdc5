"""Scanners: what a scanner is, the registry plugins add them to, and definition files."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from atomicscan.errors import AtomicscanError, DuplicateScannerError, UnknownScannerError

#: The only capabilities a scanner may ask for, one at a time, where a check needs it.
ALLOWED_CAPABILITIES = frozenset({"SYS_CHROOT", "DAC_READ_SEARCH"})

#: Host paths no scanner may see, even read-only: they hand over the host.
_RUNTIME_SOCKETS = ("/run/docker.sock", "/var/run/docker.sock", "/run/podman",
                    "/var/run/podman", "/run/containerd", "/var/run/containerd", "/run/crio")

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
        super().__init__(f"{path}: {message}")
        self.path = path


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
        """Register ``scanner``; a second scanner of the same name is an error."""
        existing = self._scanners.get(scanner.name)
        if existing is not None:
            raise DuplicateScannerError(
                f"scanner {scanner.name!r} is defined twice: by {existing.origin or '?'} "
                f"and by {scanner.origin or '?'}"
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


def scanner_from_mapping(path: Path, doc: Mapping[str, Any]) -> Scanner:
    """Build a :class:`Scanner` from a parsed definition (atomic scan's key names)."""
    if doc.get("type", "scanner") != "scanner":
        raise DefinitionError(path, "key 'type' must be \"scanner\"")
    name = _string(path, doc, "scanner_name")
    image = _string(path, doc, "image_name")
    raw_scans = doc.get("scans")
    if not isinstance(raw_scans, list) or not raw_scans:
        raise DefinitionError(path, "key 'scans' must be a non-empty list of scan types")
    scan_types: dict[str, ScanType] = {}
    for raw in raw_scans:
        if not isinstance(raw, Mapping):
            raise DefinitionError(path, "each entry of 'scans' must be a table")
        scan_name = _string(path, raw, "name")
        if scan_name in scan_types:
            raise DefinitionError(path, f"scan type {scan_name!r} is defined twice")
        scan_types[scan_name] = ScanType(
            name=scan_name,
            args=_string_list(path, raw.get("args"), "args"),
            description=str(raw.get("description", "")),
            host_files=_string_list(path, raw.get("host_files", []), "host_files"),
        )
    default_scan = _string(path, doc, "default_scan", default=next(iter(scan_types)))
    if default_scan not in scan_types:
        raise DefinitionError(path, f"default_scan {default_scan!r} is not one of 'scans'")
    isolation = doc.get("isolation", {})
    if not isinstance(isolation, Mapping):
        raise DefinitionError(path, "key 'isolation' must be a table")
    for key in sorted(isolation):
        if key == "capabilities":
            continue
        why = _REFUSED_REQUESTS.get(key, "a request atomicscan does not grant")
        raise DefinitionError(path, f"isolation.{key}: refused: asks for {why}")
    requested = list(_string_list(path, isolation.get("capabilities", []), "capabilities"))
    custom = _custom_args(path, doc.get("custom_args", []))
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
    return Scanner(
        name=name,
        image=image,
        scan_types=scan_types,
        default_scan=default_scan,
        description=str(doc.get("description", "")),
        capabilities=capabilities,
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
            parsed.mounts.append(_readonly_mount(path, value))
        elif flag == "--cap-add":
            parsed.capabilities.append(value)
        else:
            raise DefinitionError(path, f"custom_args: {args[index - 1]!r} is refused "
                                        "(only read-only -v mounts and --cap-add are honoured)")
    return parsed


def _readonly_mount(path: Path, spec: str) -> tuple[str, str]:
    parts = spec.split(":")
    if len(parts) != 3 or "ro" not in parts[2].split(","):
        raise DefinitionError(path, f"custom_args: -v {spec}: refused: host paths are only "
                                    "mounted read-only (add :ro)")
    source, destination = parts[0], parts[1]
    if not source.startswith("/") or any(
            source.rstrip("/") == sock or source.startswith(sock + "/") or
            sock.startswith(source.rstrip("/") + "/") or source == "/"
            for sock in _RUNTIME_SOCKETS):
        raise DefinitionError(path, f"custom_args: -v {spec}: refused: it would expose a "
                                    "container runtime socket or the whole host")
    if destination.rstrip("/") in {"/scanin", "/scanout"} or destination.startswith(
            ("/scanin/", "/scanout/")):
        raise DefinitionError(path, f"custom_args: -v {spec}: refused: {destination} "
                                    "belongs to the scan")
    return source, destination


def _parse(path: Path, text: str) -> Any:
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise DefinitionError(path, f"not valid TOML: {exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise DefinitionError(path, f"{where}not valid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise DefinitionError(path, f"not valid YAML: {exc}") from exc


def load_definition(path: Path) -> Scanner:
    """Read one scanner definition: TOML (``*.toml``), or atomic scan's YAML files as they are."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(path, f"cannot read: {exc}") from exc
    doc = _parse(path, text)
    if not isinstance(doc, Mapping):
        raise DefinitionError(path, "a scanner definition must be a mapping of keys")
    return scanner_from_mapping(path, doc)


def definition_files(directory: Path) -> Sequence[Path]:
    """Files in a definitions directory, as atomic scan read /etc/atomic.d: skip hidden files,
    editor backups and package-manager leftovers."""
    skipped = (".rpmnew", ".rpmsave", ".dpkg-old", ".dpkg-new", ".dpkg-dist", ".bak", "~")
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and not p.name.startswith(".") and not p.name.endswith(skipped))
