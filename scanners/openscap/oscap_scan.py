"""OpenSCAP scanner: runs oscap offline against every target rootfs mounted under /scanin.

Scan types (ATOMICSCAN_SCAN_TYPE):

configuration_compliance
    Evaluates an XCCDF profile of a SCAP source data stream with ``oscap xccdf eval`` and
    ``OSCAP_PROBE_ROOT=/scanin/<key>``. The data stream is the built-in SCAP Security Guide
    content matching the target's os-release (``ssg-<id><version>-ds.xml``; this image ships
    Debian 11 and 12), or the user's own with ``--scanner-args datastream=PATH``. The profile
    is ``profile=ID`` (a full XCCDF id, or the part after ``content_profile_``), by default
    ``xccdf_org.ssgproject.content_profile_standard``. ``remediate=true`` also writes a bash
    fix script, ``remediation.sh``, for the rules that failed.

cve
    Evaluates an OVAL definitions feed (``--scanner-args feed=PATH``, plain XML or .bz2) with
    ``oscap oval eval``; every vulnerability or patch definition that is true is reported.

Each target gets /scanout/<key>/json (atomic scan's fields) next to oscap's own files. The
scanner needs no network, never writes under /scanin and parses XML with entity
declarations refused.
"""

from __future__ import annotations

import bz2
import contextlib
import datetime
import enum
import errno
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
import traceback
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from xml.parsers import expat

SCANNER_NAME = "openscap"
SCAN_COMPLIANCE = "configuration_compliance"
SCAN_CVE = "cve"
SCAN_TYPES = (SCAN_COMPLIANCE, SCAN_CVE)

OSCAP = "oscap"
CONTENT_DIR = "/usr/share/xml/scap/ssg/content"
SSG_PROFILE_PREFIX = "xccdf_org.ssgproject.content_profile_"
DEFAULT_PROFILE = SSG_PROFILE_PREFIX + "standard"
# Generous: the largest built-in profile takes seconds; the host enforces its own timeout.
OSCAP_TIMEOUT = 3600

RESULTS_XML = "results.xml"
ARF_XML = "arf.xml"
REPORT_HTML = "report.html"
FIX_SCRIPT = "remediation.sh"
OVAL_RESULTS_XML = "oval-results.xml"

XCCDF_RESULTS = (
    "pass",
    "fail",
    "error",
    "notapplicable",
    "notchecked",
    "notselected",
    "informational",
    "fixed",
    "unknown",
)
FINDING_RESULTS = frozenset({"fail", "error"})
# Results that mean a rule was really looked at on the target.
EVALUATED_RESULTS = tuple(
    result for result in XCCDF_RESULTS if result not in ("notapplicable", "notselected")
)
OVAL_RESULTS = ("true", "false", "error", "unknown", "not evaluated", "not applicable")
OVAL_FINDING_CLASSES = frozenset({"vulnerability", "patch"})
SEVERITIES = {"info": "low", "low": "low", "medium": "medium", "high": "high"}

XCCDF_NAMESPACES = (
    "http://checklists.nist.gov/xccdf/1.2",
    "http://checklists.nist.gov/xccdf/1.1",
)
OVAL_DEFINITIONS_NS = "http://oval.mitre.org/XMLSchema/oval-definitions-5"
OVAL_RESULTS_NS = "http://oval.mitre.org/XMLSchema/oval-results-5"

OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")
OS_FIELDS = ("id", "version_id", "name", "pretty_name", "version_codename")
# os-release ID -> the product prefix of SCAP Security Guide file names, where they differ.
SSG_PRODUCT_ALIASES = {"centos": "cs", "sles": "sle", "opensuse-leap": "opensuse"}
MAX_SYMLINKS = 40
MAX_SMALL_FILE = 1024 * 1024
MAX_FEED_BYTES = 2 * 1024 * 1024 * 1024
XML_CHUNK = 1 << 20
SHORT_DESCRIPTION = 400
MAX_NOTES = 20

# Package databases that OVAL package tests read, by the object element that asks for them.
PACKAGE_OBJECTS = {
    "dpkg": (b"dpkginfo_object", ("var/lib/dpkg/status",)),
    "rpm": (
        b"rpminfo_object",
        (
            "var/lib/rpm/rpmdb.sqlite",
            "var/lib/rpm/Packages",
            "usr/lib/sysimage/rpm/rpmdb.sqlite",
            "usr/lib/sysimage/rpm/Packages",
        ),
    ),
}

# oscap messages after which its results can't be trusted even when it exits normally.
APT_INIT_FAILED = "dpkginfo_init has failed"
CHROOT_FAILED = "chroot failed"
# Bit of CAP_SYS_CHROOT in /proc/self/status capability masks.
CAP_SYS_CHROOT_BIT = 18


class ExitCode(enum.IntEnum):
    OK = 0
    OUTPUT_FAILED = 1
    NO_INPUT = 2


class ScanError(Exception):
    """A problem with one target's scan, reported as its one-line Error."""


class UnsafeXMLError(ScanError):
    """An XML document declared a DTD or entities; it is refused, never expanded."""


