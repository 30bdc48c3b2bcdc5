"""The packages scanner's result shaping: lift its inventory into typed result fields."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from atomicscan.hookspecs import hookimpl
from atomicscan.results import Package, ScanResult
from atomicscan.scanners import Scanner

SCANNER_NAME = "packages"


def _package(raw: Mapping[str, Any]) -> Package:
    source = raw.get("source")
    return Package(
        name=str(raw["name"]),
        version=str(raw["version"]),
        architecture=str(raw.get("architecture") or ""),
        type=str(raw["type"]),
        purl=str(raw.get("purl") or ""),
        source=str(source) if source else None,
    )


# tryfirst: other plugins post-process the typed inventory, not the raw output.
@hookimpl(tryfirst=True)
def atomicscan_process_result(result: ScanResult, scanner: Scanner) -> ScanResult | None:
    if scanner.name != SCANNER_NAME or not result.successful:
        return None
    custom = dict(result.custom)
    raw_packages = custom.pop("packages", None)
    raw_os = custom.pop("os", None)
    notes = custom.pop("notes", None) or []
    if not isinstance(raw_packages, list):
        return result.replace(successful=False,
                              error="packages scanner output has no package list")
    try:
        packages = tuple(_package(raw) for raw in raw_packages)
    except (KeyError, TypeError) as exc:
        return result.replace(successful=False,
                              error=f"packages scanner output is malformed: missing {exc}")
    return result.replace(
        packages=packages,
        os=raw_os if isinstance(raw_os, Mapping) else None,
        notes=(*result.notes, *(str(note) for note in notes)),
        custom=custom,
    )


# tryfirst: what the target is (OS, packages) leads its line, before plugins' additions.
@hookimpl(tryfirst=True)
def atomicscan_describe_result(result: ScanResult) -> str | None:
    """The OS and the package count of any result that has an inventory."""
    if result.os is None and result.packages is None:
        return None
    parts = []
    if result.os is not None:
        parts.append(str(result.os.get("pretty_name") or result.os.get("id") or "unknown OS"))
    if result.packages is not None:
        kinds = Counter(package.type for package in result.packages)
        detail = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        parts.append(f"{len(result.packages)} packages" + (f" ({detail})" if detail else ""))
    return "; ".join(parts)
