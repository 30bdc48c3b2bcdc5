"""The ``sarif`` output format: every target's findings as SARIF 2.1.0, for GitHub code scanning.

How atomicscan's report maps onto SARIF, and why:

- **One run per target.** Each run carries ``automationDetails.id``
  ``atomicscan/<scanner>/<target>/``. GitHub takes the id up to its last ``/`` as the
  analysis *category*, and since July 2025 it rejects a file in which two runs share a tool
  and a category; runs with distinct categories in one file are kept as separate analyses,
  so one image's upload never closes another image's alerts. The upload action's
  ``category`` input only fills runs that have no id: upload this file without it.
- **The target** in the id and in fingerprints is its name without tag or digest
  (``registry.example/app:3f2a1c`` is ``registry.example/app``), so a CI that tags every
  build by commit keeps its alerts from one commit to the next. Two targets of one report
  that would share it (two tags of one repository) keep their full names instead.
- **Locations.** A finding about a file inside the target (``details["path"]``) is located
  at that path without its leading ``/``, relative to the ``TARGETROOT`` base
  (``originalUriBaseIds``), at ``details["line"]`` when the scanner knows it, else line 1.
  A finding without a path (a package, an OVAL definition, an XCCDF rule, the image
  configuration) is located, as Trivy does for OS packages, at the target's name as a
  relative URI, line 1; its package, definition or profile is a ``logicalLocation``.
- **Fingerprints.** ``partialFingerprints.primaryLocationLineHash`` hashes the target, the
  rule ID, where (``Finding.where``) and the line: never a time or a run ID, so the same
  finding on the same image has the same fingerprint in every run. Findings of one run
  that would still share one (two accounts of ``/etc/shadow``) add their description.
- **Severity.** ``level`` and ``security-severity`` come from the common scale: critical
  9.5 and high 8.0 are ``error``, medium 5.5 ``warning``, low 2.0 ``note``. ``unknown``
  counts as medium (5.5, ``warning``): a vulnerability whose feed gives no severity is not
  evidence of low risk, and 5.5 keeps it in a defined GitHub bucket without claiming
  more; the result's ``properties.severity`` still says ``unknown``.
- **Suppressed** findings stay, with ``suppressions`` ``kind: external`` and their reason.
  A failed target is a run without results whose invocation failed with its error.
- Text from images and scanners is hostile: controls and lone surrogates become U+FFFD,
  text in Markdown is escaped, long text is cut with a note of how much was left out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from atomicscan import __version__
from atomicscan.formats import FormatError, FormatRegistry, OutputFormat
from atomicscan.hookspecs import hookimpl
from atomicscan.results import Finding, Report, ScanResult, common_severity

JSON = dict[str, Any]

SARIF_SCHEMA = ("https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/"
                "sarif-schema-2.1.0.json")
TOOL_NAME = "atomicscan"
# The project has no public home page yet; change this when it has one.
INFORMATION_URI = "https://github.com/atomicscan/atomicscan"
ROOT_BASE_ID = "TARGETROOT"

#: The common scale as GitHub's ``security-severity`` (its buckets: >= 9.0 critical,
#: 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low) and as a SARIF level.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "2.0",
                     "unknown": "5.5"}
LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note",
         "unknown": "warning"}
_RANK = {"critical": 4, "high": 3, "medium": 2, "unknown": 2, "low": 1}

# Bounds for text from outside: GitHub shows the first lines, and a 10,000-finding report
# must stay a file it accepts.
MESSAGE_MAX = 4000
SHORT_MAX = 300
DESCRIPTION_MAX = 16000
ID_MAX = 255
DETAIL_TEXT_MAX = 2000
DETAILS_MAX = 64
LIST_MAX = 100
NOTIFICATIONS_MAX = 50
PATH_MAX = 4096
TAGS_MAX = 20  # GitHub reads at most 20 tags a rule

# Rule-level details: the same for every finding of a rule, shown in the rule's help.
_RULE_DETAILS = (("category", "Category"), ("cis", "CIS"), ("profile", "Profile"),
                 ("advisory_id", "Advisory"), ("remediation", "Remediation"))
_PRECISIONS = frozenset({"very-high", "high", "medium", "low"})
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&])")
# Lone surrogates that surrogateescape did not make from an undecodable byte.
_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_CVE = re.compile(r"CVE-\d{4}-\d{4,}")
_IMAGE_ID = re.compile(r"(sha256:)?[0-9a-f]{12,64}")


def clean_text(value: object, limit: int) -> str:
    """``value`` as text that is valid Unicode without controls, at most about ``limit``."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) - limit
    text = _UNSAFE.sub("\ufffd", text[:limit] if cut > 0 else text)
    return f"{text}... [{cut} more characters]" if cut > 0 else text