# --- safe XML -----------------------------------------------------------------------------


def _qualified(name: str) -> str:
    """expat's 'uri local' (namespace_separator=' ') as ElementTree's '{uri}local'."""
    uri, sep, local = name.rpartition(" ")
    return f"{{{uri}}}{local}" if sep else name


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def namespace(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


class _SafeExpat:
    """Streams elements out of an XML document; any DTD or entity declaration is refused.

    Only the subtrees of the elements named in ``wanted`` ('{ns}local') are built, each
    handed back whole when its end tag is read, so a large document costs little memory.
    An empty ``wanted`` builds the whole document (the root is handed back at the end).
    """

    def __init__(self, wanted: frozenset[str], source_name: str) -> None:
        self.wanted = wanted
        self.source_name = source_name
        self.done: list[ET.Element] = []
        self._builder: ET.TreeBuilder | None = None
        self._depth = 0
        self._parser = expat.ParserCreate(namespace_separator=" ")
        self._parser.buffer_text = True
        # No parameter entities, no external DTD subset, no entity declarations at all.
        self._parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._parser.StartDoctypeDeclHandler = self._refuse_doctype
        self._parser.EntityDeclHandler = self._refuse_entity
        self._parser.UnparsedEntityDeclHandler = self._refuse_entity
        self._parser.ExternalEntityRefHandler = self._refuse_external
        self._parser.StartElementHandler = self._start
        self._parser.EndElementHandler = self._end
        self._parser.CharacterDataHandler = self._data

    def _refuse_doctype(self, *_args: object) -> None:
        raise UnsafeXMLError(f"{self.source_name}: XML with a DOCTYPE is refused")

    def _refuse_entity(self, *_args: object) -> None:
        raise UnsafeXMLError(f"{self.source_name}: XML entity declarations are refused")

    def _refuse_external(self, *_args: object) -> int:
        raise UnsafeXMLError(f"{self.source_name}: XML external entities are refused")

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        tag = _qualified(name)
        if self._builder is None:
            if self.wanted and tag not in self.wanted:
                return
            self._builder = ET.TreeBuilder()
        self._depth += 1
        self._builder.start(tag, {_qualified(key): value for key, value in attributes.items()})

    def _end(self, name: str) -> None:
        if self._builder is None:
            return
        self._builder.end(_qualified(name))
        self._depth -= 1
        if self._depth == 0:
            self.done.append(self._builder.close())
            self._builder = None

    def _data(self, text: str) -> None:
        if self._builder is not None:
            self._builder.data(text)

    def feed(self, chunk: bytes, final: bool = False) -> None:
        try:
            self._parser.Parse(chunk, final)
        except expat.ExpatError as exc:
            raise ScanError(f"{self.source_name}: malformed XML: {exc}") from exc


def iter_xml_elements(
    stream: BinaryIO, wanted: Iterable[str], source_name: str
) -> Iterator[ET.Element]:
    """The complete subtrees of the wanted elements, in document order."""
    parser = _SafeExpat(frozenset(wanted), source_name)
    while True:
        chunk = stream.read(XML_CHUNK)
        parser.feed(chunk, final=not chunk)
        yield from parser.done
        parser.done.clear()
        if not chunk:
            return


def parse_xml_bytes(data: bytes, source_name: str = "XML document") -> ET.Element:
    """The root element of a small document, parsed with entity declarations refused."""
    parser = _SafeExpat(frozenset(), source_name)
    parser.feed(data, final=True)
    if not parser.done:
        raise ScanError(f"{source_name}: no root element")
    return parser.done[0]


def _children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    return (child for child in element if local_name(child.tag) == name)


def _first_child(element: ET.Element, name: str) -> ET.Element | None:
    return next(_children(element, name), None)


def _text(element: ET.Element | None) -> str:
    """All the text of an element (XHTML markup dropped), whitespace collapsed."""
    if element is None:
        return ""
    return " ".join("".join(element.itertext()).split())


def shorten(text: str, limit: int = SHORT_DESCRIPTION) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "..."


# --- the target's root filesystem ---------------------------------------------------------


def symlink_loop(relpath: str) -> OSError:
    """The error for a path whose links go round in circles, as the kernel's lookup gives."""
    return OSError(errno.ELOOP, "too many levels of symbolic links", "/" + relpath.lstrip("/"))


def is_symlink_loop(exc: OSError) -> bool:
    return exc.errno == errno.ELOOP


def resolve_in_root(root: str, relpath: str) -> str | None:
    """Host path of /relpath inside root, every symlink resolved as if root were '/'.

    None when a component is missing or not a directory; OSError (ELOOP) after more than
    MAX_SYMLINKS links, and each caller decides what a loop means.
    """
    pending = [part for part in reversed(relpath.split("/")) if part not in ("", ".")]
    parts: list[str] = []
    hops = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if parts:
                parts.pop()
            continue
        path = os.path.join(root, *parts, part)
        try:
            info = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISLNK(info.st_mode):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise symlink_loop(relpath)
            link = os.readlink(path)
            if link.startswith("/"):
                parts = []
            pending.extend(p for p in reversed(link.split("/")) if p not in ("", "."))
            continue
        if pending and not stat.S_ISDIR(info.st_mode):
            return None
        parts.append(part)
    return os.path.join(root, *parts)


def read_target_file(root: str, relpath: str, limit: int = MAX_SMALL_FILE) -> bytes | None:
    """A small regular file of the target, None when there is none (or it is too large).

    A symlink loop on the way raises OSError (ELOOP), as resolve_in_root does.
    """
    path = resolve_in_root(root, relpath)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        return os.read(fd, limit + 1)[:limit]
    finally:
        os.close(fd)


def parse_os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value, posix=True)
        except ValueError:
            words = [value.strip().strip("'\"")]
        values[key.strip().lower()] = " ".join(words)
    return values


