"""Fast-tier tests of the OpenSCAP scanner's wrapper (scanners/openscap/oscap_scan.py).

Everything here runs without a container runtime. The end-to-end tests at the bottom run the
host's own oscap (package openscap-scanner) against small fake root filesystems and are
skipped when oscap is not installed.
"""

from __future__ import annotations

import bz2
import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

WRAPPER_PATH = Path(__file__).resolve().parents[2] / "scanners" / "openscap" / "oscap_scan.py"
FIXTURES = Path(__file__).resolve().parent / "openscap_fixtures"


def _load_wrapper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openscap_wrapper", WRAPPER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is created.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


oscap_scan = _load_wrapper()

HAVE_OSCAP = shutil.which("oscap") is not None
needs_oscap = pytest.mark.skipif(not HAVE_OSCAP, reason="oscap (openscap-scanner) not installed")

DEBIAN_12 = {
    "id": "debian",
    "version_id": "12",
    "name": "Debian GNU/Linux",
    "pretty_name": "Debian GNU/Linux 12 (bookworm)",
    "version_codename": "bookworm",
}

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>
"""

DPKG_STATUS = """\
Package: zlib1g
Status: install ok installed
Priority: required
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime

Package: tar
Essential: yes
Status: install ok installed
Priority: required
Architecture: amd64
Version: 1.34+dfsg-1.2+deb12u1
Description: GNU version of the tar archiving utility

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
Description: time zone and daylight-saving time data