def _markdown(value: object, limit: int = DESCRIPTION_MAX) -> str:
    return _MARKDOWN.sub(r"\\\1", clean_text(value, limit))


def _severity(finding: Finding) -> str:
    return finding.severity if finding.severity in _RANK else common_severity(finding.severity)


def _line(finding: Finding) -> int:
    line = finding.details.get("line")
    return line if isinstance(line, int) and not isinstance(line, bool) \
        and 0 < line < 2**31 else 1


def _uri(text: str) -> str:
    """A relative URI reference for a path or name; undecodable bytes keep their value."""
    text = _NOT_A_BYTE.sub("\ufffd", text[:PATH_MAX])
    return quote(text.encode("utf-8", "surrogateescape"), safe="/")


def target_key(result: ScanResult) -> str:
    """The target's name as it stays across builds: an image reference without tag/digest."""
    name = result.target
    if result.target_type != "image" or _IMAGE_ID.fullmatch(name):
        return name
    name = name.split("@", 1)[0]
    head, slash, last = name.rpartition("/")
    return (head + slash + last.split(":", 1)[0]) or result.target


def _automation_ids(results: Iterable[ScanResult]) -> list[tuple[str, str]]:
    """(target key, automationDetails.id) of each result, distinct within the report."""
    results = list(results)
    wanted = [(result.scanner, target_key(result)) for result in results]
    shared = {key for key, count in Counter(wanted).items() if count > 1}
    keys = [result.target if (result.scanner, key) in shared else key
            for result, (_, key) in zip(results, wanted, strict=True)]
    seen: Counter[tuple[str, str]] = Counter()
    ids = []
    for key, result in zip(keys, results, strict=True):
        seen[result.scanner, key] += 1
        suffix = f"#{seen[result.scanner, key]}" if seen[result.scanner, key] > 1 else ""
        segment = clean_text(key, 200).strip("/") or "target"
        scanner = clean_text(result.scanner, 100).replace("/", "_")
        ids.append((key + suffix, f"{TOOL_NAME}/{scanner}/{segment}{suffix}/"))
    return ids