def read_identity_file(root: str, relpath: str, notes: list[str]) -> bytes | None:
    """A file that names the OS: unreadable (a symlink loop too) is as good as missing.

    A loop is noted and never fails the scan: the image could as well have no os-release,
    and then the OS is unknown, which the scans already report.
    """
    try:
        return read_target_file(root, relpath)
    except OSError as exc:
        if not is_symlink_loop(exc):
            raise
        notes.append(f"ignored /{relpath}: {exc.strerror}")
        return None


def read_os_info(root: str, notes: list[str]) -> dict[str, str | None] | None:
    """The os-release fields of the target (VERSION_ID from debian_version if missing)."""
    for relpath in OS_RELEASE_PATHS:
        data = read_identity_file(root, relpath, notes)
        if data is None:
            continue
        fields = parse_os_release(data.decode("utf-8", errors="replace"))
        info: dict[str, str | None] = {name: fields.get(name) or None for name in OS_FIELDS}
        if info["id"] == "debian" and not info["version_id"]:
            version = read_identity_file(root, "etc/debian_version", notes)
            major = (version or b"").decode("ascii", errors="replace").split(".")[0].strip()
            if major.isdigit():
                info["version_id"] = major
        return info
    return None


def describe_os(os_info: dict[str, str | None] | None) -> str:
    if not os_info:
        return "an unknown OS (no os-release)"
    if os_info.get("pretty_name"):
        return str(os_info["pretty_name"])
    return " ".join(str(os_info[key]) for key in ("id", "version_id") if os_info.get(key))


def dpkg_architectures(root: str) -> list[str]:
    """The target's dpkg architectures, native first: apt must not ask the target's dpkg.

    The native one is the most common Architecture of the installed packages ('all' aside);
    var/lib/dpkg/arch, when present, adds the foreign ones. A symlink loop in either raises
    OSError (ELOOP): oscap would read the same database, so the target fails, with one line.
    """
    counts: Counter[str] = Counter()
    status = read_target_file(root, "var/lib/dpkg/status", limit=256 * 1024 * 1024)
    for line in (status or b"").decode("utf-8", errors="replace").splitlines():
        if line.startswith("Architecture:"):
            arch = line.partition(":")[2].strip()
            if arch and arch != "all":
                counts[arch] += 1
    archs = [counts.most_common(1)[0][0]] if counts else []
    extra = read_target_file(root, "var/lib/dpkg/arch") or b""
    for arch in extra.decode("ascii", errors="replace").split():
        if arch not in archs and re.fullmatch(r"[a-z0-9-]+", arch):
            archs.append(arch)
    return archs


def write_apt_config(directory: str, root: str, archs: list[str]) -> str:
    """An APT_CONFIG for oscap's dpkginfo probe, which reads the target through libapt.

    libapt is pointed at the target with RootDir, which it puts in front of every path it
    uses. Left alone it would read the scanner's apt.conf.d, chroot into the target to run
    the target's own dpkg (--print-foreign-architectures; CAP_SYS_CHROOT), read the target's
    package lists and, where the target is writable, write its package cache into it. Here:
    the architectures are given, and the CPU tables, package lists and caches are paths that
    climb out of RootDir ('/..' per component) into the scanner's own files and scratch
    directory, where the caches can't be written and so stay in memory. Only the target's
    dpkg status (and preferences) are read.
    """
    climb = "/.." * len([part for part in os.path.abspath(root).split("/") if part])
    empty = os.path.join(directory, "empty.d")
    os.makedirs(empty, exist_ok=True)
    lines = [
        f'Dir::Etc::main "{directory}/none.conf";',
        f'Dir::Etc::parts "{empty}";',
        f'Dir::Etc::sourcelist "{climb}{directory}/none.list";',
        f'Dir::Etc::sourceparts "{climb}{empty}";',
        f'Dir::State::lists "{climb}{empty}/";',
        f'Dir::Cache::pkgcache "{climb}/proc/.atomicscan-no-apt-cache/pkgcache.bin";',
        f'Dir::Cache::srcpkgcache "{climb}/proc/.atomicscan-no-apt-cache/srcpkgcache.bin";',
    ]
    for table in ("cputable", "tupletable"):
        if os.path.isfile(f"/usr/share/dpkg/{table}"):
            lines.append(f'Dir::dpkg::{table} "{climb}/usr/share/dpkg/{table}";')
    if archs:
        lines.append(f'APT::Architecture "{archs[0]}";')
        lines.append("APT::Architectures { " + " ".join(f'"{a}";' for a in archs) + " };")
    path = os.path.join(directory, "apt.conf")
    with open(path, "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")
    return path


