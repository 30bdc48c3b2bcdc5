"""The scanner lock-down, given as podman/docker flags, translated into an OCI spec for ``ctr``.

``ctr run`` has no flag for a user, a pids limit or a sized tmpfs, so a scanner started with
``ctr`` gets a whole spec of ours (``ctr run --config``). The spec is derived from
``isolation_flags``, the one place the lock-down is decided: a flag this module does not
know is refused, so a new restriction can never be dropped on the way.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from atomicscan import MountError

#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET, one bit at a time.
NAMESPACE_BITS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                  0x40000000)
#: Refused outright. The scanner holds no capability and can't gain one, so most of these
#: fail anyway; unshare, setns and clone with namespace flags would make it root of a user
#: namespace of its own, the rest reach kernel surface a scanner never needs.
REFUSED_SYSCALLS = (
    "unshare", "setns", "open_by_handle_at", "name_to_handle_at", "mount", "umount2",
    "pivot_root", "fsopen", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "ptrace",
    "process_vm_readv", "process_vm_writev", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "acct", "swapon", "swapoff", "reboot", "syslog",
)
EPERM = 1
ENOSYS = 38
#: Flags whose value must be exactly this; anything else would loosen the lock-down.
FIXED_VALUES = {"--network": "none", "--cap-drop": "all", "--ipc": "private",
                "--security-opt": "no-new-privileges", "--log-driver": "none"}
CFS_PERIOD = 100_000


def seccomp_profile() -> dict[str, Any]:
    """Everything allowed but :data:`REFUSED_SYSCALLS`, new namespaces and ``clone3`` (whose
    flags a filter can't read: it gets ENOSYS, and the C library falls back to ``clone``)."""
    clone_rules = [
        {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
         "args": [{"index": 0, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}]}
        for bit in NAMESPACE_BITS
    ]
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                          "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": [
            {"names": list(REFUSED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            *clone_rules,
        ],
    }


def _capability(name: str) -> str:
    name = name.upper()
    return name if name.startswith("CAP_") else f"CAP_{name}"


def _ids(user: str) -> tuple[int, int]:
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or not (gid or uid).isdigit():
        raise MountError(f"ctr needs a numeric scanner user, not {user!r}")
    return int(uid), int(gid or uid)


def _tmpfs(value: str) -> dict[str, Any]:
    path, _, options = value.partition(":")
    return {"destination": path, "type": "tmpfs", "source": "tmpfs",
            "options": [o for o in options.split(",") if o]}


def _bind(value: str) -> dict[str, Any]:
    fields: dict[str, str] = {}
    flags: set[str] = set()
    for item in value.split(","):
        key, equals, text = item.partition("=")
        if equals:
            fields[key] = text
        else:
            flags.add(key)
    if fields.get("type") != "bind" or "bind-nonrecursive" not in flags \
            or not fields.get("source") or not fields.get("destination"):
        raise MountError(f"ctr: cannot translate the scanner mount {value!r}")
    return {"destination": fields["destination"], "type": "bind", "source": fields["source"],
            "options": ["bind", fields.get("bind-propagation", "rprivate"),
                        "ro" if "readonly" in flags else "rw", "nosuid", "nodev"]}


class _Spec:
    """A spec being built from one flag at a time."""

    def __init__(self, base: Mapping[str, Any]) -> None:
        self.spec: dict[str, Any] = copy.deepcopy(dict(base))
        self.process: dict[str, Any] = self.spec.setdefault("process", {})
        self.linux: dict[str, Any] = self.spec.setdefault("linux", {})
        self.resources: dict[str, Any] = self.linux.setdefault("resources", {})
        self.capabilities: list[str] = []
        self.env: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.mounts: list[dict[str, Any]] = []
        self.seen: set[str] = set()

    def apply(self, flag: str, value: str | None) -> None:  # noqa: PLR0912 - one table
        self.seen.add(flag)
        if flag in FIXED_VALUES:
            if value != FIXED_VALUES[flag]:
                raise MountError(f"ctr: cannot apply {flag} {value}")
        elif flag == "--read-only":
            self.spec["root"]["readonly"] = True
        elif flag == "--user":
            uid, gid = _ids(str(value))
            self.process["user"] = {"uid": uid, "gid": gid, "additionalGids": [gid]}
        elif flag == "--pids-limit":
            self.resources["pids"] = {"limit": int(str(value))}
        elif flag == "--memory":
            self.resources.setdefault("memory", {})["limit"] = int(str(value))
        elif flag == "--memory-swap":
            self.resources.setdefault("memory", {})["swap"] = int(str(value))
        elif flag == "--cpu-shares":
            self.resources.setdefault("cpu", {})["shares"] = int(str(value))
        elif flag == "--cpus":
            cpu = self.resources.setdefault("cpu", {})
            cpu["quota"], cpu["period"] = int(float(str(value)) * CFS_PERIOD), CFS_PERIOD
        elif flag == "--shm-size":
            self.mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",  # noqa: S108
                                "options": ["nosuid", "noexec", "nodev", "mode=1777",
                                            f"size={int(str(value))}"]})
        elif flag == "--tmpfs":
            self.mounts.append(_tmpfs(str(value)))
        elif flag == "--mount":
            self.mounts.append(_bind(str(value)))
        elif flag == "--cap-add":
            self.capabilities.append(_capability(str(value)))
        elif flag == "--env":
            key, _, text = str(value).partition("=")
            self.env[key] = text
        elif flag == "--label":
            key, _, text = str(value).partition("=")
            self.labels[key] = text
        else:
            raise MountError(f"ctr: cannot apply the scanner flag {flag}")


