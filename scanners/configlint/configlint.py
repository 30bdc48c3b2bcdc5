"""configlint: security lint of each target's image configuration and root filesystem.

Runs in the scanner container as uid 65534 (docs/scanner-contract.md): for every directory
/scanin/<key> it writes /scanout/<key>/json, judging the target's configuration from
/scanmeta/targets.json and its files from the read-only rootfs. Standard library only, and only
the part Debian's python3-minimal ships: that package has no json module, so a small strict
JSON reader and writer are part of this file.

Scanner arguments (--scanner-args, in ATOMICSCAN_SCANNER_ARGS):

  ignore=ID[:ID...]  check IDs (shell patterns allowed: CL-PKG-*) whose findings are marked
                     ignored. atomicscan splits --scanner-args at commas, so separate the IDs
                     with ":" (or "+"): --scanner-args ignore=CL-SSH-PORT:CL-LATEST-ONLY
  ignore_file=PATH   a host file, handed over read-only under /scanhost: one rule a line,
                     "ID" or "ID PATH-GLOB"; "#" starts a comment, and a comment after a rule
                     becomes the reason shown. PATH-GLOB is an fnmatch pattern ("*" matches
                     "/" too) for the finding's target path, or for CL-ENV-SECRET the
                     variable name and for CL-SSH-PORT the port ("22/tcp"). A line that
                     is not a rule for a known check is noted by its number only: nothing
                     of the file but a rule's own comment reaches the results.

Ignored findings stay in Results with Custom.ignored = true and Custom.reason; they are left
out of the severity counts.

Capabilities: /etc/shadow (0640 root:shadow), /root and other private files can't be read by
uid 65534, so scanner.toml asks for CAP_DAC_READ_SEARCH. podman hands an added capability to
a non-root user as an ambient capability, so it works there, no-new-privileges included.
docker 20.10 gives a non-root user no ambient capabilities: the scan still runs, the
unreadable files and directories are counted in the notes, and the empty-password check is
listed in Custom.checks_skipped.

Local runs: ATOMICSCAN_SCANIN, ATOMICSCAN_SCANOUT and ATOMICSCAN_SCANMETA replace /scanin,
/scanout and /scanmeta.
"""

from __future__ import annotations

import datetime
import enum
import errno
import fnmatch
import math
import os
import re
import stat
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

SCANNER_NAME = "configlint"
SCAN_TYPE = "lint"

SEVERITIES = ("critical", "high", "medium", "low")
CATEGORY_ORDER = {"config": 0, "rootfs": 1}

# Only the first bytes of a file are searched for a PEM private key header, and only in files
# up to this size (keys are a few KiB; bigger files are binaries and data).
KEY_SCAN_BYTES = 4096
KEY_SCAN_MAX_SIZE = 1024 * 1024
# Credential files and the small system files read whole.
CREDENTIAL_MAX_BYTES = 1024 * 1024
SYSTEM_FILE_MAX_BYTES = 64 * 1024 * 1024
IGNORE_FILE_MAX_BYTES = 1024 * 1024
# An ignore file's lines that are not rules get a note each up to this many, then one count;
# the notes name the line number only, never its text (the file may be a host secret).
IGNORE_FILE_MAX_NOTES = 10
IGNORE_REASON_MAX_CHARS = 200
TARGETS_JSON_MAX_BYTES = 64 * 1024 * 1024
JSON_MAX_DEPTH = 64
# Linux gives up after 40 symlinks in one lookup.
MAX_SYMLINKS = 40
# A pathological image (a million world-writable files) must not make a huge json.
MAX_FINDINGS_PER_CHECK = 1000
# How many example paths a note names.
NOTE_EXAMPLES = 5

# Top-level directories of a target that are never descended into.
SKIPPED_TOP_DIRS = ("dev", "proc", "sys")


class ExitCode(enum.IntEnum):
    OK = 0
    OUTPUT_FAILED = 1
    NO_INPUT = 2


class ScanError(Exception):
    """A problem that fails one target's scan; reported in its json."""


# --- the checks -------------------------------------------------------------------------------


class Check(NamedTuple):
    id: str
    title: str
    severity: str
    category: str
    cis: str | None  # CIS Docker Benchmark v1.6.0 item, only where one clearly applies
    remediation: str


CHECK_LIST = (
    Check("CL-USER-ROOT", "Container runs as root", "medium", "config", "4.1",
          "Create an unprivileged user in the image and switch to it with USER."),
    Check("CL-NO-HEALTHCHECK", "No HEALTHCHECK", "low", "config", "4.6",
          "Add a HEALTHCHECK instruction that probes the service."),
    Check("CL-ENV-SECRET", "Secret in an environment variable", "high", "config", "4.10",
          "Remove the secret from ENV; pass it at run time as a mounted secret file."),
    Check("CL-SSH-PORT", "SSH port 22 exposed", "medium", "config", None,
          "Remove EXPOSE 22; use 'podman exec' or 'docker exec' to get into a container."),
    Check("CL-LATEST-ONLY", "Image referenced only by the latest tag", "low", "config", None,
          "Tag the image with a version (and deploy by that tag or by digest)."),
    Check("CL-SETUID", "setuid/setgid file outside the allow-list", "medium", "rootfs", "4.8",
          "Remove the file or its setuid/setgid bits (chmod u-s,g-s) in the image build."),
    Check("CL-WORLD-WRITABLE", "World-writable file or directory", "medium", "rootfs", None,
          "Remove write permission for others (chmod o-w), or set the sticky bit on a "
          "shared directory (chmod +t)."),
    Check("CL-PRIVATE-KEY", "Private key in the image", "high", "rootfs", None,
          "Remove the key from the image and its layers; mount keys at run time."),
    Check("CL-CREDENTIAL-FILE", "Credential file in the image", "high", "rootfs", None,
          "Remove the file from the image and its layers; use build secrets "
          "(RUN --mount=type=secret) and run-time secrets instead."),
    Check("CL-EMPTY-PASSWORD", "Account with an empty password", "high", "rootfs", None,
          "Lock the account (passwd -l NAME) or give it a password hash; "
          "never leave the hash empty."),
    Check("CL-PKG-CACHE", "Package manager cache left in the image", "low", "rootfs", None,
          "Clean the cache in the same RUN step that fills it (apt-get clean && "
          "rm -rf /var/lib/apt/lists/*, dnf clean all, apk --no-cache, pip --no-cache-dir)."),
    Check("CL-SUDO", "sudo installed", "medium", "rootfs", "4.3",
          "Remove sudo; start the container as the user it needs instead."),
    Check("CL-SSH-SERVER", "SSH server installed", "medium", "rootfs", "5.7",
          "Remove the SSH server; use 'podman exec' or 'docker exec' to get into a container."),
)
CHECKS: dict[str, Check] = {check.id: check for check in CHECK_LIST}