# --- content ------------------------------------------------------------------------------


def available_datastreams(content_dir: str) -> dict[str, str]:
    """Product name ('debian12') -> path of each ssg-<product>-ds.xml in content_dir."""
    found: dict[str, str] = {}
    try:
        names = sorted(os.listdir(content_dir))
    except OSError:
        return found
    for name in names:
        match = re.fullmatch(r"ssg-([a-z0-9_.-]+?)-ds\.xml", name)
        if match:
            found[match.group(1)] = os.path.join(content_dir, name)
    return found


def datastream_products(os_info: dict[str, str | None] | None) -> list[str]:
    """SSG product names that would cover the OS, best first ('debian12', 'ubuntu2204')."""
    if not os_info or not os_info.get("id"):
        return []
    os_id = str(os_info["id"]).lower()
    product = SSG_PRODUCT_ALIASES.get(os_id, os_id)
    version = str(os_info.get("version_id") or "")
    candidates = []
    if version:
        candidates.append(product + version.replace(".", ""))
        candidates.append(product + version.split(".", maxsplit=1)[0])
    return list(dict.fromkeys(candidates))


def choose_datastream(
    os_info: dict[str, str | None] | None, datastreams: dict[str, str]
) -> tuple[str, str] | None:
    """(product, path) of the built-in data stream for the OS, None when none covers it."""
    for product in datastream_products(os_info):
        if product in datastreams:
            return product, datastreams[product]
    return None


# --- running oscap ------------------------------------------------------------------------


@dataclass(frozen=True)
class OscapRun:
    returncode: int
    stdout: str
    stderr: str