"""

OS_RELEASE_DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def make_debian_root(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text(OS_RELEASE_DEBIAN)
    # As in Debian: an absolute link, which must resolve inside the target.
    (root / "etc/os-release").symlink_to("/usr/lib/os-release")
    (root / "var/lib/dpkg/status").write_text(DPKG_STATUS)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and mtime, to prove nothing was written."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


# --- safe XML -----------------------------------------------------------------------------


def test_parses_a_plain_document_with_namespaces() -> None:
    root = oscap_scan.parse_xml_bytes(
        b'<a xmlns="urn:x" xmlns:y="urn:y" y:k="v"><y:b>text<c/>tail</y:b></a>'
    )
    assert root.tag == "{urn:x}a"
    assert root.get("{urn:y}k") == "v"
    child = root[0]
    assert child.tag == "{urn:y}b"
    assert oscap_scan._text(child) == "texttail"


def test_billion_laughs_is_refused_before_any_expansion() -> None:
    with pytest.raises(oscap_scan.UnsafeXMLError, match="DOCTYPE"):
        oscap_scan.parse_xml_bytes(BILLION_LAUGHS)


@pytest.mark.parametrize(
    "document",
    [
        b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
        b'<!DOCTYPE a [<!ENTITY % p SYSTEM "http://example.com/p.dtd"> %p;]><a/>',
        b'<!DOCTYPE a SYSTEM "http://example.com/a.dtd"><a/>',
        b"<!DOCTYPE a><a/>",
    ],
)
def test_any_dtd_or_entity_is_refused(document: bytes) -> None:
    with pytest.raises(oscap_scan.UnsafeXMLError):
        oscap_scan.parse_xml_bytes(document)


def test_doctype_is_refused_when_streaming_too(tmp_path: Path) -> None:
    path = tmp_path / "results.xml"
    path.write_bytes(BILLION_LAUGHS)
    with pytest.raises(oscap_scan.UnsafeXMLError):
        oscap_scan.parse_xccdf_results(str(path), "p")


def test_undefined_entity_and_malformed_xml_are_errors() -> None:
    with pytest.raises(oscap_scan.ScanError, match="malformed XML"):
        oscap_scan.parse_xml_bytes(b"<a>&undefined;</a>")
    with pytest.raises(oscap_scan.ScanError, match="malformed XML"):
        oscap_scan.parse_xml_bytes(b"<a><b></a>")


def test_streaming_builds_only_the_wanted_subtrees(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    items = "".join(
        f'<skip><big>{"x" * 1000}</big></skip><want n="{i}"><c/></want>' for i in range(3000)
    )
    path.write_text(f'<root xmlns="urn:t">{items}</root>')
    with path.open("rb") as stream:
        found = list(oscap_scan.iter_xml_elements(stream, ["{urn:t}want"], "big.xml"))
    assert [element.get("n") for element in found] == [str(i) for i in range(3000)]
    assert all(len(element) == 1 for element in found)


# --- XCCDF results ------------------------------------------------------------------------


def test_xccdf_results_counts_and_findings() -> None:
    summary = oscap_scan.parse_xccdf_results(str(FIXTURES / "results.xml"), "P")
    assert summary.test_result_id == (
        "xccdf_org.open-scap_testresult_xccdf_org.example.atomicscan_profile_fixture"
    )
    # Only the last TestResult counts; an unknown result value counts as "unknown".
    assert summary.counts == {
        "pass": 1,
        "fail": 3,
        "error": 1,
        "notapplicable": 1,
        "notchecked": 1,
        "notselected": 1,
        "informational": 1,
        "fixed": 1,
        "unknown": 1,
    }
    by_id = {finding["ID"]: finding for finding in summary.findings}
    assert list(by_id) == [
        "xccdf_org.example.atomicscan_rule_partition_for_tmp",
        "xccdf_org.example.atomicscan_rule_banner",
        "xccdf_org.example.atomicscan_rule_audit_tools",
        "xccdf_org.example.atomicscan_rule_from_elsewhere",
    ]
    tmp = by_id["xccdf_org.example.atomicscan_rule_partition_for_tmp"]
    assert tmp == {
        "ID": "xccdf_org.example.atomicscan_rule_partition_for_tmp",
        "Title": "Ensure /tmp Located On Separate Partition",
        "Severity": "low",
        "Description": "The /tmp directory is a world-writable directory used for temporary "
        "file storage. Ensure it has its own partition or logical volume at installation "
        "time, or migrate it using LVM.",
        "Custom": {"result": "fail", "profile": "P"},
    }
    banner = by_id["xccdf_org.example.atomicscan_rule_banner"]
    assert banner["Severity"] == "medium"
    assert len(banner["Description"]) <= oscap_scan.SHORT_DESCRIPTION + 3
    assert banner["Description"].endswith("...")
    audit = by_id["xccdf_org.example.atomicscan_rule_audit_tools"]
    assert audit["Severity"] == "low"  # XCCDF "info"
    assert audit["Custom"] == {"result": "error", "profile": "P"}
    # A rule-result whose Rule is not in the file keeps its id as title.
    elsewhere = by_id["xccdf_org.example.atomicscan_rule_from_elsewhere"]
    assert elsewhere["Title"] == elsewhere["ID"]
    assert elsewhere["Severity"] == "unknown"


def test_results_without_test_result_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "results.xml"
    path.write_text('<Benchmark xmlns="http://checklists.nist.gov/xccdf/1.2" id="b"/>')
    with pytest.raises(oscap_scan.ScanError, match="no TestResult"):
        oscap_scan.parse_xccdf_results(str(path), "P")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("info", "low"),
        ("low", "low"),
        ("medium", "medium"),
        ("high", "high"),
        ("HIGH", "high"),
        ("unknown", "unknown"),
        ("critical", "unknown"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_severity_mapping(value: str | None, expected: str) -> None:
    assert oscap_scan.xccdf_severity(value) == expected


# --- OVAL results -------------------------------------------------------------------------


def test_oval_results_vulnerabilities() -> None:
    summary = oscap_scan.parse_oval_results(str(FIXTURES / "oval-results.xml"))
    assert summary.definitions == 6
    assert summary.counts == {
        "true": 4,
        "false": 1,
        "error": 1,
        "unknown": 0,
        "not evaluated": 0,
        "not applicable": 0,
    }
    assert summary.vulnerabilities == [
        {
            "Title": "RHSA-2026:0001: openssl security update (Important)",
            "Severity": "important",
            "Description": "OpenSSL is a toolkit that implements TLS.",
            "ID": "CVE-2026-1111",
            "Custom": {
                "cve_ids": ["CVE-2026-1111", "CVE-2026-2222", "CVE-2026-3333"],
                "advisory_id": "RHSA-2026:0001",
                "definition_id": "oval:com.example.rhel:def:20260001",
            },
        },
        {
            "Title": "CVE-2026-0100 zlib",
            "Severity": "unknown",
            "Description": "Heap overflow in inflate.",
            "ID": "CVE-2026-0100",
            "Custom": {
                "cve_ids": ["CVE-2026-0100"],
                "advisory_id": "oval:org.debian:def:2026000100",
                "definition_id": "oval:org.debian:def:2026000100",
            },
        },
        {
            "Title": "USN-6000-1 -- curl vulnerability",
            "Severity": "medium",
            "Description": "curl could be made to crash.",
            "ID": "CVE-2026-0601",
            "Custom": {
                "cve_ids": ["CVE-2026-0601"],
                "advisory_id": "USN-6000-1",
                "definition_id": "oval:com.ubuntu:def:60001",
            },
        },
    ]


def test_definition_without_cve_uses_its_advisory_as_id() -> None:
    definition = oscap_scan.parse_xml_bytes(
        b'<definition xmlns="http://oval.mitre.org/XMLSchema/oval-definitions-5" id="d1"'
        b' class="patch"><metadata><title>DSA-1 x</title>'
        b'<reference source="DSA" ref_id="DSA-1"/></metadata></definition>'
    )
    entry = oscap_scan.oval_vulnerability(definition)
    assert entry["ID"] == "DSA-1"
    assert entry["Custom"] == {"cve_ids": [], "advisory_id": "DSA-1", "definition_id": "d1"}


# --- the target's OS and the content ------------------------------------------------------


def test_os_release_is_read_through_absolute_links_inside_the_target(tmp_path: Path) -> None:
    root = make_debian_root(tmp_path / "root")
    info = oscap_scan.read_os_info(str(root), [])
    assert info["id"] == "debian"
    assert info["version_id"] == "12"
    assert info["pretty_name"] == "Debian GNU/Linux 12 (bookworm)"


def test_os_release_link_never_escapes_the_target(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "outside-os-release"
    outside.write_text("ID=evil\n")
    # ../../.. climbs to the target's root and stops there, like '/..' does.
    (root / "etc/os-release").symlink_to(f"../../../..{outside}")
    notes: list[str] = []
    assert oscap_scan.read_os_info(str(root), notes) is None
    assert notes == []


def test_os_release_loop_is_noted_and_the_next_file_counts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").symlink_to("os-release")  # a loop
    with pytest.raises(OSError, match="symbolic links") as raised:
        oscap_scan.read_target_file(str(root), "etc/os-release")
    assert raised.value.errno == errno.ELOOP
    notes: list[str] = []
    # As for a missing os-release: the OS is unknown, and the note says why.
    assert oscap_scan.read_os_info(str(root), notes) is None
    assert notes == ["ignored /etc/os-release: too many levels of symbolic links"]
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text("ID=debian\n")
    (root / "etc/debian_version").symlink_to("/etc/debian_version")
    notes = []
    assert oscap_scan.read_os_info(str(root), notes) == {
        "id": "debian", "version_id": None, "name": None, "pretty_name": None,
        "version_codename": None}
    assert notes == ["ignored /etc/os-release: too many levels of symbolic links",
                     "ignored /etc/debian_version: too many levels of symbolic links"]


def test_debian_version_fills_a_missing_version_id(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=debian\n")
    (root / "etc/debian_version").write_text("12.5\n")
    assert oscap_scan.read_os_info(str(root), [])["version_id"] == "12"


def test_available_datastreams(tmp_path: Path) -> None:
    for name in ("ssg-debian11-ds.xml", "ssg-debian12-ds.xml", "ssg-debian12-xccdf.xml", "x.xml"):
        (tmp_path / name).write_text("<x/>")
    assert oscap_scan.available_datastreams(str(tmp_path)) == {
        "debian11": str(tmp_path / "ssg-debian11-ds.xml"),
        "debian12": str(tmp_path / "ssg-debian12-ds.xml"),
    }
    assert oscap_scan.available_datastreams(str(tmp_path / "missing")) == {}


CONTENT = {
    name: f"/c/ssg-{name}-ds.xml"
    for name in ("debian11", "debian12", "ubuntu2204", "rhel9", "cs9", "sle15")
}


@pytest.mark.parametrize(
    ("os_id", "version_id", "expected"),
    [
        ("debian", "12", "debian12"),
        ("debian", "11", "debian11"),
        ("Debian", "12.4", "debian12"),
        ("ubuntu", "22.04", "ubuntu2204"),
        ("rhel", "9.3", "rhel9"),
        ("centos", "9", "cs9"),
        ("sles", "15.5", "sle15"),
        ("debian", "10", None),
        ("debian", None, None),
        ("alpine", "3.18.4", None),
        ("linuxmint", "21", None),
    ],
)
def test_os_to_datastream(os_id: str, version_id: str | None, expected: str | None) -> None:
    chosen = oscap_scan.choose_datastream({"id": os_id, "version_id": version_id}, CONTENT)
    assert chosen == (None if expected is None else (expected, CONTENT[expected]))


def test_no_os_release_has_no_datastream() -> None:
    assert oscap_scan.choose_datastream(None, CONTENT) is None
    assert oscap_scan.describe_os(None) == "an unknown OS (no os-release)"


def test_dpkg_architectures_native_first(tmp_path: Path) -> None:
    root = make_debian_root(tmp_path / "root")
    assert oscap_scan.dpkg_architectures(str(root)) == ["amd64"]
    (root / "var/lib/dpkg/arch").write_text("amd64\ni386\nbad$arch\n")
    assert oscap_scan.dpkg_architectures(str(root)) == ["amd64", "i386"]
    assert oscap_scan.dpkg_architectures(str(tmp_path)) == []


def test_apt_config_keeps_libapt_out_of_the_target(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = oscap_scan.write_apt_config(str(work), "/scanin/k1", ["arm64", "armhf"])
    text = Path(path).read_text()
    assert 'APT::Architecture "arm64";' in text
    assert 'APT::Architectures { "arm64"; "armhf"; };' in text
    # Two components in /scanin/k1: '/../..' climbs back to the scanner's own root.
    assert f'Dir::State::lists "/../..{work}/empty.d/";' in text
    assert 'Dir::Cache::pkgcache "/../../proc/.atomicscan-no-apt-cache/pkgcache.bin";' in text
    assert f'Dir::Etc::parts "{work}/empty.d";' in text


# --- profiles, arguments, oscap's messages ------------------------------------------------

PROFILES = [
    ("xccdf_org.ssgproject.content_profile_anssi_bp28_high", "ANSSI-BP-028 (high)"),
    ("xccdf_org.ssgproject.content_profile_anssi_bp28_minimal", "ANSSI-BP-028 (minimal)"),
    ("xccdf_org.ssgproject.content_profile_standard", "Standard"),
]


def test_profile_resolution() -> None:
    resolve = oscap_scan.resolve_profile
    assert resolve(None, PROFILES, "ds.xml") == "xccdf_org.ssgproject.content_profile_standard"
    assert resolve("anssi_bp28_high", PROFILES, "ds.xml") == PROFILES[0][0]
    assert resolve(PROFILES[1][0], PROFILES, "ds.xml") == PROFILES[1][0]
    with pytest.raises(oscap_scan.ScanError) as missing:
        resolve("cis", PROFILES, "ssg-debian12-ds.xml")
    assert str(missing.value) == (
        "profile 'cis' is not in ssg-debian12-ds.xml "
        "(available: anssi_bp28_high, anssi_bp28_minimal, standard)"
    )
    with pytest.raises(oscap_scan.ScanError, match="has no 'standard' profile"):
        resolve(None, PROFILES[:2], "ds.xml")
    # "bp28" is no profile's suffix after an underscore: no guessing.
    with pytest.raises(oscap_scan.ScanError):
        resolve("bp28", PROFILES, "ds.xml")


def test_scanner_args() -> None:
    args = oscap_scan.parse_scanner_args(
        json.dumps(
            {
                "profile": "standard",
                "remediate": "TRUE",
                "datastream": "/scanhost/d/x.xml",
                "colour": "blue",
            }
        )
    )
    assert args.profile == "standard"
    assert args.remediate is True
    assert args.datastream == "/scanhost/d/x.xml"
    assert args.feed is None
    assert args.notes == ("ignored unknown scanner argument 'colour'",)
    assert oscap_scan.parse_scanner_args(None) == oscap_scan.ScannerArgs()
    assert oscap_scan.parse_scanner_args('{"remediate": "false"}').remediate is False
    assert oscap_scan.parse_scanner_args("[1]").notes


def test_oscap_error_line_takes_oscaps_own_error() -> None:
    run = oscap_scan.OscapRun(
        1,
        "Could not determine document type\n",
        "WARNING: Skipping remote file\n"
        "OpenSCAP Error: Start tag expected, '<' not found [./src/source/oscap_source.c:305]\n"
        "Entity: line 1: parser error : Start tag expected\n",
    )
    assert oscap_scan.oscap_error_line(run) == "OpenSCAP Error: Start tag expected, '<' not found"
    assert (
        oscap_scan.describe_exit(oscap_scan.OscapRun(-6, "", "")) == "oscap was killed by SIGABRT"
    )


def test_probe_failures_are_never_a_silent_pass() -> None:
    chroot = oscap_scan.OscapRun(-6, "", "E: oscap:     chroot failed: Operation not permitted\n")
    with pytest.raises(oscap_scan.ScanError, match="could not chroot into the target"):
        oscap_scan.check_probe_health(chroot)
    apt = oscap_scan.OscapRun(0, "", "E: oscap:     dpkginfo_init has failed.\n")
    with pytest.raises(oscap_scan.ScanError, match="dpkg database"):
        oscap_scan.check_probe_health(apt)
    oscap_scan.check_probe_health(oscap_scan.OscapRun(2, "", "W: oscap: harmless\n"))


def test_feed_package_kinds(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    # The needle straddles the 1 MiB read boundary.
    feed.write_bytes(b" " * (oscap_scan.XML_CHUNK - 5) + b"<linux-def:dpkginfo_object/>")
    assert oscap_scan.feed_package_kinds(str(feed)) == ["dpkg"]
    assert oscap_scan.feed_package_kinds(str(FIXTURES / "oval-results.xml")) == []


# --- whole targets without oscap ----------------------------------------------------------


def run_main(
    monkeypatch: pytest.MonkeyPatch,
    scan_in: Path,
    scan_out: Path,
    scan_type: str,
    args: dict[str, str],
    content: Path | None = None,
) -> int:
    monkeypatch.setenv("ATOMICSCAN_SCANIN", str(scan_in))
    monkeypatch.setenv("ATOMICSCAN_SCANOUT", str(scan_out))
    monkeypatch.setenv("ATOMICSCAN_SCAN_TYPE", scan_type)
    monkeypatch.setenv("ATOMICSCAN_SCANNER_ARGS", json.dumps(args))
    monkeypatch.setenv("ATOMICSCAN_SSG_CONTENT", str(content or scan_in / ".no-content"))
    status: int = oscap_scan.main()
    return status


def read_json(scan_out: Path, key: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((scan_out / key / "json").read_text())
    return document


def test_uncovered_os_is_successful_but_not_applicable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan_in, scan_out, content = tmp_path / "in", tmp_path / "out", tmp_path / "content"
    content.mkdir()
    (content / "ssg-debian12-ds.xml").write_text("<never-read/>")
    alpine = scan_in / "k-alpine"
    (alpine / "etc").mkdir(parents=True)
    (alpine / "etc/os-release").write_text(
        'ID=alpine\nVERSION_ID=3.18.4\nPRETTY_NAME="Alpine Linux v3.18"\n'
    )
    (scan_in / "k-empty").mkdir()
    (scan_in / ".hidden").mkdir()
    assert run_main(monkeypatch, scan_in, scan_out, "configuration_compliance", {}, content) == 0
    assert sorted(os.listdir(scan_out)) == ["k-alpine", "k-empty"]
    document = read_json(scan_out, "k-alpine")
    assert document["Scanner"] == "openscap"
    assert document["Successful"] == "true"
    assert document["Scan Type"] == "configuration_compliance"
    assert document["UUID"] == "k-alpine"
    assert document["Results"] == []
    custom = document["Custom"]
    assert custom["applicable"] is False
    assert custom["reason"] == (
        "no SCAP content for Alpine Linux v3.18 in this scanner; "
        "give your own with --scanner-args datastream=PATH"
    )
    assert set(custom["counts"].values()) == {0}
    assert custom["content_covers"] == ["debian12"]
    assert custom["os"]["id"] == "alpine"
    empty = read_json(scan_out, "k-empty")["Custom"]
    assert empty["applicable"] is False
    assert "an unknown OS (no os-release)" in empty["reason"]


def test_cve_without_feed_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan_in, scan_out = tmp_path / "in", tmp_path / "out"
    make_debian_root(scan_in / "k1")
    assert run_main(monkeypatch, scan_in, scan_out, "cve", {}) == 0
    document = read_json(scan_out, "k1")
    assert document["Successful"] == "false"
    assert document["Error"] == "the cve scan needs --scanner-args feed=PATH"
    assert document["Vulnerabilities"] == []


def test_cve_feed_for_packages_the_target_does_not_have(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan_in, scan_out = tmp_path / "in", tmp_path / "out"
    (scan_in / "k-rpm/etc").mkdir(parents=True)
    (scan_in / "k-rpm/etc/os-release").write_text("ID=fedora\nVERSION_ID=40\n")
    feed = str(FIXTURES / "cve-feed.xml")
    assert run_main(monkeypatch, scan_in, scan_out, "cve", {"feed": feed}) == 0
    document = read_json(scan_out, "k-rpm")
    assert document["Successful"] == "true"
    assert document["Custom"]["applicable"] is False
    assert document["Custom"]["reason"] == (
        "the feed checks dpkg packages and fedora 40 has no dpkg database"
    )


def test_hostile_symlink_loops_fail_or_skip_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scan_in, scan_out = tmp_path / "in", tmp_path / "out"
    # A loop at os-release: as if there were none (the OS is unknown), with a note.
    (scan_in / "k-os/etc").mkdir(parents=True)
    (scan_in / "k-os/etc/os-release").symlink_to("/etc/os-release")
    # A loop at the package database the feed asks for: the target fails, not "no packages".
    make_debian_root(scan_in / "k-db")
    status = scan_in / "k-db/var/lib/dpkg/status"
    status.unlink()
    status.symlink_to("status")
    feed = str(FIXTURES / "cve-feed.xml")
    assert run_main(monkeypatch, scan_in, scan_out, "cve", {"feed": feed}) == 0
    os_loop = read_json(scan_out, "k-os")
    assert os_loop["Successful"] == "true"
    assert os_loop["Custom"]["os"] is None
    assert os_loop["Custom"]["applicable"] is False
    assert "ignored /etc/os-release: too many levels of symbolic links" in (
        os_loop["Custom"]["notes"])
    db_loop = read_json(scan_out, "k-db")
    assert db_loop["Successful"] == "false"
    assert db_loop["Error"] == (
        "OSError: [Errno 40] too many levels of symbolic links: '/var/lib/dpkg/status'")
    assert "Traceback" not in capsys.readouterr().err


def test_missing_feed_file_and_unknown_scan_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan_in, scan_out = tmp_path / "in", tmp_path / "out"
    make_debian_root(scan_in / "k1")
    run_main(monkeypatch, scan_in, scan_out, "cve", {"feed": str(tmp_path / "nope.xml")})
    error = read_json(scan_out, "k1")["Error"]
    assert error.startswith("feed ") and "nope.xml" in error and "\n" not in error
    run_main(monkeypatch, scan_in, scan_out, "inventory", {})
    assert read_json(scan_out, "k1")["Error"].startswith("unsupported scan type 'inventory'")


def test_missing_scanin_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_main(monkeypatch, tmp_path / "none", tmp_path / "out", "cve", {}) == 2


# --- end to end with the host's oscap -----------------------------------------------------


@needs_oscap
@pytest.mark.parametrize("compressed", [False, True])
def test_cve_scan_with_real_oscap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compressed: bool
) -> None:
    scan_in, scan_out = tmp_path / "in", tmp_path / "out"
    root = make_debian_root(scan_in / "k1")
    before = snapshot(root)
    feed = tmp_path / "feed.xml"
    data = (FIXTURES / "cve-feed.xml").read_bytes()
    if compressed:
        feed = tmp_path / "feed.xml.bz2"
        feed.write_bytes(bz2.compress(data))
    else:
        feed.write_bytes(data)
    assert run_main(monkeypatch, scan_in, scan_out, "cve", {"feed": str(feed)}) == 0
    document = read_json(scan_out, "k1")
    assert document["Successful"] == "true", document.get("Error")
    vulnerabilities = document["Vulnerabilities"]
    assert len(vulnerabilities) == 1
    assert vulnerabilities[0]["ID"] == "CVE-2026-10001"
    assert vulnerabilities[0]["Severity"] == "important"
    assert vulnerabilities[0]["Custom"] == {
        "cve_ids": ["CVE-2026-10001", "CVE-2026-10002"],
        "advisory_id": "DSA-9001-1",
        "definition_id": "oval:org.example.atomicscan:def:100",
    }
    custom = document["Custom"]
    assert custom["counts"]["true"] == 2  # the inventory definition is true too
    assert custom["counts"]["false"] == 1
    assert custom["files"] == {"oval_results": "oval-results.xml"}
    assert (scan_out / "k1/oval-results.xml").is_file()
    # The decompressed feed went to scratch space, never to the output.
    assert sorted(os.listdir(scan_out / "k1")) == ["json", "oval-results.xml"]
    # libapt wrote no cache into the (here writable) target and ran none of its programs.
    assert snapshot(root) == before


def compose_tiny_datastream(directory: Path) -> Path:
    for name in ("tiny-xccdf.xml", "tiny-oval.xml"):
        shutil.copy(FIXTURES / name, directory / name)
    datastream = directory / "tiny-ds.xml"
    subprocess.run(
        ["oscap", "ds", "sds-compose", "tiny-xccdf.xml", datastream.name],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    return datastream


@needs_oscap
def test_compliance_scan_with_real_oscap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scan_in, scan_out, content = tmp_path / "in", tmp_path / "out", tmp_path / "content"
    content.mkdir()
    root = make_debian_root(scan_in / "k1")
    before = snapshot(root)
    datastream = compose_tiny_datastream(content)
    args = {"datastream": str(datastream), "profile": "fixture", "remediate": "true"}
    assert run_main(monkeypatch, scan_in, scan_out, "configuration_compliance", args) == 0
    document = read_json(scan_out, "k1")
    assert document["Successful"] == "true", document.get("Error")
    custom = document["Custom"]
    assert custom["profile"] == "xccdf_org.example.atomicscan_profile_fixture"
    assert custom["datastream"] == str(datastream)
    assert custom["applicable"] is True
    assert custom["counts"]["pass"] == 1
    assert custom["counts"]["fail"] == 1
    assert custom["files"] == {
        "results_xml": "results.xml",
        "arf": "arf.xml",
        "report_html": "report.html",
        "remediation": "remediation.sh",
    }
    assert document["Results"] == [
        {
            "ID": "xccdf_org.example.atomicscan_rule_hardened",
            "Title": "The hardening marker exists",
            "Severity": "medium",
            "Description": "The file /etc/atomicscan-hardened must exist.",
            "Custom": {"result": "fail", "profile": "xccdf_org.example.atomicscan_profile_fixture"},
        }
    ]
    fix = (scan_out / "k1/remediation.sh").read_text()
    assert "touch /etc/atomicscan-hardened" in fix
    assert snapshot(root) == before
    # The results oscap wrote parse with the safe parser too (no DOCTYPE from oscap).
    root_element = oscap_scan.parse_xml_bytes((scan_out / "k1/results.xml").read_bytes())
    assert isinstance(root_element, ET.Element)


@needs_oscap
def test_missing_profile_and_corrupt_datastream_with_real_oscap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan_in, scan_out, content = tmp_path / "in", tmp_path / "out", tmp_path / "content"
    content.mkdir()
    make_debian_root(scan_in / "k1")
    datastream = compose_tiny_datastream(content)
    run_main(
        monkeypatch,
        scan_in,
        scan_out,
        "configuration_compliance",
        {"datastream": str(datastream), "profile": "standard"},
    )
    document = read_json(scan_out, "k1")
    assert document["Successful"] == "false"
    assert document["Error"] == (
        "profile 'standard' is not in tiny-ds.xml "
        "(available: xccdf_org.example.atomicscan_profile_fixture)"
    )
    run_main(
        monkeypatch, scan_in, scan_out, "configuration_compliance", {"datastream": str(datastream)}
    )
    assert "has no 'standard' profile" in read_json(scan_out, "k1")["Error"]
    corrupt = content / "corrupt-ds.xml"
    corrupt.write_text("this is not XML<")
    run_main(
        monkeypatch, scan_in, scan_out, "configuration_compliance", {"datastream": str(corrupt)}
    )
    document = read_json(scan_out, "k1")
    assert document["Successful"] == "false"
    assert document["Error"].startswith("corrupt-ds.xml: OpenSCAP Error:")
    assert "\n" not in document["Error"]


@needs_oscap
def test_rules_that_all_do_not_apply_are_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Content for another platform evaluates to notapplicable: said, not a silent pass."""
    scan_in, scan_out, content = tmp_path / "in", tmp_path / "out", tmp_path / "content"
    content.mkdir()
    make_debian_root(scan_in / "k1")
    xccdf = (
        (FIXTURES / "tiny-xccdf.xml")
        .read_text()
        .replace(
            "  <version>",
            '  <platform idref="cpe:/o:example:nothing:1"/>\n  <version>',
            1,
        )
    )
    (content / "tiny-xccdf.xml").write_text(xccdf)
    shutil.copy(FIXTURES / "tiny-oval.xml", content / "tiny-oval.xml")
    run_main(
        monkeypatch,
        scan_in,
        scan_out,
        "configuration_compliance",
        {"datastream": str(content / "tiny-xccdf.xml"), "profile": "fixture"},
    )
    document = read_json(scan_out, "k1")
    assert document["Successful"] == "true", document.get("Error")
    custom = document["Custom"]
    assert custom["counts"]["notapplicable"] == 2
    assert custom["applicable"] is False
    assert custom["reason"].startswith("no rule of profile xccdf_org.example.atomicscan_profile")
