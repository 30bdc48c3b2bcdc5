"""The host side of the inventory-extra scanner: register it, and check and shape its output.

The scanner image (``scanner/`` in this project) writes, per target, ``Custom`` with
``libc``, ``runtimes``, ``labels`` and ``notes``. :func:`atomicscan_process_result` checks
that shape into an :class:`Inventory`, keeps its canonical JSON form as the result's
``custom``, and adds one readable note per finding ("libc: glibc 2.36 at ...", "runtime:
python 3.11.2 at ..."), since notes are what the text report prints. Other plugins get the
typed form back with :func:`inventory_of`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from atomicscan import (
    FormatRegistry,
    OutputFormat,
    Report,
    Scanner,
    ScannerRegistry,
    ScanResult,
    ScanType,
    hookimpl,
)

SCANNER_NAME = "inventory-extra"
IMAGE = "localhost/atomicscan/inventory-extra:latest"
SCAN_TYPE = "lumogon"
LIBC_FLAVOURS = frozenset({"glibc", "musl"})
#: The keys of the scanner's Custom that this plugin types; others are kept as they are.
TYPED_KEYS = ("libc", "runtimes", "labels")


class MalformedOutputError(ValueError):
    """The scanner's Custom does not have the documented shape."""


def _optional_text(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedOutputError(f"{where}.{key} must be a string or null")
    return value


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedOutputError(f"{where}.{key} must be a non-empty string")
    return value


@dataclass(frozen=True)
class Libc:
    """The target's C library."""

    flavour: str
    """``glibc`` or ``musl``."""
    version: str | None
    path: str
    """Where it is inside the target (links resolved)."""

    @classmethod
    def from_json(cls, raw: Any) -> Libc:
        if not isinstance(raw, Mapping):
            raise MalformedOutputError("libc must be an object or null")
        flavour = _text(raw, "flavour", "libc")
        if flavour not in LIBC_FLAVOURS:
            allowed = ", ".join(sorted(LIBC_FLAVOURS))
            raise MalformedOutputError(f"libc.flavour {flavour!r} is not one of: {allowed}")
        return cls(flavour, _optional_text(raw, "version", "libc"), _text(raw, "path", "libc"))

    def to_json(self) -> dict[str, str | None]:
        return {"flavour": self.flavour, "version": self.version, "path": self.path}


@dataclass(frozen=True)
class Runtime:
    """A language runtime present in the target: python, node, java or go."""

    name: str
    version: str | None
    path: str
    """The binary, library directory or JDK home inside the target."""

    @classmethod
    def from_json(cls, raw: Any, index: int) -> Runtime:
        where = f"runtimes[{index}]"
        if not isinstance(raw, Mapping):
            raise MalformedOutputError(f"{where} must be an object")
        return cls(_text(raw, "name", where), _optional_text(raw, "version", where),
                   _text(raw, "path", where))

    def to_json(self) -> dict[str, str | None]:
        return {"name": self.name, "version": self.version, "path": self.path}


@dataclass(frozen=True)
class Inventory:
    """What the inventory-extra scanner found in one target."""

    libc: Libc | None
    runtimes: tuple[Runtime, ...]
    labels: Mapping[str, str]

    @classmethod
    def from_custom(cls, custom: Mapping[str, Any]) -> Inventory:
        """Check the scanner's ``Custom``; :class:`MalformedOutputError` says what is wrong."""
        raw_libc = custom.get("libc")
        raw_runtimes = custom.get("runtimes")
        raw_labels = custom.get("labels")
        if not isinstance(raw_runtimes, list):
            raise MalformedOutputError("runtimes must be a list")
        if not isinstance(raw_labels, Mapping) or not all(
                isinstance(key, str) and isinstance(value, str)
                for key, value in raw_labels.items()):
            raise MalformedOutputError("labels must be an object of strings")
        return cls(
            libc=None if raw_libc is None else Libc.from_json(raw_libc),
            runtimes=tuple(Runtime.from_json(raw, index)
                           for index, raw in enumerate(raw_runtimes)),
            labels=dict(raw_labels),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "libc": self.libc.to_json() if self.libc else None,
            "runtimes": [runtime.to_json() for runtime in self.runtimes],
            "labels": dict(self.labels),
        }

    def notes(self) -> list[str]:
        """One line per finding, for the text report."""
        def described(name: str, version: str | None, path: str) -> str:
            return f"{name} {version or '(version unknown)'} at {path}"

        lines = [f"libc: {described(self.libc.flavour, self.libc.version, self.libc.path)}"
                 if self.libc else "libc: none found"]
        lines += [f"runtime: {described(r.name, r.version, r.path)}" for r in self.runtimes]
        return lines


def inventory_of(result: ScanResult) -> Inventory | None:
    """The typed inventory of a successful inventory-extra result, else ``None``."""
    if result.scanner != SCANNER_NAME or not result.successful:
        return None
    try:
        return Inventory.from_custom(result.custom)
    except MalformedOutputError:
        return None


@hookimpl
def atomicscan_add_scanners(registry: ScannerRegistry) -> None:
    registry.add(Scanner(
        name=SCANNER_NAME,
        image=IMAGE,
        scan_types={SCAN_TYPE: ScanType(
            name=SCAN_TYPE,
            args=("python3", "/opt/inventory-extra/inspect_extra.py"),
            description="libc, language runtimes (python, node, java, go) and labels",
        )},
        default_scan=SCAN_TYPE,
        description="The C library and language runtimes a target ships, with versions, "
                    "and its labels; nothing from the target is run",
        origin="atomicscan-inventory-extra",
    ))


# tryfirst: later plugins see the checked, typed-shape output, as with the packages scanner.
@hookimpl(tryfirst=True)
def atomicscan_process_result(result: ScanResult, scanner: Scanner) -> ScanResult | None:
    if scanner.name != SCANNER_NAME or not result.successful:
        return None
    custom = dict(result.custom)
    raw_notes = custom.pop("notes", None) or []
    scanner_notes = [str(note) for note in raw_notes] if isinstance(raw_notes, list) else []
    try:
        inventory = Inventory.from_custom(custom)
    except MalformedOutputError as exc:
        return result.replace(successful=False,
                              error=f"{SCANNER_NAME} scanner output is malformed: {exc}")
    rest = {key: value for key, value in custom.items() if key not in TYPED_KEYS}
    return result.replace(
        custom={**rest, **inventory.to_json()},
        notes=(*result.notes, *scanner_notes, *inventory.notes()),
    )


@hookimpl
def atomicscan_describe_result(result: ScanResult) -> str | None:
    """``glibc 2.36; 2 runtimes`` in the target's summary line."""
    inventory = inventory_of(result)
    if inventory is None:
        return None
    libc = (f"{inventory.libc.flavour} {inventory.libc.version or ''}".strip()
            if inventory.libc else "no libc")
    return f"{libc}; {len(inventory.runtimes)} runtimes"


def _cell(text: str) -> str:
    """A cell a spreadsheet shows as text: an image's file names are its author's, and
    ``=HYPERLINK(...)`` must not become a formula."""
    return "'" + text if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


def write_runtimes_csv(report: Report) -> bytes:
    """One CSV row per libc and language runtime found, for every target of the run."""
    buffer = io.StringIO()
    rows = csv.writer(buffer, lineterminator="\n")
    rows.writerow(["target", "target_id", "kind", "name", "version", "path"])
    for result in report.results:
        inventory = inventory_of(result)
        if inventory is None:
            continue
        if inventory.libc is not None:
            rows.writerow([_cell(c) for c in (
                result.target, result.target_id, "libc", inventory.libc.flavour,
                inventory.libc.version or "", inventory.libc.path)])
        for runtime in inventory.runtimes:
            rows.writerow([_cell(c) for c in (
                result.target, result.target_id, "runtime", runtime.name,
                runtime.version or "", runtime.path)])
    return buffer.getvalue().encode()


@hookimpl
def atomicscan_add_formats(registry: FormatRegistry) -> None:
    registry.add(OutputFormat("runtimes-csv", "libc and language runtimes found by "
                              "inventory-extra, one CSV row each", ".csv",
                              write_run=write_runtimes_csv))