def run_oscap(argv: list[str], env: dict[str, str]) -> OscapRun:
    try:
        completed = subprocess.run(
            [OSCAP, *argv],
            env=env,
            cwd=tempfile.gettempdir(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=OSCAP_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ScanError(f"{OSCAP} is not installed in the scanner image") from exc
    except subprocess.TimeoutExpired as exc:
        raise ScanError(f"oscap {argv[0]} {argv[1]} took longer than {OSCAP_TIMEOUT}s") from exc
    return OscapRun(
        completed.returncode,
        completed.stdout.decode("utf-8", errors="replace"),
        completed.stderr.decode("utf-8", errors="replace"),
    )


def _is_warning(line: str) -> bool:
    return line.startswith(("WARNING:", "W: oscap:", "I: oscap:", "D: oscap:"))


def oscap_error_line(run: OscapRun) -> str:
    """oscap's own first error line, without the source file reference it appends."""
    lines = [line.strip() for line in (run.stderr + "\n" + run.stdout).splitlines()]
    lines = [line for line in lines if line and not _is_warning(line)]
    preferred = [line for line in lines if "error" in line.lower() or line.startswith("E:")]
    line = (preferred or lines or ["no error message"])[0]
    line = re.sub(r"\s*\[[^\]]*\.c:\d+\]$", "", line)
    line = re.sub(r"^E: oscap:\s*", "", line)
    return " ".join(line.split())


def describe_exit(run: OscapRun) -> str:
    if run.returncode < 0:
        try:
            name = signal.Signals(-run.returncode).name
        except ValueError:
            name = f"signal {-run.returncode}"
        return f"oscap was killed by {name}"
    return f"oscap exited {run.returncode}"


def has_cap_sys_chroot() -> bool:
    """Whether this process holds CAP_SYS_CHROOT in its effective set."""
    try:
        with open("/proc/self/status", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_CHROOT_BIT & 1)
    except (OSError, ValueError):
        pass
    return False


def check_probe_health(run: OscapRun) -> None:
    """Refuse results oscap produced after a probe lost track of the target."""
    if CHROOT_FAILED in run.stderr:
        held = "holds" if has_cap_sys_chroot() else "lacks"
        raise ScanError(
            f"{describe_exit(run)}: an OVAL probe could not chroot into the target "
            f"(the scanner {held} CAP_SYS_CHROOT; podman grants the definition's capability "
            "to a non-root user, docker does not)"
        )
    if APT_INIT_FAILED in run.stderr:
        raise ScanError(
            "oscap could not read the target's dpkg database (dpkginfo_init has failed): "
            "package checks would be wrong"
        )


def oscap_notes(run: OscapRun) -> list[str]:
    """oscap's distinct warnings and errors, for the record (bounded)."""
    notes: list[str] = []
    for raw in run.stderr.splitlines():
        line = " ".join(raw.split())
        if line.startswith(("WARNING:", "W: oscap:", "E: oscap:")) and line not in notes:
            notes.append(line)
        if len(notes) >= MAX_NOTES:
            notes.append("(more oscap messages left out)")
            break
    return notes


def probe_env(root: str, key: str, apt_config: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name in ("PATH", "LANG", "LC_ALL", "TMPDIR")
    }
    env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    env["OSCAP_PROBE_ROOT"] = root
    env["OSCAP_EVALUATION_TARGET"] = key
    env["APT_CONFIG"] = apt_config
    return env


# --- profiles -----------------------------------------------------------------------------


#: `oscap info --profiles` of the built-in data streams, saved when the image was built: the
#: listing costs a third of a second per scan otherwise.
PROFILE_CACHE = "/opt/atomicscan/profiles"


def _cached_profiles(datastream: str) -> str | None:
    if os.path.dirname(os.path.abspath(datastream)) != CONTENT_DIR:
        return None  # the user's own content: always asked of oscap
    try:
        with open(os.path.join(PROFILE_CACHE, os.path.basename(datastream) + ".profiles"),
                  encoding="utf-8") as cached:
            return cached.read()
    except OSError:
        return None


def list_profiles(datastream: str) -> list[tuple[str, str]]:
    """(id, title) of every profile oscap finds in the data stream or benchmark."""
    listing = _cached_profiles(datastream)
    if listing is None:
        run = run_oscap(["info", "--profiles", datastream],
                        {"PATH": os.environ.get("PATH", "")})
        if run.returncode != 0:
            raise ScanError(f"{os.path.basename(datastream)}: {oscap_error_line(run)}")
        listing = run.stdout
    profiles = []
    for line in listing.splitlines():
        profile_id, sep, title = line.partition(":")
        if sep and profile_id.strip() and " " not in profile_id.strip():
            profiles.append((profile_id.strip(), title.strip()))
    return profiles


def short_profile(profile_id: str) -> str:
    return profile_id.removeprefix(SSG_PROFILE_PREFIX)


def resolve_profile(requested: str | None, profiles: list[tuple[str, str]], ds_name: str) -> str:
    """The full profile id: the requested one (full id or unique suffix), or the default."""
    ids = [profile_id for profile_id, _ in profiles]
    available = ", ".join(short_profile(profile_id) for profile_id in ids) or "none"
    if requested is None:
        if DEFAULT_PROFILE in ids:
            return DEFAULT_PROFILE
        raise ScanError(
            f"{ds_name} has no {short_profile(DEFAULT_PROFILE)!r} profile; choose one with "
            f"--scanner-args profile=ID (available: {available})"
        )
    if requested in ids:
        return requested
    matches = [profile_id for profile_id in ids if profile_id.endswith("_" + requested)]
    if len(matches) == 1:
        return matches[0]
    raise ScanError(f"profile {requested!r} is not in {ds_name} (available: {available})")


# --- XCCDF results ------------------------------------------------------------------------


def xccdf_severity(value: str | None) -> str:
    return SEVERITIES.get((value or "").strip().lower(), "unknown")


@dataclass
class XccdfSummary:
    test_result_id: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(XCCDF_RESULTS, 0))
    findings: list[dict[str, Any]] = field(default_factory=list)


def _xccdf_tags(name: str) -> list[str]:
    return [f"{{{ns}}}{name}" for ns in XCCDF_NAMESPACES]


def summarize_xccdf(elements: Iterable[ET.Element], profile: str) -> XccdfSummary:
    """Counts and failed/errored rules from the Rule and TestResult elements of results."""
    rules: dict[str, ET.Element] = {}
    test_result: ET.Element | None = None
    for element in elements:
        name = local_name(element.tag)
        if name == "Rule" and element.get("id"):
            rules[str(element.get("id"))] = element
        elif name == "TestResult":
            test_result = element  # the last one is the evaluation just made
    summary = XccdfSummary()
    if test_result is None:
        return summary
    summary.test_result_id = test_result.get("id")
    for rule_result in _children(test_result, "rule-result"):
        result = _text(_first_child(rule_result, "result")).lower()
        summary.counts[result if result in summary.counts else "unknown"] += 1
        if result not in FINDING_RESULTS:
            continue
        rule_id = rule_result.get("idref", "")
        # A rule-result without its Rule (foreign results) still counts, with less to say.
        rule = rules.get(rule_id, ET.Element("Rule"))
        severity = rule_result.get("severity") or rule.get("severity")
        title = _text(_first_child(rule, "title"))
        description = _text(_first_child(rule, "description"))
        summary.findings.append(
            {
                "ID": rule_id,
                "Title": title or rule_id,
                "Severity": xccdf_severity(severity),
                "Description": shorten(description),
                "Custom": {"result": result, "profile": profile},
            }
        )
    return summary


def parse_xccdf_results(path: str, profile: str) -> XccdfSummary:
    with open(path, "rb") as stream:
        wanted = _xccdf_tags("Rule") + _xccdf_tags("TestResult")
        summary = summarize_xccdf(iter_xml_elements(stream, wanted, RESULTS_XML), profile)
    if summary.test_result_id is None:
        raise ScanError(f"{RESULTS_XML} from oscap has no TestResult")
    return summary


# --- OVAL results -------------------------------------------------------------------------


@dataclass
class OvalSummary:
    definitions: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OVAL_RESULTS, 0))
    vulnerabilities: list[dict[str, Any]] = field(default_factory=list)


