"""The CycloneDX and SPDX formats: every document checked by the format's own validator."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pluggy
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from atomicscan import hookspecs
from atomicscan.builtin import formats
from atomicscan.builtin.format_cyclonedx import write_cyclonedx
from atomicscan.builtin.format_spdx import write_spdx
from atomicscan.formats import FormatError, FormatRegistry
from atomicscan.results import Finding, Package, Report, ScanResult

JSON = dict[str, Any]
IMAGE_ID = "677dc75d6fb42c782600a577fc62531ab3d0e09d0e5f0e183f61a43709bd3786"
DEBIAN_12 = {"id": "debian", "version_id": "12", "name": "Debian GNU/Linux",
             "pretty_name": "Debian GNU/Linux 12 (bookworm)", "version_codename": "bookworm"}
SPDX_ID = re.compile(r"SPDXRef-[A-Za-z0-9.-]+")

DEB_PACKAGES = (
    Package("apt", "2.6.1", "amd64", "deb", "pkg:deb/debian/apt@2.6.1?arch=amd64&distro=debian-12",
            "apt"),
    # A purl without distro= (as the scanner writes for rpm and apk): the format adds it.
    Package("passwd", "1:4.13+dfsg1-1+deb12u2", "amd64", "deb",
            "pkg:deb/debian/passwd@1%3A4.13%2Bdfsg1-1%2Bdeb12u2?arch=amd64", "shadow"),
    Package("tzdata", "2026b-0+deb12u1", "all", "deb",
            "pkg:deb/debian/tzdata@2026b-0%2Bdeb12u1?arch=all&distro=debian-12", "tzdata"),
)

HOSTILE_TEXT = (
    "name with spaces",
    "ctrl\x00\x1b[31m\x07\r\nline",
    "<script>alert(1)</script>&amp;\"'",
    "x" * 5000,
    "ünïcødé 名前 😀 \u202e\u200b",
    "lone\ud800surrogate",
    "",
    "#?@%/:;=+",
)


def _result(packages: Sequence[Package] | None = DEB_PACKAGES,
            findings: Sequence[Finding] = (), **changes: Any) -> ScanResult:
    base = ScanResult(
        target="localhost/atomicscan-test/debian:bookworm", target_id=IMAGE_ID,
        target_type="image", runtime="podman", scanner="packages", scan_type="inventory",
        successful=True, started_at="2026-12-01T20:45:00.137Z",
        finished_at="2026-12-01T20:45:00.505Z", findings=tuple(findings), os=DEBIAN_12,
        packages=None if packages is None else tuple(packages))
    return base.replace(**changes)


def _report(result: ScanResult) -> Report:
    return Report(run_id="run-1", scanner=result.scanner, scan_type=result.scan_type,
                  started_at=result.started_at, finished_at=result.finished_at,
                  results_dir=None, results=(result,))


def cyclonedx(result: ScanResult) -> JSON:
    """The CycloneDX document of ``result``, after the strict 1.6 schema accepted it."""
    data = write_cyclonedx(result, _report(result))
    # A lone surrogate (escaped as \\udXXX) would make the decoded text unencodable.
    json.dumps(json.loads(data), ensure_ascii=False).encode("utf-8")
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode("utf-8"))
    assert error is None, error
    document: JSON = json.loads(data)
    assert document["specVersion"] == "1.6"
    return document


def spdx(result: ScanResult, tmp_path: Path) -> JSON:
    """The SPDX document of ``result``, after spdx-tools parsed and validated it."""
    data = write_spdx(result, _report(result))
    path = tmp_path / "document.spdx.json"
    path.write_bytes(data)
    messages = validate_full_spdx_document(parse_file(str(path)), "SPDX-2.3")
    assert messages == [], [m.validation_message for m in messages]
    document: JSON = json.loads(data)
    return document


def _spdx_purls(document: JSON) -> list[str]:
    return [ref["referenceLocator"] for package in document["packages"]
            for ref in package.get("externalRefs", ()) if ref["referenceType"] == "purl"]


def _cve(cve: str = "CVE-2024-1234", package: str | None = None, **changes: Any) -> Finding:
    details: dict[str, Any] = {"cve_ids": [cve, "CVE-2024-99999"], "advisory_id": "DSA-5678-1",
                               "definition_id": "oval:org.debian:def:1"}
    if package is not None:
        details["package"] = package
    finding = Finding(id=cve, title=f"{cve} apt", severity="high",
                      description="A flaw in apt.", details=details)
    return dataclasses.replace(finding, **changes)


# --- registration -------------------------------------------------------------------------


def test_both_modules_add_their_target_format_through_the_hook() -> None:
    pm = pluggy.PluginManager("atomicscan")
    pm.add_hookspecs(hookspecs)
    pm.register(formats)
    registry = FormatRegistry()
    pm.hook.atomicscan_add_formats(registry=registry)
    assert registry.names() == ["cyclonedx-json", "html", "spdx-json"]
    cdx, spdx_format = registry.get("cyclonedx-json"), registry.get("spdx-json")
    assert cdx is not None and cdx.scope == "target" and cdx.extension == ".cdx.json"
    assert spdx_format is not None and spdx_format.scope == "target"
    assert spdx_format.extension == ".spdx.json"
    # Registered without importing the heavy library; the writer imports it when used.
    assert cdx.write_target is formats.write_cyclonedx
    assert spdx_format.write_target is formats.write_spdx


# --- CycloneDX ----------------------------------------------------------------------------


def test_cyclonedx_describes_the_image_its_os_and_every_package() -> None:
    document = cyclonedx(_result())
    image = document["metadata"]["component"]
    assert image["type"] == "container"
    assert (image["name"], image["version"], image["tags"]) == (
        "localhost/atomicscan-test/debian", "bookworm", ["bookworm"])
    assert image["hashes"] == [{"alg": "SHA-256", "content": IMAGE_ID}]
    properties = {p["name"]: p["value"] for p in image["properties"]}
    assert properties["atomicscan:target"] == "localhost/atomicscan-test/debian:bookworm"
    assert properties["atomicscan:target_id"] == IMAGE_ID
    assert document["metadata"]["tools"]["components"][0]["name"] == "atomicscan"

    operating_systems = [c for c in document["components"] if c["type"] == "operating-system"]
    assert [(c["name"], c["version"], c["description"]) for c in operating_systems] == [
        ("debian", "12", "Debian GNU/Linux 12 (bookworm)")]
    libraries = [c for c in document["components"] if c["type"] == "library"]
    assert sorted(c["name"] for c in libraries) == ["apt", "passwd", "tzdata"]
    for component in libraries:
        purl = PackageURL.from_string(component["purl"])
        assert purl.qualifiers["distro"] == "debian-12"
        assert purl.type == "deb" and purl.qualifiers["arch"] in ("amd64", "all")
    passwd = next(c for c in libraries if c["name"] == "passwd")
    assert PackageURL.from_string(passwd["purl"]).version == "1:4.13+dfsg1-1+deb12u2"

    refs = {c["bom-ref"] for c in document["components"]}
    assert len(refs) == len(document["components"])
    image_deps = next(d for d in document["dependencies"] if d["ref"] == image["bom-ref"])
    assert set(image_deps["dependsOn"]) == refs
    assert "vulnerabilities" not in document


def test_cyclonedx_vulnerabilities_from_openscap_cve_findings() -> None:
    rule = Finding(id="xccdf_rule_1", title="a failed rule", severity="medium",
                   details={"result": "fail", "profile": "standard"})
    findings = (_cve("CVE-2024-1234", package="apt"),
                _cve("CVE-2023-0001", severity="critical", suppressed="fixed in our mirror"),
                _cve("CVE-2022-4242", package="pkg:deb/debian/tzdata@2026b-0%2Bdeb12u1?arch=all"),
                rule)
    document = cyclonedx(_result(findings=findings))
    by_id = {v["id"]: v for v in document["vulnerabilities"]}
    assert set(by_id) == {"CVE-2024-1234", "CVE-2023-0001", "CVE-2022-4242"}

    apt = by_id["CVE-2024-1234"]
    assert apt["source"]["name"] == "NVD" and apt["source"]["url"].endswith("CVE-2024-1234")
    assert [r["severity"] for r in apt["ratings"]] == ["high"]
    assert {r["id"] for r in apt["references"]} == {"CVE-2024-99999", "DSA-5678-1"}
    assert apt["description"] == "CVE-2024-1234 apt" and apt["detail"] == "A flaw in apt."
    components = {c["bom-ref"]: c for c in document["components"]}
    assert [components[a["ref"]]["name"] for a in apt["affects"]] == ["apt"]
    assert [components[a["ref"]]["name"] for a in by_id["CVE-2022-4242"]["affects"]] == [
        "tzdata"]

    # OVAL says the image is affected without naming a package: the image is the target.
    unknown = by_id["CVE-2023-0001"]
    assert [a["ref"] for a in unknown["affects"]] == [document["metadata"]["component"]["bom-ref"]]
    assert [r["severity"] for r in unknown["ratings"]] == ["critical"]
    assert "fixed in our mirror" in unknown["analysis"]["detail"]


def test_cyclonedx_of_a_cve_scan_without_packages_lists_the_vulnerabilities() -> None:
    result = _result(packages=None, findings=(_cve(),), os=None, scanner="openscap",
                     scan_type="cve")
    document = cyclonedx(result)
    assert document.get("components", []) == []
    assert [v["id"] for v in document["vulnerabilities"]] == ["CVE-2024-1234"]
    properties = {p["name"]: p["value"] for p in document["metadata"]["component"]["properties"]}
    assert "lists no packages" in properties["atomicscan:inventory"]


@pytest.mark.parametrize("writer", [write_cyclonedx, write_spdx])
def test_a_failed_target_gets_no_document(writer: Any) -> None:
    result = _result(successful=False, error="mount failed", packages=None)
    with pytest.raises(FormatError) as raised:
        writer(result, _report(result))
    message = str(raised.value)
    assert "\n" not in message and "scan failed" in message and "debian" in message


@pytest.mark.parametrize("writer", [write_cyclonedx, write_spdx])
def test_a_target_without_a_package_list_or_cves_gets_no_document(writer: Any) -> None:
    result = _result(packages=None, scanner="configlint",
                     findings=(Finding(id="lint-1", title="world-writable file"),))
    with pytest.raises(FormatError, match="lists no packages"):
        writer(result, _report(result))


# --- SPDX ---------------------------------------------------------------------------------


def test_spdx_describes_the_image_which_contains_the_os_and_every_package(
        tmp_path: Path) -> None:
    document = spdx(_result(), tmp_path)
    assert document["spdxVersion"] == "SPDX-2.3"
    assert document["creationInfo"]["creators"] == [
        f"Tool: atomicscan-{__import__('atomicscan').__version__}"]
    packages = {p["SPDXID"]: p for p in document["packages"]}
    [described] = document["documentDescribes"]
    image = packages[described]
    assert (image["name"], image["versionInfo"], image["primaryPackagePurpose"]) == (
        "localhost/atomicscan-test/debian", "bookworm", "CONTAINER")
    assert image["checksums"] == [{"algorithm": "SHA256", "checksumValue": IMAGE_ID}]
    relationships = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"])
                     for r in document["relationships"]}
    assert ("SPDXRef-DOCUMENT", "DESCRIBES", described) in relationships
    contained = {r[2] for r in relationships if r[:2] == (described, "CONTAINS")}
    assert contained == set(packages) - {described}
    os_package = next(p for p in document["packages"]
                      if p.get("primaryPackagePurpose") == "OPERATING-SYSTEM")
    assert (os_package["name"], os_package["versionInfo"]) == ("debian", "12")
    purls = [PackageURL.from_string(p) for p in _spdx_purls(document)]
    assert sorted(p.name for p in purls) == ["apt", "passwd", "tzdata"]
    assert all(p.qualifiers["distro"] == "debian-12" for p in purls)


def test_spdx_namespace_is_unique_per_document(tmp_path: Path) -> None:
    first, second = spdx(_result(), tmp_path), spdx(_result(), tmp_path)
    assert first["documentNamespace"] != second["documentNamespace"]
    assert first["documentNamespace"].startswith("https://")


# --- purls ------------------------------------------------------------------------------


@pytest.mark.parametrize(("package", "os_release", "expected"), [
    (Package("tb-hello", "2:3.4.1-5.tb", "x86_64", "rpm",
             "pkg:rpm/rhel/tb-hello@3.4.1-5.tb?arch=x86_64&epoch=2"),
     {"id": "rhel", "version_id": "9.4"},
     "pkg:rpm/rhel/tb-hello@3.4.1-5.tb?arch=x86_64&distro=rhel-9.4&epoch=2"),
    (Package("musl", "1.2.4-r2", "x86_64", "apk", "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64"),
     {"id": "alpine", "version_id": "3.18.4"},
     "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.18.4"),
    # A distro the scanner already gave stays as it is.
    (Package("apt", "2.6.1", "amd64", "deb", "pkg:deb/debian/apt@2.6.1?distro=debian-12.9"),
     DEBIAN_12, "pkg:deb/debian/apt@2.6.1?distro=debian-12.9"),
    # Not an OS package, or no VERSION_ID: no distro.
    (Package("requests", "2.31.0", "", "pypi", "pkg:pypi/requests@2.31.0"), DEBIAN_12,
     "pkg:pypi/requests@2.31.0"),
    (Package("apt", "2.6.1", "amd64", "deb", "pkg:deb/debian/apt@2.6.1?arch=amd64"),
     {"id": "debian", "version_codename": "trixie"}, "pkg:deb/debian/apt@2.6.1?arch=amd64"),
    # A purl that does not parse is rebuilt from the package's fields.
    (Package("apt", "2.6.1", "amd64", "deb", "not a purl"), DEBIAN_12,
     "pkg:deb/debian/apt@2.6.1?arch=amd64&distro=debian-12"),
])
def test_purls_carry_distro_as_syft_writes_it(tmp_path: Path, package: Package,
                                              os_release: dict[str, str],
                                              expected: str) -> None:
    result = _result(packages=(package,), os=os_release)
    [component] = [c for c in cyclonedx(result)["components"] if c["type"] == "library"]
    assert component["purl"] == expected
    assert _spdx_purls(spdx(result, tmp_path)) == [expected]


def test_a_package_without_any_valid_purl_is_still_listed(tmp_path: Path) -> None:
    result = _result(packages=(Package("odd", "1", "amd64", "bad type!", ""),))
    [component] = [c for c in cyclonedx(result)["components"] if c["type"] == "library"]
    assert component["name"] == "odd" and "purl" not in component
    [package] = [p for p in spdx(result, tmp_path)["packages"] if p["name"] == "odd"]
    assert "externalRefs" not in package


# --- targets and hostile text -------------------------------------------------------------


@pytest.mark.parametrize(("target", "target_type", "name", "version"), [
    ("docker.io/library/debian@sha256:" + "a" * 64, "image", "docker.io/library/debian",
     "sha256:" + "a" * 64),
    ("localhost:5000/app", "image", "localhost:5000/app", "sha256:" + IMAGE_ID),
    ("webserver", "container", "webserver", IMAGE_ID),
    ("/srv/chroots/web", "rootfs", "/srv/chroots/web", IMAGE_ID),
])
def test_every_kind_of_target_is_named(tmp_path: Path, target: str, target_type: str,
                                       name: str, version: str) -> None:
    result = _result(target=target, target_type=target_type)
    image = cyclonedx(result)["metadata"]["component"]
    assert (image["name"], image["version"]) == (name, version)
    # Only an image ID is a content hash; a container ID is not.
    assert ("hashes" in image) == (target_type == "image")
    assert image["type"] == ("file" if target_type == "rootfs" else "container")
    document = spdx(result, tmp_path)
    described = next(p for p in document["packages"]
                     if p["SPDXID"] == document["documentDescribes"][0])
    assert (described["name"], described["versionInfo"]) == (name, version)


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_names_and_versions_give_valid_documents(tmp_path: Path, text: str) -> None:
    packages = (
        Package(text, text, text, "deb", f"pkg:deb/debian/{text}"),
        Package(text, "1.0", "amd64", text, text, text),
        Package("same", "1", "amd64", "deb", "pkg:deb/debian/same@1?arch=amd64"),
        Package("same", "1", "amd64", "deb", "pkg:deb/debian/same@1?arch=amd64"),
    )
    findings = (_cve(text, package=text, title=text, description=text, suppressed=text),)
    os_release = {"id": text, "version_id": text, "pretty_name": text}
    result = _result(packages=packages, findings=findings, os=os_release,
                     target=f"{text}:{text}", target_id=text, runtime=text)

    document = cyclonedx(result)
    assert len({c["bom-ref"] for c in document["components"]}) == len(document["components"])
    assert sum(c["type"] == "library" for c in document["components"]) == len(packages)

    spdx_document = spdx(result, tmp_path)
    ids = [p["SPDXID"] for p in spdx_document["packages"]]
    assert len(set(ids)) == len(ids) and all(SPDX_ID.fullmatch(i) for i in ids)
    assert len(spdx_document["packages"]) == len(packages) + 1 + (1 if text.strip() else 0)


def test_an_empty_package_list_is_an_sbom_of_the_image_and_its_os(tmp_path: Path) -> None:
    result = _result(packages=())
    assert [c["type"] for c in cyclonedx(result)["components"]] == ["operating-system"]
    document = spdx(result, tmp_path)
    assert _spdx_purls(document) == [] and len(document["packages"]) == 2


@pytest.mark.parametrize("blank", [" ", "\t", ""])
def test_a_package_with_a_blank_name_or_type_is_listed_without_a_purl(
    blank: str, tmp_path: Path
) -> None:
    hostile = Package(name=blank, version=blank, architecture=blank, type=blank, purl=blank)
    result = _result(packages=[*DEB_PACKAGES, hostile])

    document = cyclonedx(result)
    assert len(document["components"]) == len(DEB_PACKAGES) + 2  # the OS, the blank one
    assert len(_spdx_purls(spdx(result, tmp_path))) == len(DEB_PACKAGES)
