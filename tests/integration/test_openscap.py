"""The OpenSCAP scanner on real images with real oscap, on both runtimes."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import truth
from helpers import (
    ALPINE,
    DEBIAN,
    OPENSCAP_SCANNER,
    Atomicscan,
    Engine,
    HostSnapshot,
    assert_no_leftovers,
    mounted_image,
)

from atomicscan.mounts import readonly_bind

DATASTREAM = "usr/share/xml/scap/ssg/content/ssg-debian12-ds.xml"
STANDARD = "xccdf_org.ssgproject.content_profile_standard"


@pytest.fixture(scope="module")
def datastream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scanner image's own SCAP content, for an independent evaluation on the host."""
    copy = tmp_path_factory.mktemp("content") / "ssg-debian12-ds.xml"
    with mounted_image(OPENSCAP_SCANNER) as root:
        shutil.copyfile(root / DATASTREAM, copy)
    return copy


@contextlib.contextmanager
def readonly_debian(scratch: Path) -> Iterator[Path]:
    with mounted_image(DEBIAN) as root, readonly_bind(root, scratch / "rootfs") as view:
        yield view


def host_counts(datastream: Path, scratch: Path) -> Counter[str]:
    """Plain `oscap xccdf eval` on the host, over the same rootfs mounted read-only."""
    results = scratch / "host-results.xml"
    with readonly_debian(scratch) as rootfs:
        done = subprocess.run(
            ["oscap", "xccdf", "eval", "--profile", STANDARD, "--results", str(results),
             str(datastream)],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OSCAP_PROBE_ROOT": str(rootfs)},
            capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode in (0, 2), done.stderr
    counts: Counter[str] = Counter()
    # The file host oscap just wrote for this test: trusted input.
    for element in ET.parse(results).iter():  # noqa: S314
        if element.tag.endswith("}rule-result"):
            outcome = next(c for c in element if c.tag.endswith("}result"))
            counts[outcome.text or ""] += 1
    return counts


def test_compliance_counts_equal_host_oscap(
    atomicscan: Atomicscan, host_before: HostSnapshot, datastream: Path, tmp_path: Path
) -> None:
    expected = host_counts(datastream, tmp_path)

    run = atomicscan("--scanner", "openscap", "--json", DEBIAN)

    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert result["successful"] is True
    for outcome in ("pass", "fail", "notapplicable"):
        assert result["counts"][outcome] == expected[outcome], outcome
    assert expected["fail"] > 0
    failed = [f for f in result["findings"] if f["details"]["result"] == "fail"]
    assert len(failed) == expected["fail"]
    assert all(f["severity"] in {"low", "medium", "high", "unknown"} for f in failed)
    assert all(f["details"]["profile"] == STANDARD for f in failed)
    for name in ("results_xml", "arf", "report_html"):
        assert Path(result["files"][name]).is_file(), name
    assert_no_leftovers(host_before, atomicscan.state_dir)


def _feed(package: str, version: str) -> str:
    """Two definitions on one installed package: one true (<= its version), one false."""
    def definition(number: int, cve: str, operation: str) -> str:
        return f"""
    <definition id="oval:org.atomicscan.test:def:{number}" version="1" class="vulnerability">
      <metadata>
        <title>DSA-{number}-1 {package}</title>
        <reference source="DSA" ref_id="DSA-{number}-1"/>
        <reference source="CVE" ref_id="{cve}"/>
        <description>test definition {number}</description>
        <advisory><severity>High</severity></advisory>
      </metadata>
      <criteria><criterion test_ref="oval:org.atomicscan.test:tst:{number}"/></criteria>
    </definition>"""

    def test(number: int, operation: str) -> str:
        return f"""
    <linux-def:dpkginfo_test id="oval:org.atomicscan.test:tst:{number}" version="1"
        check="at least one" check_existence="at_least_one_exists" comment="t{number}">
      <linux-def:object object_ref="oval:org.atomicscan.test:obj:1"/>
      <linux-def:state state_ref="oval:org.atomicscan.test:ste:{number}"/>
    </linux-def:dpkginfo_test>"""

    def state(number: int, operation: str) -> str:
        return f"""
    <linux-def:dpkginfo_state id="oval:org.atomicscan.test:ste:{number}" version="1">
      <linux-def:evr datatype="debian_evr_string"
          operation="{operation}">0:{version}</linux-def:evr>
    </linux-def:dpkginfo_state>"""

    return f"""<?xml version="1.0" encoding="UTF-8"?>
<oval_definitions xmlns="http://oval.mitre.org/XMLSchema/oval-definitions-5"
    xmlns:oval="http://oval.mitre.org/XMLSchema/oval-common-5"
    xmlns:linux-def="http://oval.mitre.org/XMLSchema/oval-definitions-5#linux">
  <generator>
    <oval:schema_version>5.11.1</oval:schema_version>
    <oval:timestamp>2026-11-27T00:00:00</oval:timestamp>
  </generator>
  <definitions>{definition(1, "CVE-2026-0001", "")}{definition(2, "CVE-2026-0002", "")}
  </definitions>
  <tests>{test(1, "")}{test(2, "")}
  </tests>
  <objects>
    <linux-def:dpkginfo_object id="oval:org.atomicscan.test:obj:1" version="1">
      <linux-def:name>{package}</linux-def:name>
    </linux-def:dpkginfo_object>
  </objects>
  <states>{state(1, "less than or equal")}{state(2, "less than")}
  </states>
</oval_definitions>
"""


def test_cve_feed_gives_exactly_the_matching_cve(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path
) -> None:
    with mounted_image(DEBIAN) as root:
        versions = {name: version for name, version, _ in truth.dpkg_packages(root)}
    feed = tmp_path / "feed.xml"
    feed.write_text(_feed("tar", versions["tar"].split(":")[-1]))

    run = atomicscan("--scanner", "openscap", "--scan-type", "cve", "--scanner-args",
                     f"feed={feed}", "--json", DEBIAN)

    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    (finding,) = result["findings"]
    assert finding["id"] == "CVE-2026-0001"
    assert finding["details"]["cve_ids"] == ["CVE-2026-0001"]
    assert "DSA-1-1" in finding["details"]["advisory_id"] + finding["title"]
    assert finding["severity"] == "high"
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_content_for_another_os_is_not_applicable(atomicscan: Atomicscan) -> None:
    run = atomicscan("--scanner", "openscap", "--json", ALPINE)
    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert result["custom"]["applicable"] is False
    assert any(note.startswith("not applicable:") for note in result["notes"])
    assert result["findings"] == []


def test_remediated_image_fixes_a_failed_rule(
    atomicscan: Atomicscan, engine: Engine, runtime: str
) -> None:
    profile = "profile=anssi_bp28_minimal"
    before = engine.image_id(DEBIAN)
    run = atomicscan("--scanner", "openscap", "--scanner-args", profile, "--remediate",
                     "--json", DEBIAN)
    if runtime == "containerd":
        # containerd builds no images: the scan stands, the remediation is refused in a line.
        assert run.returncode == 1, run.stderr
        (line,) = run.stderr.splitlines()
        assert "containerd can't build images" in line and "podman or docker" in line
        (result,) = run.json()["results"]
        assert result["counts"]["pass"] > 0
        assert engine.image_id(DEBIAN) == before
        return
    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    remediated = result["remediated_image"]
    assert remediated == f"{DEBIAN}-remediated"
    try:
        failed_before = {f["id"] for f in result["findings"] if f["details"]["result"] == "fail"}
        again = atomicscan("--scanner", "openscap", "--scanner-args", profile, "--json",
                           remediated)
        assert again.returncode == 0, again.stderr
        (fixed,) = again.json()["results"]
        failed_after = {f["id"] for f in fixed["findings"] if f["details"]["result"] == "fail"}
        assert failed_before - failed_after, "no failed rule passes after remediation"
        assert engine.image_id(DEBIAN) == before, "the original image must stay untouched"
        original = atomicscan("--scanner", "openscap", "--scanner-args", profile, "--json",
                              DEBIAN)
        (still,) = original.json()["results"]
        assert {f["id"] for f in still["findings"]} == failed_before
    finally:
        engine("rmi", remediated, check=False)


def test_remediate_refuses_containers(atomicscan: Atomicscan, engine: Engine,
                                      containers: list[str], unique: str) -> None:
    name = f"atomicscan-test-rem-{unique}"
    containers.append(name)
    engine("create", "--name", name, DEBIAN, "true")
    run = atomicscan("--scanner", "openscap", "--remediate", name)
    assert run.returncode == 2
    assert "images only" in run.stderr and len(run.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "code", "expected"), [
    (["--scan-type", "cve", "--scanner-args", "feed=/no/such/feed.xml"], 2, "no such file"),
    (["--scanner-args", "profile=no_such_profile"], 1, "no_such_profile"),
    (["--scanner-args", "datastream=CORRUPT"], 1, "corrupt-ds.xml"),
])
def test_bad_openscap_input_is_one_line_and_its_code(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path,
    args: list[str], code: int, expected: str,
) -> None:
    corrupt = tmp_path / "corrupt-ds.xml"
    corrupt.write_text("<?xml version='1.0'?><data-stream-collection><oops")
    args = [a.replace("CORRUPT", str(corrupt)) for a in args]

    run = atomicscan("--scanner", "openscap", *args, DEBIAN)

    assert run.returncode == code, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], run.stderr
    assert "Traceback" not in run.stderr
    assert_no_leftovers(host_before, atomicscan.state_dir)