def oval_vulnerability(definition: ET.Element) -> dict[str, Any]:
    """The Vulnerabilities entry of one OVAL definition."""
    definition_id = definition.get("id", "")
    metadata = _first_child(definition, "metadata")
    if metadata is None:
        metadata = ET.Element("metadata")
    cve_ids: list[str] = []
    advisory_id: str | None = None
    for reference in _children(metadata, "reference"):
        source = reference.get("source", "").strip().upper()
        ref_id = reference.get("ref_id", "").strip()
        if not ref_id:
            continue
        if source == "CVE":
            cve_ids.append(ref_id)
        elif advisory_id is None:
            advisory_id = ref_id
    severity = ""
    advisory = _first_child(metadata, "advisory")
    if advisory is not None:
        severity = _text(_first_child(advisory, "severity")).lower()
        # Red Hat style feeds also list <cve> elements under the advisory.
        cve_ids.extend(_text(cve) for cve in _children(advisory, "cve") if _text(cve))
    cve_ids = list(dict.fromkeys(cve_ids))
    title = _text(_first_child(metadata, "title")) or definition_id
    return {
        "Title": title,
        "Severity": severity or "unknown",
        "Description": shorten(_text(_first_child(metadata, "description")), 1000),
        "ID": cve_ids[0] if cve_ids else (advisory_id or definition_id),
        "Custom": {
            "cve_ids": cve_ids,
            "advisory_id": advisory_id or definition_id,
            "definition_id": definition_id,
        },
    }


def summarize_oval(elements: Iterable[ET.Element]) -> OvalSummary:
    """Findings from the definitions and the results sections of an OVAL results document."""
    definitions: dict[str, ET.Element] = {}
    results: list[tuple[str, str]] = []
    for element in elements:
        if namespace(element.tag) == OVAL_DEFINITIONS_NS:
            definitions[element.get("id", "")] = element
        else:
            results.append((element.get("definition_id", ""), element.get("result", "")))
    summary = OvalSummary(definitions=len(results))
    for definition_id, result in results:
        summary.counts[result if result in summary.counts else "unknown"] += 1
        definition = definitions.get(definition_id)
        if result != "true" or definition is None:
            continue
        if definition.get("class", "") in OVAL_FINDING_CLASSES:
            summary.vulnerabilities.append(oval_vulnerability(definition))
    return summary


def parse_oval_results(path: str) -> OvalSummary:
    wanted = (f"{{{OVAL_DEFINITIONS_NS}}}definition", f"{{{OVAL_RESULTS_NS}}}definition")
    with open(path, "rb") as stream:
        return summarize_oval(iter_xml_elements(stream, wanted, OVAL_RESULTS_XML))


# --- scanner arguments --------------------------------------------------------------------


@dataclass(frozen=True)
class ScannerArgs:
    profile: str | None = None
    datastream: str | None = None
    remediate: bool = False
    feed: str | None = None
    notes: tuple[str, ...] = ()


KNOWN_ARGS = frozenset({"profile", "datastream", "remediate", "feed"})


def parse_scanner_args(raw: str | None) -> ScannerArgs:
    if not raw:
        return ScannerArgs()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return ScannerArgs(notes=("ignored ATOMICSCAN_SCANNER_ARGS: not a JSON object",))
    values = {str(key): str(value) for key, value in parsed.items()}
    notes = [f"ignored unknown scanner argument {key!r}" for key in values if key not in KNOWN_ARGS]
    return ScannerArgs(
        profile=values.get("profile") or None,
        datastream=values.get("datastream") or None,
        remediate=values.get("remediate", "").strip().lower() in ("true", "yes", "1", "on"),
        feed=values.get("feed") or None,
        notes=tuple(notes),
    )


