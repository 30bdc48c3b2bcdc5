"""A seccomp profile for scanners: the runtime's own default, minus every way to a new namespace
and ``open_by_handle_at``.

podman's default profile lets an unprivileged process call ``unshare``, ``setns`` and
``clone``/``clone3`` with namespace flags, so a scanner could become root of a user
namespace of its own (``unshare -Urm``) and mount there. docker's default refuses those
without ``CAP_SYS_ADMIN``, which a scanner never gets. This module derives, once per
process, podman's default with those calls refused, and hands the runtime a path to it.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atomicscan.errors import RuntimeUnavailableError

#: Where podman looks for its default profile, in its own order (the override first).
DEFAULT_PROFILES = (Path("/etc/containers/seccomp.json"),
                    Path("/usr/share/containers/seccomp.json"))
#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET: clone's namespace bits.
NAMESPACE_FLAGS = 0x7E020000
#: Refused outright: unshare and setns enter or make a namespace; open_by_handle_at opens any
#: inode of a filesystem the scanner can see a mount of (the host's / through /etc/hosts),
#: which podman allows whenever a scanner holds DAC_READ_SEARCH ("shocker").
REFUSED = ("unshare", "setns", "open_by_handle_at")
#: The calls whose rules this module writes itself; every rule of the default naming them goes.
REWRITTEN = frozenset({*REFUSED, "clone", "clone3"})
#: The architectures where clone takes its flags as the second argument, not the first.
FLAGS_SECOND = ["s390", "s390x"]


def restricted_profile(default: dict[str, Any]) -> dict[str, Any]:
    """``default`` (a profile in the containers/docker JSON format) with no new namespaces.

    ``clone`` stays allowed without namespace flags (fork, threads); ``clone3`` fails with
    ENOSYS, its flags are out of a filter's reach and libc then falls back to ``clone``;
    ``unshare`` and ``setns`` fail with EPERM.
    """
    profile = copy.deepcopy(default)
    rules = profile.get("syscalls")
    if not isinstance(rules, list):
        raise TypeError("the profile has no syscalls list")
    kept: list[dict[str, Any]] = []
    for rule in rules:
        names = rule.get("names") if isinstance(rule, dict) else None
        if not isinstance(names, list):
            raise TypeError("a syscalls rule has no names list")
        left = [name for name in names if name not in REWRITTEN]
        if left:
            kept.append({**rule, "names": left})
    kept += _namespace_rules()
    profile["syscalls"] = kept
    return profile


def _namespace_rules() -> list[dict[str, Any]]:
    def clone_without_namespaces(index: int) -> dict[str, Any]:
        return {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": index, "value": NAMESPACE_FLAGS, "valueTwo": 0,
                          "op": "SCMP_CMP_MASKED_EQ"}]}

    return [
        {**clone_without_namespaces(0), "excludes": {"arches": FLAGS_SECOND}},
        {**clone_without_namespaces(1), "includes": {"arches": FLAGS_SECOND}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        {"names": list(REFUSED), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
    ]


def load_default(candidates: Sequence[Path] = DEFAULT_PROFILES) -> dict[str, Any]:
    """The first default profile found, parsed; raises when there is none usable."""
    for path in candidates:
        if not path.is_file():
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeError, ValueError) as exc:
            raise RuntimeUnavailableError(
                f"cannot read the seccomp profile {path}: {exc}") from exc
        if not isinstance(document, dict):
            raise RuntimeUnavailableError(f"the seccomp profile {path} is not a JSON object")
        return document
    raise RuntimeUnavailableError(
        "no default seccomp profile to restrict for scanners (looked at "
        f"{', '.join(str(p) for p in candidates)}; install containers-common)")


class ProfileFile:
    """The restricted profile in an anonymous memory file, readable as a path by root.

    The path (``/proc/<pid>/fd/<n>``) lives exactly as long as this process: nothing is
    ever written to disk, so nothing is left behind, not even by a run killed with SIGKILL.
    podman and the docker CLI read the profile when the container is created.
    """

    def __init__(self, candidates: Sequence[Path] = DEFAULT_PROFILES) -> None:
        self.candidates = tuple(candidates)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def path(self) -> str:
        with self._lock:
            # A forked child has the descriptor, but /proc/<parent pid> is not its own.
            if self._fd is None or self._pid != os.getpid():
                self._fd = self._write()
                self._pid = os.getpid()
            return f"/proc/{self._pid}/fd/{self._fd}"

    def _write(self) -> int:
        try:
            profile = restricted_profile(load_default(self.candidates))
        except TypeError as exc:
            raise RuntimeUnavailableError(f"the default seccomp profile is unusable: {exc}"
                                          ) from exc
        data = json.dumps(profile).encode()
        fd = os.memfd_create("atomicscan-seccomp", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            # Sealed: the profile a container got is the one every later container gets.
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
        except BaseException:
            os.close(fd)
            raise
        return fd


#: One profile per process, shared by every scanner this process starts.
SCANNER_PROFILE = ProfileFile()
