"""The OpenSCAP scanner's result shaping: counts, report paths and applicability, typed."""

from __future__ import annotations

from collections.abc import Mapping

from atomicscan.hookspecs import hookimpl
from atomicscan.results import ScanResult
from atomicscan.scanners import Scanner

SCANNER_NAME = "openscap"


@hookimpl(tryfirst=True)
def atomicscan_process_result(result: ScanResult, scanner: Scanner) -> ScanResult | None:
    if scanner.name != SCANNER_NAME:
        return None
    custom = dict(result.custom)
    notes = list(result.notes)
    notes += [str(note) for note in custom.pop("notes", None) or []]
    counts = custom.pop("counts", None)
    raw_files = custom.pop("files", None) or {}
    files: dict[str, str] = {}
    if isinstance(raw_files, Mapping) and result.raw_dir is not None:
        for name, relative in raw_files.items():
            path = result.raw_dir / str(relative)
            # Only what the host really copied out of /scanout is reported.
            if path.is_file() and path.resolve().is_relative_to(result.raw_dir.resolve()):
                files[str(name)] = str(path)
    if custom.get("applicable") is False:
        notes.append(f"not applicable: {custom.get('reason') or 'the content does not cover it'}")
    return result.replace(
        counts={str(k): int(v) for k, v in counts.items()} if isinstance(counts, Mapping)
        else None,
        files=files,
        notes=tuple(notes),
        custom=custom,
    )


# tryfirst: what the target is (OS, packages) leads its line, before plugins' additions.
@hookimpl(tryfirst=True)
def atomicscan_describe_result(result: ScanResult) -> str | None:
    """Rule or definition results by outcome: ``12 pass, 5 fail``."""
    if result.counts is None:
        return None
    shown = [f"{count} {outcome}" for outcome, count in result.counts.items() if count]
    return ", ".join(shown) or "nothing evaluated"