def require_file(path: str, what: str) -> None:
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ScanError(f"{what} {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ScanError(f"{what} {path} is not a regular file")


# --- the scans ----------------------------------------------------------------------------


@dataclass
class Target:
    key: str
    root: str
    out_dir: str
    os_info: dict[str, str | None] | None
    notes: list[str]
    custom: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    vulnerabilities: list[dict[str, Any]] = field(default_factory=list)


def scan_compliance(target: Target, args: ScannerArgs, work: str, content_dir: str) -> None:
    custom = target.custom
    custom.update(
        {
            "profile": args.profile,
            "datastream": args.datastream,
            "counts": dict.fromkeys(XCCDF_RESULTS, 0),
            "files": {},
            "applicable": True,
        }
    )
    if args.datastream is not None:
        datastream = args.datastream
        require_file(datastream, "datastream")
    else:
        datastreams = available_datastreams(content_dir)
        custom["content_covers"] = sorted(datastreams)
        if os.environ.get("ATOMICSCAN_SSG_VERSION"):
            custom["content_version"] = os.environ["ATOMICSCAN_SSG_VERSION"]
        chosen = choose_datastream(target.os_info, datastreams)
        if chosen is None:
            custom["applicable"] = False
            custom["reason"] = (
                f"no SCAP content for {describe_os(target.os_info)} in this scanner; "
                "give your own with --scanner-args datastream=PATH"
            )
            return
        datastream = chosen[1]
    custom["datastream"] = datastream
    ds_name = os.path.basename(datastream)
    profile = resolve_profile(args.profile, list_profiles(datastream), ds_name)
    custom["profile"] = profile

    results_path = os.path.join(target.out_dir, RESULTS_XML)
    apt_config = write_apt_config(work, target.root, dpkg_architectures(target.root))
    run = run_oscap(
        [
            "xccdf",
            "eval",
            "--profile",
            profile,
            "--results",
            results_path,
            "--results-arf",
            os.path.join(target.out_dir, ARF_XML),
            "--report",
            os.path.join(target.out_dir, REPORT_HTML),
            datastream,
        ],
        probe_env(target.root, target.key, apt_config),
    )
    target.notes.extend(oscap_notes(run))
    check_probe_health(run)
    if run.returncode not in (0, 2):
        raise ScanError(
            f"{describe_exit(run)} evaluating profile {short_profile(profile)} of {ds_name}: "
            f"{oscap_error_line(run)}"
        )
    summary = parse_xccdf_results(results_path, profile)
    custom["counts"] = summary.counts
    custom["test_result_id"] = summary.test_result_id
    files = {"results_xml": RESULTS_XML, "arf": ARF_XML, "report_html": REPORT_HTML}
    custom["files"] = {
        name: path
        for name, path in files.items()
        if os.path.isfile(os.path.join(target.out_dir, path))
    }
    target.results = summary.findings
    if not any(summary.counts[result] for result in EVALUATED_RESULTS):
        custom["applicable"] = False
        custom["reason"] = (
            f"no rule of profile {short_profile(profile)} applies to "
            f"{describe_os(target.os_info)} (all notapplicable or notselected): "
            f"{ds_name} is for another platform"
        )
    if args.remediate and summary.test_result_id:
        if summary.counts["fail"]:
            generate_fix(target, summary.test_result_id, results_path)
        else:
            target.notes.append(f"no {FIX_SCRIPT}: no rule failed, nothing to remediate")


def generate_fix(target: Target, result_id: str, results_path: str) -> None:
    fix_path = os.path.join(target.out_dir, FIX_SCRIPT)
    run = run_oscap(
        [
            "xccdf",
            "generate",
            "fix",
            "--fix-type",
            "bash",
            "--result-id",
            result_id,
            "--output",
            fix_path,
            results_path,
        ],
        {"PATH": os.environ.get("PATH", "")},
    )
    if run.returncode == 0 and os.path.isfile(fix_path):
        # oscap makes it 0700; it is data for the host, which decides how to run it.
        os.chmod(fix_path, 0o644)
        target.custom["files"]["remediation"] = FIX_SCRIPT
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fix_path)
        target.notes.append(f"no {FIX_SCRIPT}: {describe_exit(run)}: {oscap_error_line(run)}")


def plain_feed(feed: str, work: str) -> str:
    """The feed as plain XML: a .bz2 feed is decompressed into the scratch directory."""
    with open(feed, "rb") as stream:
        compressed = stream.read(3) == b"BZh"
    if not compressed:
        return feed
    plain = os.path.join(work, "feed.xml")
    total = 0
    try:
        with bz2.open(feed, "rb") as source, open(plain, "wb") as sink:
            while chunk := source.read(XML_CHUNK):
                total += len(chunk)
                if total > MAX_FEED_BYTES:
                    raise ScanError(f"feed {feed} decompresses to more than {MAX_FEED_BYTES} bytes")
                sink.write(chunk)
    except (OSError, EOFError) as exc:
        raise ScanError(f"feed {feed}: cannot decompress: {exc}") from exc
    return plain


def feed_package_kinds(feed: str) -> list[str]:
    """Which package databases ('dpkg', 'rpm') the feed's OVAL objects query."""
    needles = {kind: needle for kind, (needle, _) in PACKAGE_OBJECTS.items()}
    overlap = max(len(needle) for needle in needles.values())
    found: set[str] = set()
    tail = b""
    with open(feed, "rb") as stream:
        while chunk := stream.read(XML_CHUNK):
            window = tail + chunk
            found.update(kind for kind, needle in needles.items() if needle in window)
            tail = window[-overlap:]
    return sorted(found)


def has_package_database(root: str, kind: str) -> bool:
    """Whether the target has a database of this kind; OSError (ELOOP) when one is a loop.

    A loop fails the target instead of making the feed "not applicable": a database hidden
    behind a loop must not pass for a target without packages.
    """
    for relpath in PACKAGE_OBJECTS[kind][1]:
        path = resolve_in_root(root, relpath)
        if path is not None and os.path.isfile(path):
            return True
    return False


