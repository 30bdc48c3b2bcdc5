"""The ``sarif`` output format (fast tier): every document it writes is checked against the
OASIS SARIF 2.1.0 schema, and against what GitHub code scanning needs to keep alerts apart
and stable from run to run. Findings come from the real scanners' own shaping code."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
from schemas import sarif_schema

from atomicscan.builtin import format_sarif
from atomicscan.builtin.format_sarif import sarif_log, write_sarif
from atomicscan.collect import findings_of
from atomicscan.formats import FormatRegistry
from atomicscan.plugins import DEFAULT_PLUGINS, Plugins
from atomicscan.results import Finding, Report, ScanResult

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "openscap_fixtures"
IMAGE_ID = "ab" * 32


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


oscap_scan = _load("openscap_wrapper_for_sarif", ROOT / "scanners/openscap/oscap_scan.py")
configlint = _load("configlint_for_sarif", ROOT / "scanners/configlint/configlint.py")


@functools.cache
def _validator() -> jsonschema.Draft4Validator:
    schema = sarif_schema()
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema,
                                      format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def _no_nan(value: str) -> Any:
    raise AssertionError(f"non-JSON number {value}")


def valid_sarif(report: Report) -> dict[str, Any]:
    """The report's SARIF, parsed strictly from its bytes and valid against the schema."""
    data = write_sarif(report)
    doc: dict[str, Any] = json.loads(data.decode("utf-8", errors="strict"),
                                     parse_constant=_no_nan)
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    assert doc == json.loads(json.dumps(sarif_log(report)))
    return doc


def _result(findings: tuple[Finding, ...] = (), **changes: Any) -> ScanResult:
    base = ScanResult(target="registry.example/team/app:1.0", target_id=IMAGE_ID,
                      target_type="image", runtime="podman", scanner="configlint",
                      scan_type="check", successful=True, started_at="2026-01-02T03:04:05.000Z",
                      finished_at="2026-01-02T03:04:09.500Z", findings=findings)
    return base.replace(**changes)


def _report(*results: ScanResult, run_id: str = "run-1") -> Report:
    return Report(run_id=run_id, scanner=results[0].scanner if results else "configlint",
                  scan_type="check", started_at="2026-01-02T03:04:05.000Z",
                  finished_at="2026-01-02T03:04:09.500Z", results_dir=None, results=results)


def configlint_findings() -> tuple[Finding, ...]:
    """Findings as configlint writes them, read back the way atomicscan reads them."""
    checks = configlint.CHECKS
    made = [
        configlint.Finding(checks["CL-WORLD-WRITABLE"], "File /srv/a is writable by everyone.",
                           "/srv/a", None, {"type": "file", "mode": "0666"}),
        configlint.Finding(checks["CL-WORLD-WRITABLE"], "File /srv/b is writable by everyone.",
                           "/srv/b", None, {"type": "file", "mode": "0666"}),
        configlint.Finding(checks["CL-EMPTY-PASSWORD"], "Account 'games' has an empty password.",
                           "/etc/shadow", "/etc/shadow", {"account": "games"}),
        configlint.Finding(checks["CL-EMPTY-PASSWORD"], "Account 'news' has an empty password.",
                           "/etc/shadow", "/etc/shadow", {"account": "news"}),
        configlint.Finding(checks["CL-ENV-SECRET"], "Environment variable API_TOKEN may hold a "
                           "secret.", None, "API_TOKEN", {"variable": "API_TOKEN"}),
        configlint.Finding(checks["CL-NO-HEALTHCHECK"], "The configuration has no HEALTHCHECK.",
                           None, None, {}),
    ]
    return findings_of({"Results": [finding.to_json() for finding in made]})


def xccdf_findings() -> tuple[Finding, ...]:
    summary = oscap_scan.parse_xccdf_results(str(FIXTURES / "results.xml"),
                                             "xccdf_org.ssgproject.content_profile_standard")
    return findings_of({"Results": summary.findings})


def oval_findings() -> tuple[Finding, ...]:
    summary = oscap_scan.parse_oval_results(str(FIXTURES / "oval-results.xml"))
    return findings_of({"Vulnerabilities": summary.vulnerabilities})


def plugin_findings() -> tuple[Finding, ...]:
    return (Finding(id="EXAMPLE-1", title="Something a plugin found", severity="critical"),
            Finding(id="EXAMPLE-2", title="Unrated", severity="no-such-severity"))


def _by_rule(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}


