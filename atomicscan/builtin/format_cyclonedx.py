"""The ``cyclonedx-json`` output format: a CycloneDX 1.6 SBOM per target.

The document is built with cyclonedx-python-lib. The target is ``metadata.component`` (a
container, its image ID as a SHA-256 hash), with an operating-system component from
os-release, every package as a library component with its purl (``distro=`` added for OS
packages, as grype needs), and a ``vulnerabilities`` section from vulnerability findings
(OpenSCAP OVAL CVE results). A failed target gets no document (:class:`FormatError`); a
target whose scanner lists no packages gets one only when it has vulnerability findings
(then the vulnerabilities affect the image).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cyclonedx.exception import CycloneDxException
from cyclonedx.model import HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.dependency import Dependency
from cyclonedx.model.tool import ToolRepository
from cyclonedx.model.vulnerability import (
    BomTarget,
    Vulnerability,
    VulnerabilityAnalysis,
    VulnerabilityRating,
    VulnerabilityReference,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
    VulnerabilitySource,
)
from cyclonedx.output.json import JsonV1Dot6

from atomicscan import __version__
from atomicscan.builtin.sbom import (
    clean,
    is_cve_id,
    os_field,
    package_purl,
    purl_key,
    require_scanned,
    target_identity,
)
from atomicscan.formats import FormatError
from atomicscan.results import Finding, Package, Report, ScanResult
from atomicscan.safetext import printable

FORMAT_NAME = "cyclonedx-json"

_SEVERITIES = {
    "critical": VulnerabilitySeverity.CRITICAL,
    "high": VulnerabilitySeverity.HIGH,
    "medium": VulnerabilitySeverity.MEDIUM,
    "low": VulnerabilitySeverity.LOW,
}
_OS_RELEASE_FIELDS = ("id", "version_id", "name", "pretty_name", "version_codename",
                      "id_like", "version")
_NVD = "https://nvd.nist.gov/vuln/detail/"
#: CycloneDX 1.6 caps a version at 1024 characters; a longer one is cut and kept whole in
#: the ``atomicscan:version`` property.
VERSION_MAX = 1024


def write_cyclonedx(result: ScanResult, report: Report) -> bytes:
    """The target's CycloneDX 1.6 JSON document."""
    require_scanned(result, FORMAT_NAME)
    vulnerable = [finding for finding in result.findings if is_vulnerability(finding)]
    if result.packages is None and not vulnerable:
        raise FormatError(f"{FORMAT_NAME}: no document for {printable(result.target)}: "
                          f"scanner {printable(result.scanner)} lists no packages and no CVEs")
    image = _target_component(result, report)
    os_component = _os_component(result.os)
    packages = _package_components(result.packages or (), result.os)
    components = ([os_component] if os_component else []) + [c for _, c in packages]
    bom = Bom(
        metadata=BomMetaData(
            component=image,
            tools=ToolRepository(components=[Component(
                type=ComponentType.APPLICATION, name="atomicscan", version=__version__)]),
        ),
        components=components,
        # What the image holds; the packages' own dependencies are not known.
        dependencies=[Dependency(ref=image.bom_ref,
                                 dependencies=[Dependency(ref=c.bom_ref) for c in components])],
        vulnerabilities=[_vulnerability(index, finding, result.scanner, image, packages)
                         for index, finding in enumerate(vulnerable)],
    )
    try:
        with warnings.catch_warnings():
            # "the component this BOM describes has no dependencies": an empty image.
            warnings.simplefilter("ignore", UserWarning)
            text = JsonV1Dot6(bom).output_as_string(indent=2)
    except (CycloneDxException, ValueError) as error:
        raise FormatError(f"{FORMAT_NAME}: {printable(result.target)}: "
                          f"{printable(error)}") from error
    return text.encode("utf-8")


def is_vulnerability(finding: Finding) -> bool:
    """A finding about a known vulnerability: it names CVEs or an OVAL advisory."""
    cve_ids = finding.details.get("cve_ids")
    return (bool(cve_ids) and isinstance(cve_ids, list)) or is_cve_id(finding.id) or (
        "advisory_id" in finding.details and "definition_id" in finding.details)


def _properties(values: Iterable[tuple[str, object]]) -> list[Property]:
    return [Property(name=f"atomicscan:{key}", value=clean(value))
            for key, value in values if value is not None and str(value) != ""]


def _version(text: str | None) -> str | None:
    if not text:
        return None
    return text if len(text) <= VERSION_MAX else text[:VERSION_MAX - 3] + "..."


def _long_version(text: str | None) -> tuple[str, str | None]:
    """The ``atomicscan:version`` property: the whole version, when :func:`_version` cut it."""
    return ("version", text if text and len(text) > VERSION_MAX else None)