# The allow-list of setuid/setgid files, with the bits each may have; other files with either
# bit are reported. Setuid or setgid: the account and mount tools of the shadow utilities,
# util-linux and PAM, as Debian, Ubuntu, Fedora/RHEL and SUSE install them. Setgid only: the
# programs Debian makes setgid to a group of their own (ssh-agent: _ssh, crontab: crontab,
# wall/write: tty, dotlockfile: mail). Both at the merged-/usr paths and at /bin, /sbin.
_SETID_BIN = ("chage", "chfn", "chsh", "expiry", "gpasswd", "mount", "newgrp", "passwd", "su",
              "umount")
_SETID_SBIN = ("unix_chkpwd", "pam_extrausers_chkpwd", "pam_timestamp_check")
_SETGID_BIN = ("ssh-agent", "crontab", "wall", "write", "bsd-write", "dotlockfile")
_SETID_BITS = stat.S_ISUID | stat.S_ISGID
SETID_ALLOWED: dict[str, int] = {
    **{f"{d}/{name}": _SETID_BITS for d in ("/usr/bin", "/bin") for name in _SETID_BIN},
    **{f"{d}/{name}": _SETID_BITS for d in ("/usr/sbin", "/sbin") for name in _SETID_SBIN},
    **{f"{d}/{name}": stat.S_ISGID for d in ("/usr/bin", "/bin") for name in _SETGID_BIN},
}


class CacheRule(NamedTuple):
    directory: str  # target-absolute
    suffix: str | None  # only files with this suffix count
    recursive: bool  # files below subdirectories count too
    what: str


CACHE_RULES = (
    CacheRule("/var/cache/apt/archives", ".deb", False, "downloaded .deb packages"),
    CacheRule("/var/lib/apt/lists", None, False, "apt package lists"),
    CacheRule("/var/cache/yum", None, True, "yum cache files"),
    CacheRule("/var/cache/dnf", None, True, "dnf cache files"),
    CacheRule("/var/cache/apk", ".apk", False, "downloaded .apk packages"),
    CacheRule("/root/.cache/pip", None, True, "pip cache files"),
)
# Files of a cache directory that are not cache content.
CACHE_IGNORED_NAMES = frozenset({"lock"})

SUDO_PACKAGES = frozenset({"sudo", "sudo-ldap"})
SUDO_FILES = ("/usr/bin/sudo", "/bin/sudo")
SSH_SERVER_PACKAGES = frozenset({"openssh-server", "dropbear", "dropbear-bin", "tinysshd"})
SSH_SERVER_FILES = ("/usr/sbin/sshd", "/sbin/sshd", "/usr/sbin/dropbear", "/usr/bin/dropbear")

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_DIR = "/var/lib/dpkg/status.d"
APK_INSTALLED = "/lib/apk/db/installed"
RPM_DATABASES = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
# Third word of dpkg's Status field when the package's files are (at least partly) there.
DPKG_PRESENT = frozenset({"installed", "half-configured", "unpacked", "half-installed",
                          "triggers-awaited", "triggers-pending"})

PRIVATE_KEY_RE = re.compile(rb"(?:^|[\r\n])-----BEGIN ([A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?)-----")
NETRC_PASSWORD_RE = re.compile(rb"(?:^|\s)password\s+\S")
URL_CREDENTIALS_RE = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:[^\s/@]+@")
AWS_SECRET_RE = re.compile(rb"(?im)^\s*aws_(?:secret_access_key|session_token)\s*=\s*\S")
DOCKER_AUTH_RE = re.compile(rb'"(?:auth|identitytoken)"\s*:\s*"[^"]')

# Environment variable names that say "secret": substrings of the upper-cased name (with "-"
# and "." as "_"), and whole "_"-separated words.
SECRET_NAME_PARTS = ("PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "APIKEY", "API_KEY",
                     "ACCESS_KEY", "PRIVATE_KEY", "AUTH_TOKEN", "ACCESS_TOKEN", "CREDENTIAL")
SECRET_NAME_WORDS = frozenset({"TOKEN", "PAT"})
# ..._FILE and friends name where a secret is, not the secret.
SECRET_NAME_REFERENCE_WORDS = frozenset({"FILE", "PATH", "DIR", "FILENAME", "LOCATION"})
SECRET_VALUE_PATTERNS = (
    ("an AWS access key ID", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a PEM private key", re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{22,})")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("a Stripe live key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{16,}")),
    ("a URL with a password", re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:[^\s/@]+@")),
)


# --- JSON (python3-minimal has no json module) ---------------------------------------------


class JsonError(ValueError):
    """Malformed JSON text."""


_JSON_WS = re.compile(r"[ \t\n\r]*")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_JSON_PLAIN = re.compile(r'[^"\\\x00-\x1f]+')
_JSON_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_JSON_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n",
                        "r": "\r", "t": "\t"}
_JSON_LITERALS = (("true", True), ("false", False), ("null", None))