def _fingerprint(*parts: object) -> str:
    # clean_text leaves no U+001F, so joined parts can't run into each other.
    blob = "\x1f".join(clean_text(part, PATH_MAX) for part in parts)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _clean_value(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return clean_text(value, DETAIL_TEXT_MAX)
    return None


def clean_details(details: Mapping[str, Any]) -> JSON:
    """The scanner's details as bounded JSON: scalars and lists of scalars, keys sorted."""
    cleaned: JSON = {}
    for key in sorted(details, key=str)[:DETAILS_MAX]:
        value = details[key]
        if isinstance(value, list | tuple):
            items = [_clean_value(item) for item in value[:LIST_MAX]]
            cleaned[clean_text(key, 100)] = [item for item in items if item is not None]
        elif (clean := _clean_value(value)) is not None or value is None:
            cleaned[clean_text(key, 100)] = clean
    return cleaned


@dataclass
class _Rule:
    index: int
    first: Finding
    severity: str
    shared_description: bool
    count: int = 1


def _rule_id(finding: Finding) -> str:
    return clean_text(finding.id, ID_MAX) or "unnamed-finding"


def _cve_ids(finding: Finding) -> list[str]:
    listed = finding.details.get("cve_ids")
    ids = [i for i in listed if isinstance(i, str)] if isinstance(listed, list) else []
    return [i for i in dict.fromkeys([finding.id, *ids]) if _CVE.fullmatch(i)][:LIST_MAX]


def _tags(finding: Finding, scanner: str) -> list[str]:
    details = finding.details
    tags = ["security", clean_text(scanner, 100)]
    if _cve_ids(finding):
        tags.append("vulnerability")
    if isinstance(details.get("profile"), str) and "result" in details:
        tags.append("compliance")
    if isinstance(details.get("category"), str):
        tags += ["configuration", clean_text(details["category"], 100)]
    return list(dict.fromkeys(tag for tag in tags if tag))[:TAGS_MAX]


def _help(finding: Finding, severity: str, scanner: str, description: str) -> JSON:
    title = clean_text(finding.title or finding.id, SHORT_MAX)
    text, markdown = [title, ""], [f"**{_markdown(title)}**", ""]
    if description != title:
        text += [description, ""]
        markdown += [_markdown(description), ""]
    text += [f"Severity: {severity}", f"Scanner: {clean_text(scanner, 100)}"]
    markdown += [f"- **Severity:** {severity}", f"- **Scanner:** {_markdown(scanner, 100)}"]
    for key, label in _RULE_DETAILS:
        value = finding.details.get(key)
        if isinstance(value, str) and value:
            text.append(f"{label}: {clean_text(value, DETAIL_TEXT_MAX)}")
            markdown.append(f"- **{label}:** {_markdown(value, DETAIL_TEXT_MAX)}")
    cves = _cve_ids(finding)
    if cves:
        text.append("CVE: " + ", ".join(cves))
        markdown.append("- **CVE:** " + ", ".join(
            f"[{cve}](https://nvd.nist.gov/vuln/detail/{cve})" for cve in cves))
    return {"text": "\n".join(text), "markdown": "\n".join(markdown)}


def _rule_descriptor(rule_id: str, rule: _Rule, scanner: str) -> JSON:
    finding = rule.first
    title = clean_text(finding.title or finding.id, SHORT_MAX) or rule_id
    described = rule.shared_description and finding.description.strip()
    description = clean_text(finding.description if described else title, DESCRIPTION_MAX)
    raw_precision = finding.details.get("precision")
    precision = raw_precision if raw_precision in _PRECISIONS else "high"
    descriptor: JSON = {
        "id": rule_id,
        "shortDescription": {"text": title},
        "fullDescription": {"text": description},
        "help": _help(finding, rule.severity, scanner, description),
        "defaultConfiguration": {"level": LEVEL[rule.severity]},
        "properties": {
            "security-severity": SECURITY_SEVERITY[rule.severity],
            "precision": precision,
            "tags": _tags(finding, scanner),
        },
    }
    cves = _cve_ids(finding)
    if cves:
        descriptor["helpUri"] = f"https://nvd.nist.gov/vuln/detail/{cves[0]}"
    return descriptor


def _rules(findings: Iterable[Finding]) -> dict[str, _Rule]:
    rules: dict[str, _Rule] = {}
    for finding in findings:
        rule_id, severity = _rule_id(finding), _severity(finding)
        rule = rules.get(rule_id)
        if rule is None:
            rules[rule_id] = _Rule(len(rules), finding, severity, shared_description=True)
            continue
        rule.count += 1
        if _RANK[severity] > _RANK[rule.severity]:
            rule.severity = severity
        if finding.description != rule.first.description:
            rule.shared_description = False
    return rules


def _location(finding: Finding, key: str) -> JSON:
    path = finding.path
    line = _line(finding)
    artifact: JSON = {"uri": _uri(key.lstrip("/")) or "target"}
    if path is not None and _uri(path.lstrip("/")):
        artifact = {"uri": _uri(path.lstrip("/")), "uriBaseId": ROOT_BASE_ID}
    location: JSON = {"physicalLocation": {"artifactLocation": artifact,
                                           "region": {"startLine": line}}}
    where = finding.where
    if where and where != path:
        kind = "module" if where == finding.package else "resource"
        location["logicalLocations"] = [{"fullyQualifiedName": clean_text(where, PATH_MAX),
                                         "kind": kind}]
    return location


def _message(finding: Finding, rule: _Rule, target: str) -> str:
    """What the finding says; a description every finding of its rule shares is the rule's."""
    title = clean_text(finding.title or finding.id, SHORT_MAX)
    lines = [title]
    description = finding.description.strip()
    if description and description != finding.title and not (
            rule.shared_description and rule.count > 1):
        lines.append(clean_text(description, MESSAGE_MAX))
    where = finding.where
    if where and where not in description:
        lines.append(f"Where: {clean_text(where, 1000)}")
    outcome = finding.details.get("result")
    if isinstance(outcome, str) and outcome:
        lines.append(f"Result: {clean_text(outcome, 100)}")
    lines.append(f"Target: {clean_text(target, 1000)}")
    if finding.suppressed is not None:
        lines.append(f"Suppressed: {clean_text(finding.suppressed, 1000)}")
    return clean_text("\n".join(lines), MESSAGE_MAX)


def _results(scan_result: ScanResult, key: str, rules: Mapping[str, _Rule]) -> list[JSON]:
    findings = scan_result.findings
    bases = [(_rule_id(f), f.where, _line(f)) for f in findings]
    crowded = {base for base, count in Counter(bases).items() if count > 1}
    occurrences: Counter[str] = Counter()
    out = []
    for finding, base in zip(findings, bases, strict=True):
        rule_id = base[0]
        rule = rules[rule_id]
        parts: tuple[object, ...] = (key, *base)
        if base in crowded:
            parts = (*parts, finding.description)
        digest = _fingerprint(*parts)
        occurrences[digest] += 1
        severity = _severity(finding)
        result: JSON = {
            "ruleId": rule_id,
            "ruleIndex": rule.index,
            "level": LEVEL[severity],
            "message": {"text": _message(finding, rule, scan_result.target)},
            "locations": [_location(finding, key)],
            "partialFingerprints": {"primaryLocationLineHash": f"{digest}:{occurrences[digest]}"},
        }
        if finding.suppressed is not None:
            result["suppressions"] = [{"kind": "external",
                                       "justification": clean_text(finding.suppressed, 1000)}]
        result["properties"] = {"severity": clean_text(finding.severity, 50),
                                "details": clean_details(finding.details)}
        out.append(result)
    return out


def _utc(stamp: str) -> str | None:
    try:
        moment = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _invocation(scan_result: ScanResult) -> JSON:
    notifications = []
    if not scan_result.successful:
        notifications.append({"level": "error", "message": {
            "text": clean_text(scan_result.error or "scan failed", MESSAGE_MAX)}})
    notifications += [{"level": "note", "message": {"text": clean_text(note, MESSAGE_MAX)}}
                      for note in scan_result.notes[:NOTIFICATIONS_MAX]]
    invocation: JSON = {"executionSuccessful": scan_result.successful}
    for name, stamp in (("startTimeUtc", scan_result.started_at),
                        ("endTimeUtc", scan_result.finished_at)):
        utc = _utc(stamp)
        if utc is not None:
            invocation[name] = utc
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return invocation


def _run(scan_result: ScanResult, key: str, automation_id: str) -> JSON:
    rules = _rules(scan_result.findings)
    scanner = scan_result.scanner
    return {
        "tool": {"driver": {
            "name": TOOL_NAME,
            "version": __version__,
            "semanticVersion": __version__,
            "informationUri": INFORMATION_URI,
            "rules": [_rule_descriptor(rule_id, rule, scanner) for rule_id, rule in rules.items()],
        }},
        "automationDetails": {"id": automation_id},
        "originalUriBaseIds": {ROOT_BASE_ID: {"description": {
            "text": f"The root directory of {clean_text(scan_result.target, 1000)}"}}},
        "invocations": [_invocation(scan_result)],
        "results": _results(scan_result, key, rules),
        "properties": {
            "target": clean_text(scan_result.target, 1000),
            "targetId": clean_text(scan_result.target_id, 200),
            "targetType": clean_text(scan_result.target_type, 50),
            "scanner": clean_text(scanner, 100),
            "scanType": clean_text(scan_result.scan_type, 100),
        },
    }


def sarif_log(report: Report) -> JSON:
    """The report as a SARIF 2.1.0 log: one run per target, in the report's order."""
    ids = _automation_ids(report.results)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [_run(result, key, automation_id)
                 for result, (key, automation_id) in zip(report.results, ids, strict=True)],
        "properties": {"runId": clean_text(report.run_id, 200)},
    }


def write_sarif(report: Report) -> bytes:
    """The SARIF log as UTF-8 JSON, keys in a fixed order."""
    try:
        text = json.dumps(sarif_log(report), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"))
        return text.encode("utf-8") + b"\n"
    except (ValueError, UnicodeEncodeError) as exc:  # a bug, but the user gets a line
        raise FormatError(f"cannot write SARIF: {exc}") from exc


@hookimpl
def atomicscan_add_formats(registry: FormatRegistry) -> None:
    registry.add(OutputFormat("sarif", "SARIF 2.1.0, one run per target (GitHub code scanning)",
                              ".sarif", write_run=write_sarif))