def _check_run_for_github(run: dict[str, Any]) -> None:
    driver = run["tool"]["driver"]
    assert driver["name"] == "atomicscan" and driver["version"] and driver["informationUri"]
    rules = driver["rules"]
    assert len({rule["id"] for rule in rules}) == len(rules)
    for rule in rules:
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert rule["help"]["text"] and rule["help"]["markdown"]
        assert float(rule["properties"]["security-severity"]) > 0
        assert rule["properties"]["precision"] and rule["properties"]["tags"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        assert result["message"]["text"]
        physical = result["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"]["uri"] and physical["region"]["startLine"] >= 1
        assert result["partialFingerprints"]["primaryLocationLineHash"]
    hashes = [r["partialFingerprints"]["primaryLocationLineHash"] for r in run["results"]]
    assert len(set(hashes)) == len(hashes)


@pytest.mark.parametrize(("scanner", "findings"), [
    ("configlint", configlint_findings),
    ("openscap", xccdf_findings),
    ("openscap", oval_findings),
    ("example-plugin", plugin_findings),
])
def test_every_kind_of_finding_is_valid_sarif_for_github(scanner: str, findings: Any) -> None:
    found = findings()
    assert found
    doc = valid_sarif(_report(_result(found, scanner=scanner)))
    (run,) = doc["runs"]
    _check_run_for_github(run)
    assert len(run["results"]) == len(found)
    assert run["invocations"] == [{"executionSuccessful": True,
                                   "startTimeUtc": "2026-01-02T03:04:05.000Z",
                                   "endTimeUtc": "2026-01-02T03:04:09.500Z"}]


def test_configlint_file_findings_point_into_the_image() -> None:
    doc = valid_sarif(_report(_result(configlint_findings())))
    (run,) = doc["runs"]
    locations = [r["locations"][0]["physicalLocation"] for r in run["results"]]
    assert locations[0] == {"artifactLocation": {"uri": "srv/a", "uriBaseId": "TARGETROOT"},
                            "region": {"startLine": 1}}
    assert locations[2]["artifactLocation"]["uri"] == "etc/shadow"
    assert "TARGETROOT" in run["originalUriBaseIds"]
    # No path: the image's name, as Trivy locates OS package findings.
    assert locations[4]["artifactLocation"] == {"uri": "registry.example/team/app"}
    rules = _by_rule(run)
    assert list(rules) == ["CL-WORLD-WRITABLE", "CL-EMPTY-PASSWORD", "CL-ENV-SECRET",
                           "CL-NO-HEALTHCHECK"]
    assert rules["CL-EMPTY-PASSWORD"]["properties"]["security-severity"] == "8.0"
    assert "configuration" in rules["CL-EMPTY-PASSWORD"]["properties"]["tags"]
    assert "Remediation:" in rules["CL-EMPTY-PASSWORD"]["help"]["text"]
    # The two accounts of one file are two alerts, each saying which account.
    shadow = [r for r in run["results"] if r["ruleId"] == "CL-EMPTY-PASSWORD"]
    assert [("games" in r["message"]["text"], "news" in r["message"]["text"])
            for r in shadow] == [(True, False), (False, True)]


def test_a_line_the_scanner_knows_is_the_region() -> None:
    finding = Finding(id="LINT-1", title="Bad setting", severity="medium",
                      details={"path": "/etc/ssh/sshd_config", "line": 42})
    doc = valid_sarif(_report(_result((finding,))))
    physical = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert physical == {"artifactLocation": {"uri": "etc/ssh/sshd_config",
                                             "uriBaseId": "TARGETROOT"},
                        "region": {"startLine": 42}}


def test_openscap_rules_and_cves_carry_their_own_details() -> None:
    xccdf = valid_sarif(_report(_result(xccdf_findings(), scanner="openscap")))["runs"][0]
    rule = xccdf["tool"]["driver"]["rules"][0]
    assert "compliance" in rule["properties"]["tags"]
    assert "Profile:" in rule["help"]["text"]
    first = xccdf["results"][0]
    assert "Result: fail" in first["message"]["text"]
    assert first["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == \
        "xccdf_org.ssgproject.content_profile_standard"

    oval = valid_sarif(_report(_result(oval_findings(), scanner="openscap")))["runs"][0]
    rules = _by_rule(oval)
    assert rules["CVE-2026-1111"]["helpUri"] == "https://nvd.nist.gov/vuln/detail/CVE-2026-1111"
    assert "CVE-2026-3333" in rules["CVE-2026-1111"]["help"]["markdown"]
    assert rules["CVE-2026-1111"]["properties"]["security-severity"] == "8.0"  # Important
    # A feed without a severity: unknown, shown as medium and documented so.
    assert rules["CVE-2026-0100"]["properties"]["security-severity"] == "5.5"
    unknown = next(r for r in oval["results"] if r["ruleId"] == "CVE-2026-0100")
    assert unknown["level"] == "warning" and unknown["properties"]["severity"] == "unknown"
    assert unknown["properties"]["details"]["definition_id"] == "oval:org.debian:def:2026000100"


@pytest.mark.parametrize(("severity", "level", "score"), [
    ("critical", "error", "9.5"), ("high", "error", "8.0"), ("medium", "warning", "5.5"),
    ("low", "note", "2.0"), ("unknown", "warning", "5.5"),
])
def test_levels_and_security_severity_follow_the_common_scale(
        severity: str, level: str, score: str) -> None:
    doc = valid_sarif(_report(_result((Finding(id="X-1", title="x", severity=severity),))))
    run = doc["runs"][0]
    assert run["results"][0]["level"] == level
    rule = run["tool"]["driver"]["rules"][0]
    assert rule["properties"]["security-severity"] == score
    assert rule["defaultConfiguration"]["level"] == level


def test_a_rule_takes_the_highest_severity_of_its_findings() -> None:
    findings = (Finding(id="X-1", title="x", severity="low", details={"path": "/a"}),
                Finding(id="X-1", title="x", severity="high", details={"path": "/b"}))
    run = valid_sarif(_report(_result(findings)))["runs"][0]
    assert len(run["tool"]["driver"]["rules"]) == 1
    assert run["tool"]["driver"]["rules"][0]["properties"]["security-severity"] == "8.0"
    assert [r["level"] for r in run["results"]] == ["note", "error"]


def _identity(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(run["automationDetails"]["id"], result["ruleId"], result["locations"],
             result["partialFingerprints"])
            for run in doc["runs"] for result in run["results"]]


def test_the_same_finding_on_the_same_image_is_the_same_alert_in_two_runs() -> None:
    findings = configlint_findings() + oval_findings()
    first = _report(_result(findings), run_id="20260102-030405-aaaa")
    # Another run: another run ID and times, the image rebuilt (new ID, new build tag).
    second = _report(_result(findings, target="registry.example/team/app:1.1",
                             target_id="cd" * 32, started_at="2026-02-03T04:05:06.000Z",
                             finished_at="2026-02-03T04:05:07.000Z"),
                     run_id="20260203-040506-bbbb")
    assert _identity(valid_sarif(first)) == _identity(valid_sarif(second))
    assert write_sarif(first) != write_sarif(second)  # times differ; the identity does not


def test_fingerprints_differ_by_target_rule_and_where() -> None:
    finding = Finding(id="X-1", title="x", severity="low", details={"path": "/a"})

    def fingerprint(result: ScanResult) -> str:
        doc = valid_sarif(_report(result))
        return str(doc["runs"][0]["results"][0]["partialFingerprints"]["primaryLocationLineHash"])

    base = fingerprint(_result((finding,)))
    assert fingerprint(_result((finding,), target="other/app:1.0")) != base
    assert fingerprint(_result((Finding(id="X-2", title="x", details={"path": "/a"}),))) != base
    assert fingerprint(_result((Finding(id="X-1", title="x", details={"path": "/b"}),))) != base
    assert fingerprint(_result((Finding(id="X-1", title="changed wording", severity="high",
                                        details={"path": "/a"}),))) == base


def test_each_target_is_a_run_with_its_own_category() -> None:
    findings = plugin_findings()
    report = _report(
        _result(findings, target="debian:12"),
        _result(findings, target="docker.io/library/alpine@sha256:" + "1" * 64),
        _result(findings, target="localhost:5000/app:1"),
        _result(findings, target="localhost:5000/app:2"),  # two tags of one repository
        _result(findings, target="web-1", target_type="container"),
        _result(findings, target=IMAGE_ID),
    )
    doc = valid_sarif(report)
    ids = [run["automationDetails"]["id"] for run in doc["runs"]]
    assert ids == [
        "atomicscan/configlint/debian/",
        "atomicscan/configlint/docker.io/library/alpine/",
        "atomicscan/configlint/localhost:5000/app:1/",
        "atomicscan/configlint/localhost:5000/app:2/",
        "atomicscan/configlint/web-1/",
        f"atomicscan/configlint/{IMAGE_ID}/",
    ]
    assert all(run_id.endswith("/") for run_id in ids)  # the whole id is the category
    prints = [run["results"][0]["partialFingerprints"] for run in doc["runs"]]
    assert len({json.dumps(p) for p in prints}) == len(prints)


def test_suppressed_findings_stay_with_their_reason() -> None:
    findings = (Finding(id="X-1", title="x", severity="high", suppressed="accepted until Q3"),
                Finding(id="X-2", title="y", severity="high"))
    run = valid_sarif(_report(_result(findings)))["runs"][0]
    assert run["results"][0]["suppressions"] == [{"kind": "external",
                                                  "justification": "accepted until Q3"}]
    assert "suppressions" not in run["results"][1]


def test_a_failed_target_is_a_failed_invocation() -> None:
    failed = _result(successful=False, error="oscap exited with 1: no such file",
                     target="broken:1", notes=("scanner image pulled",))
    doc = valid_sarif(_report(_result(plugin_findings()), failed))
    run = doc["runs"][1]
    assert run["results"] == []
    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is False
    assert invocation["toolExecutionNotifications"] == [
        {"level": "error", "message": {"text": "oscap exited with 1: no such file"}},
        {"level": "note", "message": {"text": "scanner image pulled"}},
    ]
    assert doc["runs"][0]["invocations"][0]["executionSuccessful"] is True


def test_a_report_without_targets_is_still_valid() -> None:
    assert valid_sarif(_report())["runs"] == []


HOSTILE = "\x00\x1b[31m<script>alert(1)</script>\ud800\udcff\u202e[x](javascript:alert(1))\r"


def test_hostile_text_still_makes_valid_json_and_is_bounded() -> None:
    huge = "A" * 5_000_000
    finding = Finding(
        id="ID" + HOSTILE, title=HOSTILE + huge, severity=HOSTILE, description=huge + HOSTILE,
        details={"path": "/etc/" + HOSTILE + "\udcfe", "line": True, HOSTILE: HOSTILE,
                 "nested": {"deep": [HOSTILE]}, "nan": float("nan"), "big": 10**30,
                 "list": [HOSTILE, 1, None, {"x": 1}], "package": huge,
                 "category": HOSTILE, "remediation": HOSTILE, "cve_ids": [HOSTILE]},
        suppressed=HOSTILE + huge)
    result = _result((finding,), target="app" + HOSTILE, error=huge, notes=(HOSTILE,) * 500,
                     successful=False, started_at=HOSTILE, finished_at="2026-13-45")
    data = write_sarif(_report(result, run_id=HOSTILE))
    assert len(data) < 200_000
    for raw in (b"\x1b", b"\x00", b"\r", b"\xe2\x80\xae"):
        assert raw not in data
    doc = valid_sarif(_report(result, run_id=HOSTILE))
    run = doc["runs"][0]
    rule = run["tool"]["driver"]["rules"][0]
    assert "<script>" not in rule["help"]["markdown"]
    assert r"\<script\>" in rule["help"]["markdown"]
    assert "](javascript" not in rule["help"]["markdown"]
    sarif_result = run["results"][0]
    assert len(sarif_result["message"]["text"]) <= format_sarif.MESSAGE_MAX + 40
    assert "more characters]" in sarif_result["message"]["text"]
    uri = sarif_result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri.startswith("etc/%") and uri.endswith("%FE")  # the undecodable byte kept
    assert sarif_result["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}
    assert sarif_result["properties"]["details"]["nan"] == "nan"
    assert sarif_result["properties"]["details"]["big"] == str(10**30)
    assert "nested" not in sarif_result["properties"]["details"]
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert len(notes) == 1 + format_sarif.NOTIFICATIONS_MAX
    assert "startTimeUtc" not in run["invocations"][0]


def test_ten_thousand_findings_make_one_valid_log() -> None:
    findings = tuple(
        Finding(id=f"CVE-2026-{index % 700:04d}", title=f"Vulnerability {index % 700}",
                severity=("critical", "high", "medium", "low", "unknown")[index % 5],
                description="A long description of the flaw. " * 10,
                details={"package": f"pkg-{index}", "definition_id": f"oval:x:def:{index}",
                         "cve_ids": [f"CVE-2026-{index % 700:04d}"]})
        for index in range(10_000))
    doc = valid_sarif(_report(_result(findings, scanner="openscap")))
    (run,) = doc["runs"]
    assert len(run["results"]) == 10_000
    assert len(run["tool"]["driver"]["rules"]) == 700
    _check_run_for_github(run)


def test_the_format_is_a_plugin() -> None:
    registry = FormatRegistry()
    format_sarif.atomicscan_add_formats(registry)
    sarif = registry.get("sarif")
    assert sarif is not None and sarif.scope == "run" and sarif.extension == ".sarif"

    module = "atomicscan.builtin.format_sarif"
    plugins = Plugins.load(() if module in DEFAULT_PLUGINS else (format_sarif,),
                           entry_points=False)
    loaded = plugins.formats.get("sarif")
    assert loaded is not None and loaded.write_run is not None
    doc = json.loads(loaded.write_run(_report(_result(plugin_findings()))))
    assert doc["version"] == "2.1.0"