def scan_cve(target: Target, args: ScannerArgs, work: str) -> None:
    custom = target.custom
    custom.update(
        {
            "feed": args.feed,
            "counts": dict.fromkeys(OVAL_RESULTS, 0),
            "files": {},
            "applicable": True,
        }
    )
    if args.feed is None:
        raise ScanError("the cve scan needs --scanner-args feed=PATH")
    require_file(args.feed, "feed")
    feed = plain_feed(args.feed, work)
    kinds = feed_package_kinds(feed)
    if kinds and not any(has_package_database(target.root, kind) for kind in kinds):
        custom["applicable"] = False
        custom["reason"] = (
            f"the feed checks {' and '.join(kinds)} packages and "
            f"{describe_os(target.os_info)} has no {' or '.join(kinds)} database"
        )
        return
    results_path = os.path.join(target.out_dir, OVAL_RESULTS_XML)
    apt_config = write_apt_config(work, target.root, dpkg_architectures(target.root))
    run = run_oscap(
        ["oval", "eval", "--results", results_path, feed],
        probe_env(target.root, target.key, apt_config),
    )
    target.notes.extend(oscap_notes(run))
    check_probe_health(run)
    if run.returncode not in (0, 2):
        raise ScanError(
            f"{describe_exit(run)} evaluating feed {os.path.basename(args.feed)}: "
            f"{oscap_error_line(run)}"
        )
    summary = parse_oval_results(results_path)
    custom["counts"] = summary.counts
    custom["definitions"] = summary.definitions
    custom["files"] = {"oval_results": OVAL_RESULTS_XML}
    target.vulnerabilities = summary.vulnerabilities


# --- per-target documents -----------------------------------------------------------------


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


def scan_target(
    key: str, root: str, out_dir: str, scan_type: str, args: ScannerArgs, content_dir: str
) -> dict[str, Any]:
    """The json document of one target; failures are reported in it, never raised."""
    started = utc_now()
    target = Target(key=key, root=root, out_dir=out_dir, os_info=None, notes=list(args.notes))
    error: str | None = None
    try:
        os.makedirs(out_dir, exist_ok=True)
        target.os_info = read_os_info(root, target.notes)
        with tempfile.TemporaryDirectory(prefix="oscap-scan-") as work:
            if scan_type == SCAN_COMPLIANCE:
                scan_compliance(target, args, work, content_dir)
            elif scan_type == SCAN_CVE:
                scan_cve(target, args, work)
            else:
                raise ScanError(
                    f"unsupported scan type {scan_type!r} (one of {', '.join(SCAN_TYPES)})"
                )
    except ScanError as exc:
        error = one_line(str(exc))
    except (OSError, UnicodeError) as exc:
        error = one_line(f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        traceback.print_exc()
        error = one_line(f"internal error: {type(exc).__name__}: {exc}")
    custom = {**target.custom, "os": target.os_info, "notes": target.notes}
    document: dict[str, Any] = {
        "Scanner": SCANNER_NAME,
        "Time": started,
        "Finished Time": utc_now(),
        "Successful": "false" if error else "true",
        "Scan Type": scan_type,
        "UUID": key,
        "Vulnerabilities": [] if error else target.vulnerabilities,
        "Results": [] if error else target.results,
        "Custom": custom,
    }
    if error:
        document["Error"] = error
    return document


def write_document(out_dir: str, document: dict[str, Any]) -> None:
    os.makedirs(out_dir, exist_ok=True)
    final = os.path.join(out_dir, "json")
    partial = final + ".partial"
    with open(partial, "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=2, ensure_ascii=False)
        stream.write("\n")
    os.replace(partial, final)


def list_targets(scan_in: str) -> list[str]:
    return sorted(
        entry.name
        for entry in os.scandir(scan_in)
        if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)
    )


def report(message: str) -> None:
    print(f"openscap scanner: {message}", file=sys.stderr)


def main() -> int:
    scan_in = os.environ.get("ATOMICSCAN_SCANIN", "/scanin")
    scan_out = os.environ.get("ATOMICSCAN_SCANOUT", "/scanout")
    content_dir = os.environ.get("ATOMICSCAN_SSG_CONTENT", CONTENT_DIR)
    scan_type = os.environ.get("ATOMICSCAN_SCAN_TYPE", SCAN_COMPLIANCE)
    args = parse_scanner_args(os.environ.get("ATOMICSCAN_SCANNER_ARGS"))
    try:
        keys = list_targets(scan_in)
    except OSError as exc:
        report(f"cannot list {scan_in}: {exc}")
        return ExitCode.NO_INPUT
    status = ExitCode.OK
    for key in keys:
        out_dir = os.path.join(scan_out, key)
        document = scan_target(
            key, os.path.join(scan_in, key), out_dir, scan_type, args, content_dir
        )
        try:
            write_document(out_dir, document)
        except OSError as exc:
            report(f"cannot write output for {key}: {exc}")
            status = ExitCode.OUTPUT_FAILED
    return status


if __name__ == "__main__":
    sys.exit(main())
