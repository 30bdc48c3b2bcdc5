"""Scanners: what a scanner is, the registry plugins add them to, and definition files."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomicscan.errors import AtomicscanError, DuplicateScannerError, UnknownScannerError

#: The only capabilities a scanner may ask for, one at a time, where a check needs it.
ALLOWED_CAPABILITIES = frozenset({"SYS_CHROOT", "DAC_READ_SEARCH"})


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
    unknown = set(isolation) - {"capabilities"}
    if unknown:
        raise DefinitionError(path, f"isolation key {sorted(unknown)[0]!r} is not allowed")
    capabilities = tuple(
        cap.upper().removeprefix("CAP_")
        for cap in _string_list(path, isolation.get("capabilities", []), "capabilities")
    )
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
        origin=str(path),
    )


def load_definition(path: Path) -> Scanner:
    """Read one TOML scanner definition file."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(path, f"not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(path, f"cannot read: {exc}") from exc
    return scanner_from_mapping(path, doc)