class _JsonReader:
    """A strict RFC 8259 reader with a nesting limit; lone surrogates become U+FFFD."""

    def __init__(self, text: str, max_depth: int) -> None:
        self.text = text
        self.pos = 0
        self.max_depth = max_depth

    def fail(self, what: str) -> JsonError:
        return JsonError(f"{what} at offset {self.pos}")

    def skip_ws(self) -> None:
        match = _JSON_WS.match(self.text, self.pos)
        if match is not None:  # always: the pattern matches the empty string
            self.pos = match.end()

    def document(self) -> Any:
        value = self.value(0)
        self.skip_ws()
        if self.pos != len(self.text):
            raise self.fail("extra data")
        return value

    def value(self, depth: int) -> Any:
        self.skip_ws()
        char = self.text[self.pos:self.pos + 1]
        if char == "{":
            return self.object(depth + 1)
        if char == "[":
            return self.array(depth + 1)
        if char == '"':
            return self.string()
        for word, literal in _JSON_LITERALS:
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return literal
        match = _JSON_NUMBER.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a value")
        self.pos = match.end()
        if match.group(1) or match.group(2):
            return float(match.group())
        return int(match.group())

    def expect(self, char: str) -> None:
        self.skip_ws()
        if self.text[self.pos:self.pos + 1] != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def more(self, closing: str) -> bool:
        """After an item: True on ",", False on the closing bracket."""
        self.skip_ws()
        char = self.text[self.pos:self.pos + 1]
        self.pos += 1
        if char == ",":
            return True
        if char == closing:
            return False
        self.pos -= 1
        raise self.fail(f"expected ',' or {closing!r}")

    def object(self, depth: int) -> dict[str, Any]:
        if depth > self.max_depth:
            raise self.fail("nested too deeply")
        self.pos += 1
        result: dict[str, Any] = {}
        self.skip_ws()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return result
        while True:
            self.skip_ws()
            if not self.text.startswith('"', self.pos):
                raise self.fail("expected a string key")
            key = self.string()
            self.expect(":")
            result[key] = self.value(depth)
            if not self.more("}"):
                return result

    def array(self, depth: int) -> list[Any]:
        if depth > self.max_depth:
            raise self.fail("nested too deeply")
        self.pos += 1
        result: list[Any] = []
        self.skip_ws()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return result
        while True:
            result.append(self.value(depth))
            if not self.more("]"):
                return result

    def string(self) -> str:
        self.pos += 1  # the opening quote
        parts: list[str] = []
        while True:
            match = _JSON_PLAIN.match(self.text, self.pos)
            if match is not None:
                parts.append(match.group())
                self.pos = match.end()
            char = self.text[self.pos:self.pos + 1]
            if char == '"':
                self.pos += 1
                return "".join(parts)
            if char != "\\":
                raise self.fail("unterminated string" if not char else "control character")
            parts.append(self.escape())

    def hex4(self) -> int:
        match = _JSON_HEX4.match(self.text, self.pos)
        if match is None:
            raise self.fail("bad \\u escape")
        self.pos = match.end()
        return int(match.group(), 16)

    def escape(self) -> str:
        char = self.text[self.pos + 1:self.pos + 2]
        self.pos += 2
        if char in _JSON_SIMPLE_ESCAPES:
            return _JSON_SIMPLE_ESCAPES[char]
        if char != "u":
            self.pos -= 2
            raise self.fail("bad escape")
        code = self.hex4()
        if 0xD800 <= code < 0xDC00 and self.text.startswith("\\u", self.pos):
            saved = self.pos
            self.pos += 2
            low = self.hex4()
            if 0xDC00 <= low < 0xE000:
                return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
            self.pos = saved
        if 0xD800 <= code < 0xE000:
            return "\ufffd"
        return chr(code)


def json_loads(text: str, max_depth: int = JSON_MAX_DEPTH) -> Any:
    return _JsonReader(text, max_depth).document()


_JSON_ESCAPE_RE = re.compile(r'["\\\x00-\x1f\x7f\ud800-\udfff]')
_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                 "\b": "\\b", "\f": "\\f"}


def _json_escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _JSON_ESCAPES:
        return _JSON_ESCAPES[char]
    if 0xD800 <= ord(char) < 0xE000:
        # A lone surrogate (an undecodable file name byte): written as visible text, so
        # that the document stays valid UTF-8 for every reader.
        return f"\\\\u{ord(char):04x}"
    return f"\\u{ord(char):04x}"


def _json_string(text: str) -> str:
    return '"' + _JSON_ESCAPE_RE.sub(_json_escape_char, text) + '"'


def _json_write(value: Any, indent: str, level: int, out: list[str]) -> None:
    if value is None or isinstance(value, bool):
        out.append({None: "null", True: "true", False: "false"}[value])
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        finite = not (math.isnan(value) or math.isinf(value))
        out.append(repr(value) if finite else "null")
    elif isinstance(value, str):
        out.append(_json_string(value))
    elif isinstance(value, Mapping):
        _json_container([(_json_string(str(k)) + ": ", v) for k, v in value.items()],
                        "{}", indent, level, out)
    elif isinstance(value, Sequence):
        _json_container([("", v) for v in value], "[]", indent, level, out)
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _json_container(items: list[tuple[str, Any]], brackets: str, indent: str, level: int,
                    out: list[str]) -> None:
    if not items:
        out.append(brackets)
        return
    inner = "\n" + indent * (level + 1)
    out.append(brackets[0])
    for index, (prefix, item) in enumerate(items):
        out.append(("," if index else "") + inner + prefix)
        _json_write(item, indent, level + 1, out)
    out.append("\n" + indent * level + brackets[1])


def json_dumps(value: Any, indent: str = "  ") -> str:
    out: list[str] = []
    _json_write(value, indent, 0, out)
    return "".join(out)


# --- findings and ignore rules ----------------------------------------------------------------


