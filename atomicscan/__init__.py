"""atomicscan: scan container images and containers from the host, read-only and unprivileged.

This module is the public API for plugin authors: everything a plugin needs is imported from
here (``from atomicscan import hookimpl, Scanner, ScanType``); the submodules are internals
that may move. The one other public module is :mod:`atomicscan.testing`, the pytest plugin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from atomicscan.context import ResultContext, RunContext
    from atomicscan.errors import (
        AmbiguousTargetError,
        AtomicscanError,
        CommandError,
        DuplicateScannerError,
        ExitCode,
        MountError,
        RuntimeUnavailableError,
        ScannerImageMissingError,
        TargetNotFoundError,
        UnknownScannerError,
        UsageError,
    )
    from atomicscan.formats import (
        DuplicateFormatError,
        FormatError,
        FormatRegistry,
        OutputFormat,
    )
    from atomicscan.hookspecs import hookimpl
    from atomicscan.isolation import isolation_flags
    from atomicscan.listing import ListingRuntime
    from atomicscan.proc import Completed, run_bounded
    from atomicscan.results import Finding, Package, Report, ScanResult
    from atomicscan.rootless import real_root
    from atomicscan.runtime import (
        Bind,
        Runtime,
        RuntimeFactory,
        RuntimeRegistry,
        ScannerContainer,
        Target,
    )
    from atomicscan.scanners import Scanner, ScannerRegistry, ScanType
    from atomicscan.targets import Candidate

#: Each public name and the module defining it, imported on first use: the CLI imports this
#: package, and `atomicscan --version` should not pay for YAML parsing or pluggy.
_EXPORTS = {
    "hookimpl": "atomicscan.hookspecs",
    # scanners and what they produce
    "Scanner": "atomicscan.scanners",
    "ScanType": "atomicscan.scanners",
    "ScannerRegistry": "atomicscan.scanners",
    "ScanResult": "atomicscan.results",
    "Finding": "atomicscan.results",
    "Package": "atomicscan.results",
    "Report": "atomicscan.results",
    "ResultContext": "atomicscan.context",
    "RunContext": "atomicscan.context",
    # output formats
    "OutputFormat": "atomicscan.formats",
    "FormatRegistry": "atomicscan.formats",
    "FormatError": "atomicscan.formats",
    "DuplicateFormatError": "atomicscan.formats",
    # container runtimes
    "Runtime": "atomicscan.runtime",
    "RuntimeFactory": "atomicscan.runtime",
    "RuntimeRegistry": "atomicscan.runtime",
    "Target": "atomicscan.runtime",
    "Bind": "atomicscan.runtime",
    "ScannerContainer": "atomicscan.runtime",
    "ListingRuntime": "atomicscan.listing",
    "Candidate": "atomicscan.targets",
    "Completed": "atomicscan.proc",
    # running a command: argv list, bounded output, a timeout (plugins that drive a CLI)
    "run_bounded": "atomicscan.proc",
    # the scanner lock-down as podman/docker flags, for a runtime that must translate them
    "isolation_flags": "atomicscan.isolation",
    # root on the host, not a user (nor uid 0 of a user namespace): what mounting needs
    "real_root": "atomicscan.rootless",
    # errors and exit codes
    "ExitCode": "atomicscan.errors",
    "AtomicscanError": "atomicscan.errors",
    "UsageError": "atomicscan.errors",
    "UnknownScannerError": "atomicscan.errors",
    "DuplicateScannerError": "atomicscan.errors",
    "TargetNotFoundError": "atomicscan.errors",
    "AmbiguousTargetError": "atomicscan.errors",
    "RuntimeUnavailableError": "atomicscan.errors",
    "CommandError": "atomicscan.errors",
    "ScannerImageMissingError": "atomicscan.errors",
    "MountError": "atomicscan.errors",
}

__all__ = [
    "AmbiguousTargetError",
    "AtomicscanError",
    "Bind",
    "Candidate",
    "CommandError",
    "Completed",
    "DuplicateFormatError",
    "DuplicateScannerError",
    "ExitCode",
    "Finding",
    "FormatError",
    "FormatRegistry",
    "ListingRuntime",
    "MountError",
    "OutputFormat",
    "Package",
    "Report",
    "ResultContext",
    "RunContext",
    "Runtime",
    "RuntimeFactory",
    "RuntimeRegistry",
    "RuntimeUnavailableError",
    "ScanResult",
    "ScanType",
    "Scanner",
    "ScannerContainer",
    "ScannerImageMissingError",
    "ScannerRegistry",
    "Target",
    "TargetNotFoundError",
    "UnknownScannerError",
    "UsageError",
    "__version__",
    "hookimpl",
    "isolation_flags",
    "real_root",
    "run_bounded",
]


if not TYPE_CHECKING:  # hidden from mypy, so that it reports a misspelt name

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'atomicscan' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
