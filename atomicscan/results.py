"""Scan results: small frozen records with exactly one JSON form each."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

#: Vendor severity words on the one scale findings use: critical, high, medium, low, unknown.
SEVERITY_SCALE = {
    "critical": "critical", "urgent": "critical",
    "high": "high", "important": "high",
    "medium": "medium", "moderate": "medium",
    "low": "low", "info": "low", "informational": "low", "negligible": "low",
    "unimportant": "low",
}


def common_severity(value: str | None) -> str:
    """Map a scanner's or feed's severity word onto the common scale."""
    return SEVERITY_SCALE.get((value or "").strip().lower(), "unknown")


@dataclass(frozen=True)
class Finding:
    """One thing a scanner reports about a target: a vulnerability, a failed rule, a lint."""

    id: str
    title: str
    severity: str = "unknown"
    description: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    suppressed: str | None = None
    """Why the finding is suppressed (an ignore file's ``reason``), or ``None``. A suppressed
    finding stays in every report and never counts for the ``--fail-on`` gate."""

    def to_json(self) -> JSON:
        doc: JSON = {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "description": self.description,
            "details": dict(self.details),
        }
        if self.suppressed is not None:
            doc["suppressed"] = {"reason": self.suppressed}
        return doc

    def _detail(self, key: str) -> str | None:
        value = self.details.get(key)
        return value if isinstance(value, str) and value else None

    @property
    def path(self) -> str | None:
        """The file inside the target the finding is about (``details["path"]``), if any."""
        return self._detail("path")

    @property
    def package(self) -> str | None:
        """The package the finding is about (``details["package"]``: a name or a purl)."""
        return self._detail("package")

    @property
    def where(self) -> str:
        """Where in the target: its path, else its package, else the rule or definition
        that produced it; "" when the scanner said nothing about it."""
        return (self.path or self.package or self._detail("definition_id")
                or self._detail("profile") or "")

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Finding:
        suppressed = doc.get("suppressed")
        return cls(id=str(doc["id"]), title=str(doc["title"]),
                   severity=str(doc.get("severity", "unknown")),
                   description=str(doc.get("description", "")),
                   details=dict(doc.get("details") or {}),
                   suppressed=str(suppressed.get("reason", "")) if isinstance(suppressed, dict)
                   else None)


@dataclass(frozen=True)
class Package:
    """One installed package as its package manager records it."""

    name: str
    version: str
    architecture: str
    type: str
    purl: str
    source: str | None = None

    def to_json(self) -> JSON:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "source": self.source,
            "type": self.type,
            "purl": self.purl,
        }


@dataclass(frozen=True)
class ScanResult:
    """The outcome of one scanner on one target.

    ``os`` and ``packages`` are set by inventory scanners only; ``custom`` keeps whatever
    else the scanner reported, untouched.
    """

    target: str
    target_id: str
    target_type: str
    runtime: str | None
    scanner: str
    scan_type: str
    successful: bool
    started_at: str
    finished_at: str
    error: str | None = None
    findings: tuple[Finding, ...] = ()
    os: Mapping[str, Any] | None = None
    packages: tuple[Package, ...] | None = None
    notes: tuple[str, ...] = ()
    custom: Mapping[str, Any] = field(default_factory=dict)
    raw_dir: Path | None = None
    remediated_image: str | None = None
    """With ``--remediate``: the new image built with the scanner's fixes applied."""
    counts: Mapping[str, int] | None = None
    """Rule or definition results by outcome (pass, fail, notapplicable, ...)."""
    files: Mapping[str, str] = field(default_factory=dict)
    """Reports the scanner left (results XML, ARF, HTML), as paths in the results directory."""
    cached: bool = False
    """Reused from an earlier run: same image, scanner image, scan type and arguments."""
    target_meta: Mapping[str, Any] = field(default_factory=dict)
    """What identifies the target besides its ID: ``names`` (tags), and where the runtime
    says so ``labels``, ``digests``, ``image_id`` (a container's image) and ``state``."""
    scanner_image_id: str | None = None
    """The ID of the scanner image that produced the result."""

    def replace(self, **changes: Any) -> ScanResult:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> JSON:
        doc: JSON = {
            "target": self.target,
            "target_id": self.target_id,
            "target_type": self.target_type,
            "runtime": self.runtime,
            "scanner": self.scanner,
            "scan_type": self.scan_type,
            "successful": self.successful,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if not self.successful:
            doc["error"] = self.error or "scan failed"
        doc["findings"] = [finding.to_json() for finding in self.findings]
        if self.os is not None or self.packages is not None:
            doc["os"] = dict(self.os) if self.os is not None else None
            doc["packages"] = [package.to_json() for package in self.packages or ()]
        if self.counts is not None:
            doc["counts"] = dict(self.counts)
        if self.files:
            doc["files"] = dict(self.files)
        if self.notes:
            doc["notes"] = list(self.notes)
        if self.custom:
            doc["custom"] = dict(self.custom)
        if self.raw_dir is not None:
            doc["raw_dir"] = str(self.raw_dir)
        if self.remediated_image is not None:
            doc["remediated_image"] = self.remediated_image
        doc["cached"] = self.cached
        if self.target_meta:
            doc["target_meta"] = dict(self.target_meta)
        if self.scanner_image_id is not None:
            doc["scanner_image_id"] = self.scanner_image_id
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ScanResult:
        """The inverse of :meth:`to_json` (used by the result cache)."""
        packages = doc.get("packages")
        raw_dir = doc.get("raw_dir")
        return cls(
            target=str(doc["target"]), target_id=str(doc["target_id"]),
            target_type=str(doc["target_type"]), runtime=doc.get("runtime"),
            scanner=str(doc["scanner"]), scan_type=str(doc["scan_type"]),
            successful=bool(doc["successful"]), started_at=str(doc["started_at"]),
            finished_at=str(doc["finished_at"]), error=doc.get("error"),
            findings=tuple(Finding.from_json(f) for f in doc.get("findings") or ()),
            os=doc.get("os"),
            packages=None if packages is None else tuple(
                Package(name=str(p["name"]), version=str(p["version"]),
                        architecture=str(p.get("architecture") or ""), type=str(p["type"]),
                        purl=str(p.get("purl") or ""), source=p.get("source"))
                for p in packages),
            notes=tuple(str(n) for n in doc.get("notes") or ()),
            custom=dict(doc.get("custom") or {}),
            raw_dir=Path(raw_dir) if raw_dir else None,
            remediated_image=doc.get("remediated_image"),
            counts=doc.get("counts"),
            files=dict(doc.get("files") or {}),
            cached=bool(doc.get("cached", False)),
            target_meta=dict(doc.get("target_meta") or {}),
            scanner_image_id=doc.get("scanner_image_id"),
        )


@dataclass(frozen=True)
class Report:
    """Everything one run produced: the merged results of every target."""

    run_id: str
    scanner: str
    scan_type: str
    started_at: str
    finished_at: str
    results_dir: Path | None
    results: tuple[ScanResult, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)
    write_error: str | None = None
    """Why ``report.json`` could not be written (a full disk); the report itself is whole."""
    host: Mapping[str, str] = field(default_factory=dict)
    """The host that scanned: ``hostname`` and ``machine_id``."""
    scanner_args: Mapping[str, str] = field(default_factory=dict)
    """``--scanner-args`` as given."""
    version: str = ""
    """The atomicscan version that scanned."""
    finish_errors: tuple[str, ...] = ()
    """What went wrong after the report was written (``atomicscan_run_finished``): the run
    was not recorded, for one. The results themselves are whole."""

    @property
    def successful(self) -> bool:
        return all(result.successful for result in self.results)

    @property
    def failed(self) -> int:
        """How many targets' scans failed."""
        return sum(not result.successful for result in self.results)

    def to_json(self) -> JSON:
        doc: JSON = {
            "run_id": self.run_id,
            "scanner": self.scanner,
            "scan_type": self.scan_type,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "results_dir": str(self.results_dir) if self.results_dir else None,
            "successful": self.successful,
            "summary": {
                "targets": len(self.results),
                "failed": self.failed,
                "findings": sum(len(result.findings) for result in self.results),
            },
            "results": [result.to_json() for result in self.results],
        }
        if self.host:
            doc["host"] = dict(self.host)
        if self.version:
            doc["atomicscan_version"] = self.version
        if self.scanner_args:
            doc["scanner_args"] = dict(self.scanner_args)
        doc.update(self.extra)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Report:
        """The inverse of :meth:`to_json` (``history import`` reads written reports).

        Raises ``KeyError``, ``TypeError`` or ``ValueError`` on a document of another shape.
        """
        known = {"run_id", "scanner", "scan_type", "started_at", "finished_at", "results_dir",
                 "successful", "summary", "results", "host", "atomicscan_version",
                 "scanner_args"}
        results = doc["results"]
        if not isinstance(results, list) or not all(isinstance(r, Mapping) for r in results):
            raise TypeError("results is not a list of objects")
        results_dir = doc.get("results_dir")
        host = doc.get("host") or {}
        args = doc.get("scanner_args") or {}
        if not isinstance(host, Mapping) or not isinstance(args, Mapping):
            raise TypeError("host and scanner_args must be objects")
        return cls(
            run_id=str(doc["run_id"]), scanner=str(doc["scanner"]),
            scan_type=str(doc["scan_type"]), started_at=str(doc["started_at"]),
            finished_at=str(doc["finished_at"]),
            results_dir=Path(results_dir) if isinstance(results_dir, str) else None,
            results=tuple(ScanResult.from_json(r) for r in results),
            extra={k: v for k, v in doc.items() if k not in known},
            host={str(k): str(v) for k, v in host.items()},
            scanner_args={str(k): str(v) for k, v in args.items()},
            version=str(doc.get("atomicscan_version") or ""),
        )