def display_path(path: str) -> str:
    """A path as text that encodes to UTF-8 (undecodable bytes as \\xNN)."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


class Finding:
    __slots__ = ("check", "description", "details", "ignored_reason", "path", "subject")

    def __init__(self, check: Check, description: str, path: str | None, subject: str | None,
                 details: dict[str, Any]) -> None:
        self.check = check
        self.description = description
        self.path = path
        # What an ignore rule's glob is matched against.
        self.subject = subject if subject is not None else path
        self.details = details
        self.ignored_reason: str | None = None

    def sort_key(self) -> tuple[int, str, str]:
        return (CATEGORY_ORDER[self.check.category], self.check.id, self.subject or "")

    def to_json(self) -> dict[str, Any]:
        custom: dict[str, Any] = {
            "path": self.path,
            "cis": self.check.cis,
            "remediation": self.check.remediation,
            "category": self.check.category,
            **self.details,
            "ignored": self.ignored_reason is not None,
        }
        if self.ignored_reason is not None:
            custom["reason"] = self.ignored_reason
        return {
            "ID": self.check.id,
            "Title": self.check.title,
            "Severity": self.check.severity,
            "Description": self.description,
            "Custom": custom,
        }


class IgnoreRule(NamedTuple):
    id_pattern: str
    glob: str | None
    reason: str

    def matches(self, finding: Finding) -> bool:
        if not fnmatch.fnmatchcase(finding.check.id, self.id_pattern):
            return False
        if self.glob is None:
            return True
        return finding.subject is not None and fnmatch.fnmatchcase(finding.subject, self.glob)


def _unknown_id_note(pattern: str, where: str) -> list[str]:
    if any(fnmatch.fnmatchcase(check_id, pattern) for check_id in CHECKS):
        return []
    return [f"{where}: {pattern!r} matches no check ID (known: {', '.join(CHECKS)})"]


def parse_ignore_arg(value: str) -> tuple[list[IgnoreRule], list[str]]:
    rules: list[IgnoreRule] = []
    notes: list[str] = []
    for pattern in re.split(r"[:+,\s]+", value):
        if pattern:
            rules.append(IgnoreRule(pattern, None, "ignored by the ignore= scanner argument"))
            notes += _unknown_id_note(pattern, "ignore=")
    return rules, notes


# What a check ID pattern may hold: letters, digits, "-", "_" and fnmatch's own characters.
_ID_PATTERN_RE = re.compile(r"[A-Za-z0-9_*?!\[\]-]+")


def _known_id_pattern(pattern: str) -> bool:
    return _ID_PATTERN_RE.fullmatch(pattern) is not None and any(
        fnmatch.fnmatchcase(check_id, pattern) for check_id in CHECKS)


def parse_ignore_file(text: str, name: str) -> tuple[list[IgnoreRule], list[str]]:
    """Rules of an ignore file: "ID" or "ID PATH-GLOB" a line, "#" comments.

    A line that is not a rule for a known check is noted by its number alone: the file comes
    from the host, and a mistaken (or malicious) ignore_file=/etc/shadow must not put a word
    of it into the results. Only a rule's own reason comment is ever shown.
    """
    rules: list[IgnoreRule] = []
    unknown: list[int] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        comment = re.search(r"\s#", line)
        reason = ""
        if comment is not None:
            reason = line[comment.end():].strip()[:IGNORE_REASON_MAX_CHARS]
            line = line[:comment.start()].strip()
        parts = line.split(None, 1)
        if not _known_id_pattern(parts[0]):
            unknown.append(number)
            continue
        where = f"{name} line {number}"
        glob = parts[1] if len(parts) == 2 else None
        rules.append(IgnoreRule(parts[0], glob, f"{reason} ({where})" if reason else
                                f"ignored by {where}"))
    notes = [f"{name} line {number}: not a known check ID"
             for number in unknown[:IGNORE_FILE_MAX_NOTES]]
    if len(unknown) > IGNORE_FILE_MAX_NOTES:
        notes.append(f"{name}: {len(unknown) - IGNORE_FILE_MAX_NOTES} more lines are not "
                     "known check IDs")
    return rules, notes


class Results:
    """The findings of one target, with the ignore rules applied and a cap per check.

    Findings beyond the cap are not listed, but they are still counted (per severity, or as
    ignored) and named in `truncated`.
    """

    def __init__(self, rules: Sequence[IgnoreRule]) -> None:
        self.rules = rules
        self.findings: list[Finding] = []
        self.per_check: dict[str, int] = {}
        self.truncated: dict[str, int] = {}
        self.counts = dict.fromkeys(SEVERITIES, 0)
        self.ignored = 0

    def add(self, check_id: str, description: str, path: str | None = None,
            subject: str | None = None, **details: Any) -> None:
        shown = display_path(path) if path is not None else None
        finding = Finding(CHECKS[check_id], description, shown, subject, details)
        for rule in self.rules:
            if rule.matches(finding):
                finding.ignored_reason = rule.reason
                break
        if finding.ignored_reason is None:
            self.counts[finding.check.severity] += 1
        else:
            self.ignored += 1
        count = self.per_check.get(check_id, 0) + 1
        self.per_check[check_id] = count
        if count > MAX_FINDINGS_PER_CHECK:
            self.truncated[check_id] = self.truncated.get(check_id, 0) + 1
        else:
            self.findings.append(finding)

    def sorted(self) -> list[Finding]:
        return sorted(self.findings, key=Finding.sort_key)


# --- reading inside a target ------------------------------------------------------------------


def symlink_loop(path: str) -> OSError:
    """The error for a path whose links go round in circles, as the kernel's lookup gives."""
    return OSError(errno.ELOOP, "too many levels of symbolic links", "/" + path.lstrip("/"))


def resolve_in_root(root: str, path: str) -> str | None:
    """The host path of the target path `path`, every symlink resolved inside `root`.

    An absolute link target starts again at `root`, ".." stops at it: nothing outside the
    target is ever reached. None when a component is missing or is not a directory; OSError
    (ELOOP) after more than MAX_SYMLINKS links, and each caller decides what a loop means
    (here: a note, as for any other file that can't be read).
    """
    pending = [part for part in reversed(path.split("/")) if part not in ("", ".")]
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, part)
        try:
            info = os.lstat(here)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise symlink_loop(path)
            link = os.readlink(here)
            if link.startswith("/"):
                done = []
            pending.extend(part for part in reversed(link.split("/")) if part not in ("", "."))
            continue
        if pending and not stat.S_ISDIR(info.st_mode):
            return None
        done.append(part)
    return os.path.join(root, *done)


