"""The scanner container's lock-down as runtime flags, and the one place its limits are set.

podman (4.3) and docker (20.10) accept every flag here in the same spelling; what only one
of them needs stays in its own plugin.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from atomicscan.errors import MountError

if TYPE_CHECKING:
    from atomicscan.proc import Completed
    from atomicscan.runtime import Bind, ScannerContainer

MiB = 1024 * 1024
GiB = 1024 * MiB

#: Memory a scanner may use, page cache and its tmpfs files included; swap is not allowed.
#: Enough for oscap's largest profiles on a full distribution image.
DEFAULT_MEMORY_BYTES = 2 * GiB
#: Size of each of the scanner's scratch tmpfs, /tmp and /var/tmp.
DEFAULT_TMPFS_BYTES = 256 * MiB
#: Size of the scanner's /run: a few pid and lock files at most.
RUN_TMPFS_BYTES = 16 * MiB
#: Size of /dev/shm (the runtimes' own default, written down so it can't change under us).
SHM_BYTES = 64 * MiB
#: Processes and threads in one scanner container: stops a fork bomb.
PIDS_LIMIT = 1024
#: CPU weight under contention, half of a host process's: the host stays responsive.
CPU_SHARES = 512
#: Writable scratch directories in the read-only scanner, each its own size-limited tmpfs.
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/run")  # noqa: S108 - paths inside the container
#: Characters that would let a path end a --mount field or start a new one (docker's CLI
#: reads the value as CSV, podman splits it on commas then on "=").
MOUNT_SEPARATORS = frozenset(',="')
#: containers.conf written by the setup script only on hosts where the engines' defaults
#: (cgroups, rlimits) can't start the locked-down container; shipped in atomicscan/data/.
HOST_CONTAINERS_CONF = Path("/etc/atomicscan/containers.conf")


def shipped_containers_conf() -> Path:
    """The containers.conf atomicscan ships for hosts like the test bed (see TESTBED.md)."""
    return Path(str(resources.files("atomicscan") / "data" / "containers.conf"))


def host_containers_conf() -> Path | None:
    """:data:`HOST_CONTAINERS_CONF` when it applies: it exists and the user chose no other."""
    if "CONTAINERS_CONF" in os.environ or not HOST_CONTAINERS_CONF.is_file():
        return None
    return HOST_CONTAINERS_CONF


def size_text(size: int) -> str:
    """``size`` in whole GiB or MiB when it is one, else in bytes, for messages."""
    for unit, name in ((GiB, "GiB"), (MiB, "MiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


def _refuse_unsafe(kind: str, value: str) -> None:
    if not value.startswith("/"):
        raise MountError(f"bind {kind} must be an absolute path: {value!r}")
    bad = sorted({c for c in value if c in MOUNT_SEPARATORS or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise MountError(f"bind {kind} {value!r} holds characters a runtime would read as "
                         f"mount options: {''.join(bad)!r}")
    if ".." in value.split("/"):
        raise MountError(f"bind {kind} {value!r} holds a '..' component")


def mount_spec(bind: Bind) -> str:
    """The ``--mount`` value for ``bind``; raises :class:`MountError` if a part could add options.

    The bind is non-recursive (a mount below the source is not shown, so it can't be a
    writable hole under a read-only bind) and private (host mounts made later stay out).
    """
    source, destination = str(bind.source), bind.destination
    _refuse_unsafe("source", source)
    _refuse_unsafe("destination", destination)
    fields = [f"type=bind,source={source},destination={destination}",
              "bind-propagation=rprivate", "bind-nonrecursive"]
    if bind.read_only:
        fields.append("readonly")
    return ",".join(fields)


def tmpfs_spec(path: str, size: int) -> str:
    """A ``--tmpfs`` value: sized, world-writable with the sticky bit, no exec, no devices."""
    mode = "755" if path == "/run" else "1777"
    return f"{path}:rw,noexec,nosuid,nodev,size={size},mode={mode}"


def isolation_flags(container: ScannerContainer) -> list[str]:
    """The scanner contract's lock-down and resource limits, shared by podman and docker."""
    memory = str(container.memory_bytes)
    flags = [
        "--read-only",
        "--network", "none",
        "--cap-drop", "all",
        "--security-opt", "no-new-privileges",
        "--user", container.user,
        "--pids-limit", str(PIDS_LIMIT),
        "--ipc", "private",
        # Swap equal to memory: no swap at all, so the limit is reached fast, not thrashed.
        "--memory", memory, "--memory-swap", memory,
        # A weight, not a cap: under contention the host's processes come first, and an
        # idle host lends the scanner its cores. A CFS cap (--cpus) throttles the runtime's
        # own multi-threaded start-up inside the container's cgroup: ~10% per container.
        "--cpu-shares", str(CPU_SHARES),
        "--shm-size", str(SHM_BYTES),
        # The output reaches us through the attached streams (only its tail is kept); a log
        # file would let a flooding scanner fill the runtime's disk.
        "--log-driver", "none",
    ]
    if container.cpus is not None:
        flags += ["--cpus", f"{container.cpus:g}"]
    for path in SCRATCH_DIRS:
        size = RUN_TMPFS_BYTES if path == "/run" else container.tmpfs_bytes
        flags += ["--tmpfs", tmpfs_spec(path, size)]
    for capability in container.capabilities:
        flags += ["--cap-add", capability]
    for bind in container.binds:
        flags += ["--mount", mount_spec(bind)]
    for key, value in sorted(container.env.items()):
        flags += ["--env", f"{key}={value}"]
    for key, value in sorted(container.labels.items()):
        flags += ["--label", f"{key}={value}"]
    return flags


def explain_exit(completed: Completed, container: ScannerContainer) -> Completed:
    """``completed`` with a last stderr line saying why a scanner was killed, when it was.

    The container is gone (``--rm``), so an out-of-memory kill can't be told from another
    SIGKILL; the memory limit is by far the likeliest sender.
    """
    if completed.timed_out or completed.returncode != 128 + signal.SIGKILL:
        return completed
    hint = (f"the scanner was killed (SIGKILL), most likely for going over its memory "
            f"limit of {size_text(container.memory_bytes)}")
    return dataclasses.replace(completed, stderr=f"{completed.stderr.rstrip()}\n{hint}\n")