#: Flags that stand alone; every other one takes the next argument as its value.
_SWITCHES = frozenset({"--read-only"})
#: Flags that take a value, each translated by :meth:`_Spec.apply`.
_VALUED = frozenset({*FIXED_VALUES, "--user", "--pids-limit", "--memory", "--memory-swap",
                     "--cpu-shares", "--cpus", "--shm-size", "--tmpfs", "--mount", "--cap-add",
                     "--env", "--label"})
#: What the lock-down must always hold: a spec missing one of these is refused.
REQUIRED = frozenset({"--read-only", "--network", "--cap-drop", "--security-opt", "--user",
                      "--pids-limit", "--memory", "--memory-swap"})


def scanner_spec(flags: Sequence[str], base: Mapping[str, Any], *, rootfs: str,
                 process_args: Sequence[str], image_env: Sequence[str], workdir: str,
                 cgroup: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The OCI spec and the container labels for a scanner locked down by ``flags``."""
    build = _Spec(base)
    build.spec["root"] = {"path": rootfs, "readonly": False}
    args = list(flags)
    while args:
        flag = args.pop(0)
        if flag not in _SWITCHES and flag not in _VALUED:
            raise MountError(f"ctr: cannot apply the scanner flag {flag}")
        value = None if flag in _SWITCHES else (args.pop(0) if args else None)
        if flag not in _SWITCHES and value is None:
            raise MountError(f"ctr: the scanner flag {flag} has no value")
        build.apply(flag, value)
    missing = REQUIRED - build.seen
    if missing:
        raise MountError(f"ctr: the scanner lock-down lacks {', '.join(sorted(missing))}")
    spec = build.spec
    env = dict(item.partition("=")[::2] for item in image_env if "=" in item)
    env.update(build.env)
    caps = build.capabilities
    spec["process"].update({
        "terminal": False, "args": list(process_args), "cwd": workdir or "/",
        "env": [f"{key}={value}" for key, value in env.items()],
        "noNewPrivileges": True,
        "capabilities": {kind: list(caps) for kind in
                         ("bounding", "effective", "permitted", "inheritable", "ambient")},
    })
    ours = {mount["destination"] for mount in build.mounts}
    spec["mounts"] = [m for m in spec.get("mounts") or () if m.get("destination") not in ours]
    spec["mounts"] += build.mounts
    spec["hostname"] = "scanner"
    linux = spec["linux"]
    linux["cgroupsPath"] = cgroup
    linux["seccomp"] = seccomp_profile()
    kinds = {ns.get("type") for ns in linux.get("namespaces") or ()}
    # A network namespace of its own holds only loopback: no network at all.
    for kind in ("pid", "ipc", "uts", "mount", "network"):
        if kind not in kinds:
            linux.setdefault("namespaces", []).append({"type": kind})
    return spec, build.labels
