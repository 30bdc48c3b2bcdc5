"""What the SBOM formats (CycloneDX, SPDX) share: clean text, purls with ``distro=``, the image."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packageurl import PackageURL

from atomicscan.formats import FormatError
from atomicscan.results import Package, ScanResult
from atomicscan.safetext import printable

#: purl types of OS package managers: grype matches them against the distro's feed, so their
#: purls carry ``distro=<os-release ID>-<VERSION_ID>`` as syft writes it (``debian-12``).
OS_PURL_TYPES = frozenset({"deb", "rpm", "apk", "alpm"})

_SURROGATE = re.compile("[\ud800-\udfff]")
_HEX_ID = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_CVE_ID = re.compile(r"CVE-\d{4}-\d{4,}")


def clean(value: object) -> str:
    """``value`` as text that encodes to UTF-8: a lone surrogate (from JSON such as
    ``"\\ud800"``) becomes U+FFFD. Control characters stay: JSON escapes them."""
    return _SURROGATE.sub("\ufffd", str(value))


def require_scanned(result: ScanResult, format_name: str) -> None:
    """Raise :class:`FormatError` when the target's scan failed: an SBOM of a failed scan
    would read as an image with nothing in it."""
    if not result.successful:
        raise FormatError(f"{format_name}: no document for {printable(result.target)}: "
                          f"its scan failed")


def os_field(os_release: Mapping[str, Any] | None, key: str) -> str | None:
    """One os-release field as clean, non-empty text, or ``None``."""
    if not isinstance(os_release, Mapping):
        return None
    value = os_release.get(key)
    if isinstance(value, str | int) and str(value).strip():
        return clean(str(value).strip())
    return None


def distro_qualifier(os_release: Mapping[str, Any] | None) -> str | None:
    """``debian-12``, ``alpine-3.18.4``: syft's ``distro=`` value, or ``None`` when unknown."""
    os_id, version_id = os_field(os_release, "id"), os_field(os_release, "version_id")
    if os_id is None or version_id is None:
        return None
    return f"{os_id}-{version_id}"


def _valid(purl: PackageURL) -> PackageURL | None:
    # The constructor accepts what the parser rejects (a type with a space): round-trip it.
    # A blank name or type becomes None inside the library, and to_string() then raises
    # TypeError joining it: that package just has no purl.
    try:
        return PackageURL.from_string(purl.to_string())
    except (ValueError, TypeError):
        return None


def package_purl(package: Package, os_release: Mapping[str, Any] | None) -> PackageURL | None:
    """The package's purl, parsed, with ``distro=`` added to an OS package's purl.

    The scanner's purl is used when it parses; otherwise one is built from the package's
    fields; ``None`` when neither gives a valid purl (the package is still listed).
    """
    purl: PackageURL | None
    try:
        purl = PackageURL.from_string(clean(package.purl))
    except ValueError:
        qualifiers = {"arch": clean(package.architecture)} if package.architecture else {}
        try:
            purl = _valid(PackageURL(type=clean(package.type).lower(),
                                     namespace=os_field(os_release, "id"),
                                     name=clean(package.name),
                                     version=clean(package.version) or None,
                                     qualifiers=qualifiers))
        except (ValueError, TypeError):
            purl = None
    if purl is None:
        return None
    distro = distro_qualifier(os_release)
    qualifiers = dict(purl.qualifiers) if isinstance(purl.qualifiers, dict) else {}
    if purl.type in OS_PURL_TYPES and distro and "distro" not in qualifiers:
        purl = _valid(purl._replace(qualifiers={**qualifiers, "distro": distro}))
    return purl


def purl_key(purl: str) -> tuple[str, str, str, str] | None:
    """What two purls of one package agree on: type, name, version and arch (the namespace
    and the other qualifiers differ between tools)."""
    try:
        parsed = PackageURL.from_string(purl)
    except ValueError:
        return None
    qualifiers = parsed.qualifiers if isinstance(parsed.qualifiers, dict) else {}
    return (parsed.type, parsed.name, parsed.version or "", str(qualifiers.get("arch", "")))


@dataclass(frozen=True)
class TargetIdentity:
    """How an SBOM names its target: the reference's name and tag, and the image ID."""

    name: str
    tag: str | None
    digest: str | None
    image_id: str | None
    """The image ID as 64 hex digits (a content hash of the image config); images only."""
    target_id: str

    @property
    def version(self) -> str:
        """What the SBOM calls the target's version: its tag, else the digest it was named
        by, else its ID."""
        if self.tag or self.digest:
            return self.tag or self.digest or ""
        return f"sha256:{self.image_id}" if self.image_id else self.target_id


def target_identity(result: ScanResult) -> TargetIdentity:
    target = clean(result.target)
    name, tag, digest = target, None, None
    if result.target_type == "image":
        name, _, digest_part = target.partition("@")
        slash, colon = name.rfind("/"), name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1:] or None
        digest = digest_part or None
    matched = _HEX_ID.fullmatch(result.target_id.strip().lower())
    image_id = matched.group(1) if matched and result.target_type == "image" else None
    return TargetIdentity(name=name or target, tag=tag, digest=digest, image_id=image_id,
                          target_id=clean(result.target_id))


def is_cve_id(text: str) -> bool:
    return _CVE_ID.fullmatch(text) is not None