def _target_component(result: ScanResult, report: Report) -> Component:
    identity = target_identity(result)
    hashes = ([HashType(alg=HashAlgorithm.SHA_256, content=identity.image_id)]
              if identity.image_id else [])
    return Component(
        # A rootfs directory is a file-system tree, as syft types its directory sources.
        type=ComponentType.FILE if result.target_type == "rootfs" else ComponentType.CONTAINER,
        name=identity.name,
        version=_version(identity.version),
        bom_ref="target",
        hashes=hashes,
        tags=[identity.tag] if identity.tag else None,
        properties=_properties([
            ("target", result.target), ("target_id", result.target_id),
            ("target_type", result.target_type), ("runtime", result.runtime),
            ("image_digest", identity.digest), ("scanner", result.scanner),
            ("run_id", report.run_id), _long_version(identity.version),
            ("inventory", None if result.packages is not None
             else f"none: scanner {result.scanner} lists no packages"),
        ]),
    )


def _os_component(os_release: Mapping[str, Any] | None) -> Component | None:
    name = os_field(os_release, "id") or os_field(os_release, "name")
    if name is None:
        return None
    version = os_field(os_release, "version_id")
    return Component(
        type=ComponentType.OPERATING_SYSTEM,
        name=name,
        version=_version(version),
        description=os_field(os_release, "pretty_name"),
        bom_ref=f"os:{name}@{version or ''}",
        properties=_properties((f"os:{key}", os_field(os_release, key))
                               for key in _OS_RELEASE_FIELDS),
    )


def _package_components(packages: Sequence[Package], os_release: Mapping[str, Any] | None
                        ) -> list[tuple[Package, Component]]:
    used: set[str] = {"target"}
    components: list[tuple[Package, Component]] = []
    for index, package in enumerate(packages):
        purl = package_purl(package, os_release)
        name, version = clean(package.name), clean(package.version)
        ref = purl.to_string() if purl else f"package:{name}@{version}"
        if ref in used:
            ref = f"{ref}#{index}"
        used.add(ref)
        components.append((package, Component(
            type=ComponentType.LIBRARY,
            name=name,
            version=_version(version),
            purl=purl,
            bom_ref=ref,
            properties=_properties([
                ("package:type", package.type), ("package:architecture", package.architecture),
                ("package:source", package.source), _long_version(version),
            ]),
        )))
    return components


def _affected(finding: Finding, image: Component,
              packages: Sequence[tuple[Package, Component]]) -> list[BomTarget]:
    """The packages a finding names (``details["package"]``: a purl or a name), else the
    image: an OVAL definition that matched says the image is affected."""
    wanted = finding.package
    refs: list[str] = []
    if wanted:
        key = purl_key(wanted) if wanted.startswith("pkg:") else None
        for package, component in packages:
            if (key is not None and component.purl is not None
                    and purl_key(component.purl.to_string()) == key) or package.name == wanted:
                refs.append(str(component.bom_ref))
    return [BomTarget(ref=ref) for ref in refs or [str(image.bom_ref)]]


def _source(vulnerability_id: str, scanner: str) -> VulnerabilitySource:
    if is_cve_id(vulnerability_id):
        return VulnerabilitySource(name="NVD", url=XsUri(_NVD + vulnerability_id))
    return VulnerabilitySource(name=clean(scanner))


def _vulnerability(index: int, finding: Finding, scanner: str, image: Component,
                   packages: Sequence[tuple[Package, Component]]) -> Vulnerability:
    vulnerability_id = clean(finding.id)
    raw_cves = finding.details.get("cve_ids")
    cve_ids = [clean(c) for c in raw_cves if isinstance(c, str) and c] if isinstance(
        raw_cves, list) else []
    advisory = finding.details.get("advisory_id")
    aliases = [c for c in cve_ids if c != vulnerability_id]
    if isinstance(advisory, str) and advisory and clean(advisory) != vulnerability_id:
        aliases.append(clean(advisory))
    severity = _SEVERITIES.get(finding.severity, VulnerabilitySeverity.UNKNOWN)
    return Vulnerability(
        bom_ref=f"vulnerability:{index}",
        id=vulnerability_id,
        source=_source(vulnerability_id, scanner),
        references=[VulnerabilityReference(id=alias, source=_source(alias, scanner))
                    for alias in dict.fromkeys(aliases)],
        ratings=[VulnerabilityRating(source=VulnerabilitySource(name=clean(scanner)),
                                     severity=severity, method=VulnerabilityScoreSource.OTHER)],
        description=clean(finding.title) or None,
        detail=clean(finding.description) or None,
        analysis=(VulnerabilityAnalysis(detail=f"suppressed: {clean(finding.suppressed)}")
                  if finding.suppressed is not None else None),
        affects=_affected(finding, image, packages),
        properties=_properties([
            ("definition_id", finding.details.get("definition_id")),
            ("advisory_id", advisory),
            ("suppressed", finding.suppressed),
        ]),
    )