def open_regular(host_path: str) -> int:
    """A read-only descriptor of a regular file; never follows a final symlink, never blocks."""
    fd = os.open(host_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", host_path)
    return fd


def read_fd(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes from the start of fd."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_target_file(root: str, path: str, limit: int = SYSTEM_FILE_MAX_BYTES) -> bytes | None:
    """The contents of a regular file of the target (symlinks resolved inside it).

    None when there is no such regular file; OSError when it can't be read; ScanError when
    it is bigger than `limit`.
    """
    host = resolve_in_root(root, path)
    if host is None or not stat.S_ISREG(os.lstat(host).st_mode):
        return None  # a FIFO or device here is never opened
    try:
        fd = open_regular(host)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL, errno.ELOOP):
            return None
        raise
    try:
        if os.fstat(fd).st_size > limit:
            raise ScanError(f"{path} is too large (over {limit} bytes)")
        return read_fd(fd, limit)
    finally:
        os.close(fd)


def regular_file_in_root(root: str, path: str) -> str | None:
    """The target path `path` resolves to (inside `root`) when that is a regular file."""
    try:
        host = resolve_in_root(root, path)
    except OSError:
        return None
    if host is None:
        return None
    try:
        if not stat.S_ISREG(os.lstat(host).st_mode):
            return None
    except OSError:
        return None
    return "/" + os.path.relpath(host, root)


# --- the walk ---------------------------------------------------------------------------------


class WalkStats:
    """What the walk saw and skipped, summed up for Custom and the notes."""

    def __init__(self) -> None:
        self.files = 0
        self.directories = 0
        self.symlinks = 0
        self.devices = 0
        self.fifos = 0
        self.sockets = 0
        self.other = 0
        self.large_files = 0
        self.skipped_dirs: list[str] = []
        self.unreadable_files = 0
        self.unreadable_dirs = 0
        self.vanished = 0
        self.unreadable_file_examples: list[str] = []
        self.unreadable_dir_examples: list[str] = []

    def unreadable(self, path: str, is_dir: bool) -> None:
        examples = self.unreadable_dir_examples if is_dir else self.unreadable_file_examples
        if is_dir:
            self.unreadable_dirs += 1
        else:
            self.unreadable_files += 1
        if len(examples) < NOTE_EXAMPLES:
            examples.append(display_path(path))

    def to_json(self) -> dict[str, int]:
        return {
            "device_files": self.devices,
            "fifos": self.fifos,
            "sockets": self.sockets,
            "other_special_files": self.other,
            "symlinks_not_followed": self.symlinks,
            "unreadable_files": self.unreadable_files,
            "unreadable_directories": self.unreadable_dirs,
            "vanished": self.vanished,
            "large_files_not_searched": self.large_files,
        }

    def notes(self) -> list[str]:
        notes: list[str] = []
        if self.skipped_dirs:
            notes.append("did not descend into " + ", ".join(sorted(self.skipped_dirs)))
        special = [(self.devices, "device file"), (self.fifos, "FIFO"),
                   (self.sockets, "socket"), (self.other, "other special file")]
        parts = [f"{count} {what}{'s' if count != 1 else ''}" for count, what in special if count]
        if parts:
            notes.append("skipped " + ", ".join(parts) + " (never opened)")
        user = f"uid {os.geteuid()}"
        if self.unreadable_files:
            notes.append(f"could not read {self.unreadable_files} file(s) as {user}, e.g. "
                         + ", ".join(self.unreadable_file_examples))
        if self.unreadable_dirs:
            notes.append(f"could not list {self.unreadable_dirs} directorie(s) as {user}, "
                         "e.g. " + ", ".join(self.unreadable_dir_examples)
                         + ": nothing below them was checked")
        if self.vanished:
            notes.append(f"{self.vanished} entries vanished during the scan")
        return notes


class Entry(NamedTuple):
    path: str  # target-absolute
    host: str  # where it is for this process
    name: str
    info: os.stat_result


def walk(root: str, stats: WalkStats) -> Iterator[Entry]:
    """Every directory and regular file below root, depth first, symlinks never followed.

    An explicit stack holds the directories still to list (never a list of files), so memory
    grows with the number of pending directories, not of files. Special files are counted in
    `stats` and not yielded.
    """
    stack = [""]
    while stack:
        rel = stack.pop()
        host_dir = root + rel if rel else root
        try:
            iterator = os.scandir(host_dir)
        except OSError:
            stats.unreadable(rel or "/", is_dir=True)
            continue
        with iterator:
            while True:
                try:
                    dirent = next(iterator)
                except StopIteration:
                    break
                except OSError:
                    stats.unreadable(rel or "/", is_dir=True)
                    break
                path = f"{rel}/{dirent.name}"
                try:
                    info = dirent.stat(follow_symlinks=False)
                except OSError:
                    stats.vanished += 1
                    continue
                mode = info.st_mode
                if stat.S_ISDIR(mode):
                    if not rel and dirent.name in SKIPPED_TOP_DIRS:
                        stats.skipped_dirs.append(path)
                        continue
                    stats.directories += 1
                    stack.append(path)
                    yield Entry(path, dirent.path, dirent.name, info)
                elif stat.S_ISREG(mode):
                    stats.files += 1
                    yield Entry(path, dirent.path, dirent.name, info)
                else:
                    _count_special(mode, stats)


def _count_special(mode: int, stats: WalkStats) -> None:
    if stat.S_ISLNK(mode):
        stats.symlinks += 1
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        stats.devices += 1
    elif stat.S_ISFIFO(mode):
        stats.fifos += 1
    elif stat.S_ISSOCK(mode):
        stats.sockets += 1
    else:
        stats.other += 1


# --- rootfs checks ----------------------------------------------------------------------------


def credential_kind(path: str, name: str) -> str | None:
    """Which kind of credential file `path` would be, by its name."""
    if name in (".netrc", "_netrc"):
        return "netrc"
    if name == ".git-credentials":
        return "git-credentials"
    parents = path.split("/")[-3:-1]  # grandparent, parent
    if name == "credentials" and parents[-1:] == [".aws"]:
        return "aws"
    if name == "config.json" and parents[-1:] == [".docker"]:
        return "docker"
    # podman's: ~/.config/containers/, $XDG_RUNTIME_DIR/containers/, /run/containers/<uid>/
    if name == "auth.json" and "containers" in parents:
        return "containers-auth"
    return None


def _registry_auths(data: bytes) -> bool:
    """Does a docker config.json / containers auth.json hold a registry credential?"""
    try:
        document = json_loads(data.decode("utf-8"))
    except (JsonError, UnicodeDecodeError, RecursionError):
        return DOCKER_AUTH_RE.search(data) is not None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        return False
    for entry in auths.values():
        if isinstance(entry, dict) and any(
            isinstance(entry.get(key), str) and entry[key]
            for key in ("auth", "identitytoken", "password")
        ):
            return True
    return False


def _pattern_test(pattern: re.Pattern[bytes]) -> Callable[[bytes], bool]:
    def test(data: bytes) -> bool:
        return pattern.search(data) is not None

    return test


# What each kind of credential file holds when it is reported, and the test for it.
CREDENTIAL_TESTS: dict[str, tuple[str, Callable[[bytes], bool]]] = {
    "netrc": ("a .netrc with a password", _pattern_test(NETRC_PASSWORD_RE)),
    "git-credentials": ("stored git credentials (URLs with passwords)",
                        _pattern_test(URL_CREDENTIALS_RE)),
    "aws": ("an AWS secret access key", _pattern_test(AWS_SECRET_RE)),
    "docker": ("docker registry credentials (auths with auth)", _registry_auths),
    "containers-auth": ("container registry credentials (auths with auth)", _registry_auths),
}


def _mode_text(mode: int) -> str:
    return f"{stat.S_IMODE(mode):04o}"


class RootfsChecker:
    """Judges every entry the walk yields; caches and system files are judged at the end."""

    def __init__(self, root: str, results: Results, stats: WalkStats) -> None:
        self.root = root
        self.results = results
        self.stats = stats
        self.cache_files = {rule.directory: [0, 0] for rule in CACHE_RULES}  # files, bytes

    def entry(self, entry: Entry) -> None:
        mode = entry.info.st_mode
        if stat.S_ISDIR(mode):
            if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
                self.results.add(
                    "CL-WORLD-WRITABLE",
                    f"Directory {display_path(entry.path)} is writable by everyone "
                    f"(mode {_mode_text(mode)}) and has no sticky bit.",
                    entry.path, type="directory", mode=_mode_text(mode))
            return
        if mode & _SETID_BITS & ~SETID_ALLOWED.get(entry.path, 0):
            self._setid(entry)
        if mode & stat.S_IWOTH:
            self.results.add(
                "CL-WORLD-WRITABLE",
                f"File {display_path(entry.path)} is writable by everyone "
                f"(mode {_mode_text(mode)}).",
                entry.path, type="file", mode=_mode_text(mode))
        self._cache(entry)
        self._contents(entry)

    def _setid(self, entry: Entry) -> None:
        info = entry.info
        bits = []
        if info.st_mode & stat.S_ISUID:
            bits.append(f"setuid (owner uid {info.st_uid})")
        if info.st_mode & stat.S_ISGID:
            bits.append(f"setgid (group gid {info.st_gid})")
        self.results.add(
            "CL-SETUID",
            f"{display_path(entry.path)} is {' and '.join(bits)} and not in the allow-list of "
            "standard setuid/setgid programs.",
            entry.path, mode=_mode_text(info.st_mode), uid=info.st_uid, gid=info.st_gid)

    def _cache(self, entry: Entry) -> None:
        parent = entry.path[:-len(entry.name) - 1]
        for rule in CACHE_RULES:
            inside = parent == rule.directory or (
                rule.recursive and parent.startswith(rule.directory + "/"))
            if not inside or entry.name in CACHE_IGNORED_NAMES:
                continue
            if rule.suffix is None or entry.name.endswith(rule.suffix):
                counts = self.cache_files[rule.directory]
                counts[0] += 1
                counts[1] += entry.info.st_size

    def _contents(self, entry: Entry) -> None:
        """The private key search and the credential files: both need the file's bytes."""
        size = entry.info.st_size
        kind = credential_kind(entry.path, entry.name)
        if size == 0:
            return
        if size > KEY_SCAN_MAX_SIZE and kind is None:
            self.stats.large_files += 1
            return
        try:
            fd = open_regular(entry.host)
        except OSError:
            self.stats.unreadable(entry.path, is_dir=False)
            return
        try:
            data = read_fd(fd, CREDENTIAL_MAX_BYTES if kind else KEY_SCAN_BYTES)
        except OSError:
            self.stats.unreadable(entry.path, is_dir=False)
            return
        finally:
            os.close(fd)
        match = PRIVATE_KEY_RE.search(data[:KEY_SCAN_BYTES])
        if match is not None and size <= KEY_SCAN_MAX_SIZE:
            key_type = match.group(1).decode("ascii")
            self.results.add(
                "CL-PRIVATE-KEY",
                f"{display_path(entry.path)} holds a PEM private key ({key_type}).",
                entry.path, key_type=key_type)
        if kind is not None:
            what, test = CREDENTIAL_TESTS[kind]
            if test(data):
                self.results.add(
                    "CL-CREDENTIAL-FILE", f"{display_path(entry.path)} holds {what}.",
                    entry.path, kind=kind)

    def finish(self, notes: list[str], skipped: list[str]) -> None:
        for rule in CACHE_RULES:
            files, size = self.cache_files[rule.directory]
            if files:
                self.results.add(
                    "CL-PKG-CACHE",
                    f"{files} file(s) of {rule.what} ({size} bytes) left in {rule.directory}.",
                    rule.directory, files=files, bytes=size)
        self._accounts(notes, skipped)
        self._installed(notes)

    def _accounts(self, notes: list[str], skipped: list[str]) -> None:
        for path in ("/etc/passwd", "/etc/shadow"):
            try:
                data = read_target_file(self.root, path)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EPERM):
                    without = (", without CAP_DAC_READ_SEARCH"
                               if capability_effective(CAP_DAC_READ_SEARCH) is False else "")
                    notes.append(f"cannot read {path} as the scanner user (uid {os.geteuid()}"
                                 f"{without}): accounts with empty passwords were not looked "
                                 "for there")
                    if path == "/etc/shadow":
                        skipped.append("CL-EMPTY-PASSWORD")
                else:
                    notes.append(f"cannot read {path}: {exc.strerror or exc}")
                continue
            except ScanError as exc:
                notes.append(f"did not read {exc}")
                continue
            if data is None:
                continue
            for line in data.decode("utf-8", errors="replace").splitlines():
                fields = line.split(":")
                if len(fields) >= 2 and fields[0] and not fields[0].startswith(("#", "+", "-")) \
                        and fields[1] == "":
                    self.results.add(
                        "CL-EMPTY-PASSWORD",
                        f"Account {fields[0]!r} has an empty password field in {path}: "
                        "it can log in without a password.",
                        path, subject=path, account=fields[0])

    def _installed(self, notes: list[str]) -> None:
        packages = installed_packages(self.root, notes)
        for check_id, names, files, what in (
            ("CL-SUDO", SUDO_PACKAGES, SUDO_FILES, "sudo"),
            ("CL-SSH-SERVER", SSH_SERVER_PACKAGES, SSH_SERVER_FILES, "An SSH server"),
        ):
            found_files: list[str] = []
            for path in files:
                resolved = regular_file_in_root(self.root, path)
                if resolved is not None and resolved not in found_files:
                    found_files.append(resolved)
            found_packages = sorted(
                f"{name} ({source})" for name, source in packages if name in names)
            if not found_files and not found_packages:
                continue
            evidence = found_packages + found_files
            where = found_files[0] if found_files else packages_db_path(packages, names)
            self.results.add(
                check_id, f"{what} is installed: {', '.join(evidence)}.", where,
                packages=found_packages, files=found_files)


