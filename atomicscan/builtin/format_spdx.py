"""The ``spdx-json`` output format: an SPDX 2.3 JSON document per target.

The target is the package the document describes (``documentDescribes`` and a DESCRIBES
relationship); it CONTAINS the operating system (from os-release) and every package, each
with its purl as a PACKAGE-MANAGER external reference (``distro=`` added for OS packages).
SPDX IDs hold only letters, digits, '.' and '-', whatever the names are. A failed target,
or one whose scanner lists no packages, gets no document (:class:`FormatError`): an SPDX
document that lists nothing would read as an empty image.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from atomicscan import __version__
from atomicscan.builtin.sbom import (
    clean,
    os_field,
    package_purl,
    require_scanned,
    target_identity,
)
from atomicscan.formats import FormatError
from atomicscan.results import Package, Report, ScanResult
from atomicscan.safetext import printable

FORMAT_NAME = "spdx-json"
NAMESPACE_BASE = "https://spdx.org/spdxdocs/atomicscan-"
NOASSERTION = "NOASSERTION"

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9.-]+")
_ID_PART_MAX = 64

JSON = dict[str, Any]


def safe_id_part(text: str) -> str:
    """``text`` reduced to what an SPDX ID may hold (letters, digits, '.', '-'), short."""
    return _UNSAFE_ID.sub("-", text).strip("-")[:_ID_PART_MAX].strip("-") or "unnamed"


def write_spdx(result: ScanResult, report: Report) -> bytes:
    """The target's SPDX 2.3 JSON document."""
    require_scanned(result, FORMAT_NAME)
    if result.packages is None:
        raise FormatError(f"{FORMAT_NAME}: no document for {printable(result.target)}: "
                          f"scanner {printable(result.scanner)} lists no packages")
    identity = target_identity(result)
    target = _target_package(result, report)
    target_spdx_id = target["SPDXID"]
    packages = [target]
    os_package = _os_package(result.os)
    if os_package is not None:
        packages.append(os_package)
    packages += [_package(index, package, result.os)
                 for index, package in enumerate(result.packages)]
    relationships = [_relationship("SPDXRef-DOCUMENT", "DESCRIBES", target_spdx_id)]
    relationships += [_relationship(target_spdx_id, "CONTAINS", package["SPDXID"])
                      for package in packages[1:]]
    document: JSON = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": clean(result.target) if result.target.strip() else NOASSERTION,
        # Unique per document (SPDX asks for a UUID): two runs never share a namespace.
        "documentNamespace": f"{NAMESPACE_BASE}{safe_id_part(identity.name)}-{uuid.uuid4()}",
        "creationInfo": {
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creators": [f"Tool: atomicscan-{__version__}"],
            "comment": clean(f"atomicscan run {report.run_id}, scanner {result.scanner}"),
        },
        "documentDescribes": [target_spdx_id],
        "packages": packages,
        "relationships": relationships,
    }
    return json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8")


def _relationship(element: str, kind: str, related: str) -> JSON:
    return {"spdxElementId": element, "relationshipType": kind, "relatedSpdxElement": related}


def _unasserted(doc: JSON) -> JSON:
    """``doc`` with what atomicscan does not know about a package said as NOASSERTION."""
    return {
        **doc,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
    }


def _target_package(result: ScanResult, report: Report) -> JSON:
    identity = target_identity(result)
    doc: JSON = {
        "name": identity.name if identity.name.strip() else NOASSERTION,
        "SPDXID": f"SPDXRef-{safe_id_part(result.target_type.capitalize())}-"
                  f"{safe_id_part(identity.name)}",
        "versionInfo": identity.version,
        "primaryPackagePurpose": "OTHER" if result.target_type == "rootfs" else "CONTAINER",
        "comment": clean(f"{result.target_type} {result.target} ({result.target_id}), "
                         f"runtime {result.runtime or 'none'}, atomicscan run {report.run_id}"),
    }
    if not identity.version:
        del doc["versionInfo"]
    if identity.image_id:
        # The image ID is the SHA-256 of the image's config, which names its layers.
        doc["checksums"] = [{"algorithm": "SHA256", "checksumValue": identity.image_id}]
    return _unasserted(doc)


def _os_package(os_release: Mapping[str, Any] | None) -> JSON | None:
    name = os_field(os_release, "id") or os_field(os_release, "name")
    if name is None:
        return None
    doc: JSON = {"name": name, "SPDXID": f"SPDXRef-OperatingSystem-{safe_id_part(name)}",
                 "primaryPackagePurpose": "OPERATING-SYSTEM"}
    version = os_field(os_release, "version_id")
    if version is not None:
        doc["versionInfo"] = version
    description = os_field(os_release, "pretty_name")
    if description is not None:
        doc["description"] = description
    return _unasserted(doc)


def _package(index: int, package: Package, os_release: Mapping[str, Any] | None) -> JSON:
    name = clean(package.name)
    # The index keeps two packages of the same name (two architectures) apart.
    spdx_id = f"SPDXRef-Package-{index}-{safe_id_part(package.type)}-{safe_id_part(name)}"
    doc: JSON = {"name": name if name.strip() else NOASSERTION, "SPDXID": spdx_id}
    if package.version:
        doc["versionInfo"] = clean(package.version)
    if package.source:
        doc["sourceInfo"] = clean(f"{package.type} package database; "
                                  f"source package {package.source}")
    purl = package_purl(package, os_release)
    if purl is not None:
        doc["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER",
                                "referenceType": "purl",
                                "referenceLocator": purl.to_string()}]
    return _unasserted(doc)
