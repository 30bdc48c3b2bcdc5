"""The built-in output formats that need heavy libraries, registered without importing them.

The HTML page needs Jinja2 and the CycloneDX SBOM cyclonedx-python-lib: importing them on
every command would cost every scan (and ``--version``) tens of milliseconds, and a host
scanning 50 images one by one pays it 50 times. So this plugin adds the formats, and each
writer imports its module the first time a document is written. SARIF needs nothing
heavy and registers itself (``format_sarif``).
"""

from __future__ import annotations

import importlib
from typing import Any

from atomicscan.formats import FormatRegistry, OutputFormat
from atomicscan.hookspecs import hookimpl
from atomicscan.results import Report, ScanResult


def _writer(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"atomicscan.builtin.{module}"), name)


def write_html(report: Report) -> bytes:
    """:func:`atomicscan.builtin.format_html.write_html`, imported when first used."""
    written: bytes = _writer("format_html", "write_html")(report)
    return written


def write_cyclonedx(result: ScanResult, report: Report) -> bytes:
    """:func:`atomicscan.builtin.format_cyclonedx.write_cyclonedx`, imported when first used."""
    written: bytes = _writer("format_cyclonedx", "write_cyclonedx")(result, report)
    return written


def write_spdx(result: ScanResult, report: Report) -> bytes:
    """:func:`atomicscan.builtin.format_spdx.write_spdx`, imported when first used."""
    written: bytes = _writer("format_spdx", "write_spdx")(result, report)
    return written


@hookimpl
def atomicscan_add_formats(registry: FormatRegistry) -> None:
    registry.add(OutputFormat(
        "html", "One self-contained HTML page for the run: summary, findings, packages",
        ".html", write_run=write_html))
    registry.add(OutputFormat(
        "cyclonedx-json",
        "CycloneDX 1.6 JSON SBOM per target: packages with purls, the OS, OpenSCAP CVEs",
        ".cdx.json", write_target=write_cyclonedx))
    registry.add(OutputFormat(
        "spdx-json", "SPDX 2.3 JSON SBOM per target: the image, its OS and packages with purls",
        ".spdx.json", write_target=write_spdx))