def packages_db_path(packages: list[tuple[str, str]], names: frozenset[str]) -> str | None:
    for name, source in packages:
        if name in names:
            return source
    return None


def _dpkg_stanza_present(fields: dict[str, str], need_status: bool) -> bool:
    status = fields.get("status", "").split()
    if not status:
        return not need_status
    return status[-1] in DPKG_PRESENT


def iter_dpkg(text: str, need_status: bool) -> Iterator[str]:
    """Names of the installed packages of dpkg status text (one stanza per package)."""
    fields: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if "package" in fields and _dpkg_stanza_present(fields, need_status):
                yield fields["package"]
            fields = {}
        elif not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()


def installed_packages(root: str, notes: list[str]) -> list[tuple[str, str]]:
    """(name, database path) of the dpkg and apk packages installed in the target."""
    found: list[tuple[str, str]] = []
    sources: list[tuple[str, bool]] = [(DPKG_STATUS, True)]
    try:
        status_dir = resolve_in_root(root, DPKG_STATUS_DIR)
        if status_dir is not None and stat.S_ISDIR(os.lstat(status_dir).st_mode):
            sources += [(f"{DPKG_STATUS_DIR}/{name}", False)
                        for name in sorted(os.listdir(status_dir)) if not name.startswith(".")]
    except OSError as exc:
        notes.append(f"cannot list {DPKG_STATUS_DIR}: {exc.strerror or exc}")
    for path, need_status in sources:
        text = _read_text(root, path, notes)
        if text is not None:
            found += [(name, path) for name in iter_dpkg(text, need_status)]
    text = _read_text(root, APK_INSTALLED, notes)
    if text is not None:
        found += [(line[2:].strip(), APK_INSTALLED) for line in text.splitlines()
                  if line.startswith("P:")]
    if any(exists_in_root(root, path) for path in RPM_DATABASES):
        notes.append("the rpm database is not read (python3-minimal has no sqlite3): sudo and "
                     "SSH servers of rpm packages are found by their files only")
    return found


def exists_in_root(root: str, path: str) -> bool:
    try:
        return resolve_in_root(root, path) is not None
    except OSError:
        return False


def _read_text(root: str, path: str, notes: list[str]) -> str | None:
    try:
        data = read_target_file(root, path)
    except OSError as exc:
        notes.append(f"cannot read {path}: {exc.strerror or exc}")
        return None
    except ScanError as exc:
        notes.append(f"did not read {exc}")
        return None
    return None if data is None else data.decode("utf-8", errors="replace")


# --- configuration checks ---------------------------------------------------------------------


def _strings(value: Any) -> list[str]:
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def user_uid(user: str, root: str, notes: list[str]) -> int | None:
    """The uid a USER value runs as ("" is root); None when a name can't be looked up."""
    name = user.split(":", 1)[0].strip()
    if not name:
        return 0
    if name.isdigit():
        return int(name)
    if name == "root":
        return 0
    try:
        data = read_target_file(root, "/etc/passwd")
    except (OSError, ScanError) as exc:
        data = None
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        notes.append(f"cannot read /etc/passwd to look user {name!r} up: {why}")
    for line in (data or b"").decode("utf-8", errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    notes.append(f"user {name!r} of the configuration is not in /etc/passwd: "
                 "could not tell whether it is root")
    return None


def secret_name(name: str) -> bool:
    upper = re.sub(r"[-.]", "_", name.upper())
    words = [word for word in upper.split("_") if word]
    if words and words[-1] in SECRET_NAME_REFERENCE_WORDS:
        return False
    return any(part in upper for part in SECRET_NAME_PARTS) or any(
        word in SECRET_NAME_WORDS for word in words)


def env_secret_reasons(name: str, value: str) -> list[str]:
    reasons: list[str] = []
    if value and not value.startswith("/run/secrets/") and secret_name(name):
        reasons.append("its name says it holds a secret")
    reasons += [f"its value looks like {what}" for what, pattern in SECRET_VALUE_PATTERNS
                if pattern.search(value)]
    return reasons


def image_reference_tag(name: str) -> str | None:
    """The tag of an image reference: "latest" when it has none, None for a digest."""
    if "@" in name:
        return None
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def check_config(config: Mapping[str, Any], target_type: str, root: str, results: Results,
                 notes: list[str]) -> None:
    raw_user = config.get("user")
    user = raw_user if isinstance(raw_user, str) else ""
    if user_uid(user, root, notes) == 0:
        shown = repr(user) if user else "no USER (root by default)"
        results.add("CL-USER-ROOT", f"The configuration runs its processes as root: {shown}.",
                    user=user)
    healthcheck = config.get("healthcheck")
    test = _strings(healthcheck.get("test")) if isinstance(healthcheck, Mapping) else []
    if not test or test[0] == "NONE":
        results.add("CL-NO-HEALTHCHECK", "The configuration has no HEALTHCHECK.")
    for item in _strings(config.get("env")):
        name, _, value = item.partition("=")
        reasons = env_secret_reasons(name, value)
        if reasons:
            # The name only: a secret's value is never written anywhere.
            results.add("CL-ENV-SECRET",
                        f"Environment variable {name} may hold a secret: {'; '.join(reasons)}.",
                        subject=name, variable=name, reasons=reasons)
    for port in _strings(config.get("exposed_ports")):
        number, _, protocol = port.partition("/")
        if number.strip() == "22" and protocol in ("", "tcp"):
            results.add("CL-SSH-PORT", f"Port {port} (SSH) is exposed.", subject=port, port=port)
    names = _strings(config.get("names"))
    if target_type == "container":
        names = names[-1:]  # a container's own names first, its image's reference last
    tags = [image_reference_tag(name) for name in names]
    if tags and all(tag == "latest" for tag in tags):
        results.add("CL-LATEST-ONLY",
                    f"The image is referenced only by the latest tag: {', '.join(names)}.",
                    names=names)


# --- one target -------------------------------------------------------------------------------


class Settings(NamedTuple):
    rules: tuple[IgnoreRule, ...]
    notes: tuple[str, ...]
    error: str | None  # an unusable argument fails every target


def load_settings(raw_args: str | None) -> Settings:
    if not raw_args:
        return Settings((), (), None)
    try:
        parsed = json_loads(raw_args)
    except JsonError:
        parsed = None
    if not isinstance(parsed, dict):
        return Settings((), ("ignored ATOMICSCAN_SCANNER_ARGS: not a JSON object",), None)
    rules: list[IgnoreRule] = []
    notes = [f"ignored unknown scanner argument {key!r}" for key in parsed
             if key not in ("ignore", "ignore_file")]
    if parsed.get("ignore"):
        more, more_notes = parse_ignore_arg(str(parsed["ignore"]))
        rules += more
        notes += more_notes
    ignore_file = parsed.get("ignore_file")
    if ignore_file:
        path = str(ignore_file)
        try:
            with open(path, "rb") as stream:
                data = stream.read(IGNORE_FILE_MAX_BYTES + 1)
        except OSError as exc:
            return Settings((), (), f"ignore_file {path}: {exc.strerror or exc}")
        if len(data) > IGNORE_FILE_MAX_BYTES:
            return Settings((), (), f"ignore_file {path} is over {IGNORE_FILE_MAX_BYTES} bytes")
        more, more_notes = parse_ignore_file(data.decode("utf-8", errors="replace"),
                                             os.path.basename(path))
        rules += more
        notes += more_notes
    return Settings(tuple(rules), tuple(notes), None)


def load_targets_meta(scan_meta: str) -> tuple[dict[str, dict[str, Any]], str | None]:
    """/scanmeta/targets.json by key, or a note why there is none."""
    path = os.path.join(scan_meta, "targets.json")
    try:
        with open(path, "rb") as stream:
            data = stream.read(TARGETS_JSON_MAX_BYTES + 1)
    except OSError as exc:
        return {}, f"no target configuration ({path}: {exc.strerror or exc})"
    if len(data) > TARGETS_JSON_MAX_BYTES:
        return {}, f"ignored {path}: over {TARGETS_JSON_MAX_BYTES} bytes"
    try:
        entries = json_loads(data.decode("utf-8", errors="replace"))
    except (JsonError, RecursionError) as exc:
        return {}, f"ignored {path}: {exc}"
    if not isinstance(entries, list):
        return {}, f"ignored {path}: not a JSON list"
    return {str(e["key"]): e for e in entries if isinstance(e, dict) and "key" in e}, None


def capability_effective(bit: int) -> bool | None:
    """Is capability `bit` in this process's effective set (None when /proc can't tell)?"""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as stream:
            for line in stream:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


CAP_DAC_READ_SEARCH = 2


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


def lint_target(root: str, meta: Mapping[str, Any] | None, meta_note: str | None,
                settings: Settings) -> dict[str, Any]:
    """Results and Custom of one target; raises on a failure of the whole scan."""
    results = Results(settings.rules)
    notes = list(settings.notes)
    skipped: list[str] = []
    config = meta.get("config") if meta is not None else None
    if isinstance(config, Mapping):
        check_config(config, str(meta.get("type", "")) if meta else "", root, results, notes)
    else:
        if meta_note is not None:
            notes.append(meta_note)
        elif meta is None:
            notes.append("this target is not in targets.json")
        else:
            notes.append(f"no image configuration for this {meta.get('type', 'target')} "
                         "(a --rootfs directory has none)")
        notes.append("configuration checks skipped")
        skipped += [check.id for check in CHECK_LIST if check.category == "config"]
    stats = WalkStats()
    checker = RootfsChecker(root, results, stats)
    for entry in walk(root, stats):
        checker.entry(entry)
    checker.finish(notes, skipped)
    notes += stats.notes()
    for check_id, count in sorted(results.truncated.items()):
        notes.append(f"{count} more {check_id} findings not listed "
                     f"(at most {MAX_FINDINGS_PER_CHECK} per check)")
    findings = results.sorted()
    custom: dict[str, Any] = {
        "counts": results.counts,
        "ignored": results.ignored,
        "files_scanned": stats.files,
        "directories_scanned": stats.directories,
        "skipped": stats.to_json(),
        "checks_skipped": skipped,
        "dac_read_search": capability_effective(CAP_DAC_READ_SEARCH),
        "notes": notes,
    }
    if results.truncated:
        custom["truncated"] = dict(sorted(results.truncated.items()))
    return {"Results": [finding.to_json() for finding in findings], "Custom": custom}


def scan_target(key: str, root: str, scan_type: str, meta: Mapping[str, Any] | None,
                meta_note: str | None, settings: Settings) -> dict[str, Any]:
    """The json document of one target; failures are reported in it, never raised."""
    started = utc_now()
    body: dict[str, Any] = {"Results": [], "Custom": {"notes": list(settings.notes)}}
    error: str | None = None
    try:
        if scan_type != SCAN_TYPE:
            raise ScanError(f"unsupported scan type {scan_type!r}, only {SCAN_TYPE!r}")
        if settings.error is not None:
            raise ScanError(settings.error)
        body = lint_target(root, meta, meta_note, settings)
    except ScanError as exc:
        error = one_line(str(exc))
    except (OSError, UnicodeError) as exc:
        error = one_line(f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        # One bad target must not cost the others their output; the traceback goes to stderr.
        traceback.print_exc()
        error = one_line(f"internal error: {type(exc).__name__}: {exc}")
    document: dict[str, Any] = {
        "Scanner": SCANNER_NAME,
        "Time": started,
        "Finished Time": utc_now(),
        "Successful": "false" if error else "true",
        "Scan Type": scan_type,
        "UUID": key,
        "Vulnerabilities": [],
        **body,
    }
    if error:
        document["Error"] = error
    return document


def write_document(out_dir: str, document: dict[str, Any]) -> None:
    os.makedirs(out_dir, exist_ok=True)
    final = os.path.join(out_dir, "json")
    partial = final + ".partial"
    with open(partial, "w", encoding="utf-8") as stream:
        stream.write(json_dumps(document))
        stream.write("\n")
    os.replace(partial, final)


def report(message: str) -> None:
    print(f"configlint scanner: {message}", file=sys.stderr)


def main() -> int:
    scan_in = os.environ.get("ATOMICSCAN_SCANIN", "/scanin")
    scan_out = os.environ.get("ATOMICSCAN_SCANOUT", "/scanout")
    scan_meta = os.environ.get("ATOMICSCAN_SCANMETA", "/scanmeta")
    scan_type = os.environ.get("ATOMICSCAN_SCAN_TYPE", SCAN_TYPE)
    settings = load_settings(os.environ.get("ATOMICSCAN_SCANNER_ARGS"))
    try:
        keys = sorted(
            entry.name
            for entry in os.scandir(scan_in)
            if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)
        )
    except OSError as exc:
        report(f"cannot list {scan_in}: {exc}")
        return ExitCode.NO_INPUT
    metas, meta_note = load_targets_meta(scan_meta)
    status = ExitCode.OK
    for key in keys:
        document = scan_target(key, os.path.join(scan_in, key), scan_type, metas.get(key),
                               meta_note, settings)
        try:
            write_document(os.path.join(scan_out, key), document)
        except OSError as exc:
            report(f"cannot write output for {key}: {exc}")
            status = ExitCode.OUTPUT_FAILED
    return status


if __name__ == "__main__":
    sys.exit(main())
