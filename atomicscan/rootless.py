"""A user without root scans their own podman storage from inside podman's user namespace.

Rootless podman keeps one user namespace and one mount namespace per user, held open by its
pause process: ``podman image mount`` and ``podman mount`` work only in there, and the
mounts they make exist only in there. atomicscan's own host steps (the read-only binds, the
sized /scanout tmpfs, reading the results) need the same view, so a rootless run *joins*
those two namespaces before it does anything else (:func:`join_podman_namespace`): inside,
the user is uid 0 with capabilities over their own files and subordinate IDs only, the
kernel still refuses everything else, and every podman command the run starts sees the same
mounts. Why this and not ``podman run --mount type=image``: docs/rootless.md.

Where a rootless run keeps things follows the XDG base directories; root's runs keep theirs
under /var/lib/atomicscan and /run/atomicscan, as before.
"""

from __future__ import annotations

import ctypes
import os
import pwd
from pathlib import Path

from atomicscan import isolation, proc
from atomicscan.errors import AtomicscanError, CommandError

#: What /proc/self/uid_map holds outside any user namespace: every ID maps to itself.
_INITIAL_MAP = [(0, 0, 4294967295)]
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
#: Set by podman itself for every command started inside its user namespace (``podman
#: unshare`` does the same): a podman that sees them knows it is already in there.
PODMAN_NAMESPACE_ENV = ("_CONTAINERS_USERNS_CONFIGURED", "_CONTAINERS_ROOTLESS_UID",
                        "_CONTAINERS_ROOTLESS_GID")
#: What the helper prints: its PID, then it waits for its stdin to close.
_HOLDER_SCRIPT = 'echo "$$"; exec cat >/dev/null'


class RootlessError(AtomicscanError):
    """A rootless run can't start: podman's user namespace can't be joined."""


def id_map(path: str = "/proc/self/uid_map") -> list[tuple[int, int, int]]:
    """The ID map of this process's user namespace as (inside, outside, count) rows."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except OSError:
        return list(_INITIAL_MAP)
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            rows.append((int(fields[0]), int(fields[1]), int(fields[2])))
    return rows


def in_user_namespace() -> bool:
    """Whether this process runs in a user namespace other than the host's."""
    return id_map() != _INITIAL_MAP


def real_root() -> bool:
    """Root on the host: not a user, and not uid 0 of some user namespace."""
    return os.geteuid() == 0 and not in_user_namespace()


def rootless() -> bool:
    """Whether this run is a user's (outside or inside podman's user namespace)."""
    return not real_root()


def host_uid() -> int:
    """This user's uid on the host, also from inside the user namespace (where it is 0)."""
    for inside, outside, count in id_map():
        if inside <= os.geteuid() < inside + count:
            return outside + os.geteuid() - inside
    return os.geteuid()


def home() -> Path:
    """The user's home: $HOME, else the password database's entry for the host uid."""
    value = os.environ.get("HOME", "")
    if value.startswith("/"):
        return Path(value)
    try:
        return Path(pwd.getpwuid(host_uid()).pw_dir)
    except KeyError:
        return Path("/")


def _xdg(variable: str, default: str) -> Path:
    # The specification says relative values are invalid and must be ignored.
    value = os.environ.get(variable, "")
    return Path(value) if value.startswith("/") else home() / default


def data_home() -> Path:
    """Results and the history database of a user's runs: ``$XDG_DATA_HOME/atomicscan``."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "atomicscan"


def cache_home() -> Path:
    """The result cache of a user's runs: ``$XDG_CACHE_HOME/atomicscan``."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "atomicscan"


def config_home() -> Path:
    """The user's ``$XDG_CONFIG_HOME`` (``~/.config``): settings, tokens, podman's own."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def runtime_dir() -> Path | None:
    """``$XDG_RUNTIME_DIR``, else the /run/user/UID a login session makes, if there."""
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    if value.startswith("/"):
        return Path(value)
    fallback = Path("/run/user") / str(host_uid())
    return fallback if fallback.is_dir() else None


def state_home() -> Path:
    """Live run state (locks, journals, mounts) of a user's runs."""
    base = runtime_dir()
    if base is None:
        raise RootlessError("XDG_RUNTIME_DIR is not set and /run/user/"
                            f"{host_uid()} does not exist: log in with a session, or run "
                            "`sudo loginctl enable-linger $USER`, or export XDG_RUNTIME_DIR")
    return base / "atomicscan"


def cgroup_limits_apply() -> bool:
    """Whether rootless podman can bound a user's scanner as a whole: the host delegates the
    cgroup v2 memory and pids controllers to the user (systemd does on cgroups v2)."""
    uid = host_uid()
    delegated = Path(f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/"
                     "cgroup.controllers")
    try:
        controllers = set(delegated.read_text(encoding="ascii").split())
    except OSError:
        return False
    return {"memory", "pids"} <= controllers


def needs_join() -> bool:
    """Whether this process must join podman's namespaces before it can scan."""
    return os.geteuid() != 0 and not in_user_namespace()


def _namespace_fds(podman: str, env: dict[str, str]) -> tuple[int, int]:
    """Open descriptors of podman's user and mount namespaces, taken from a short-lived
    process that ``podman unshare`` starts in them (and starts the pause process if none
    runs yet)."""
    try:
        with proc.first_line_while_running(
                [podman, "unshare", "--", "sh", "-c", _HOLDER_SCRIPT], env=env) as line:
            if not line.isdigit():
                raise RootlessError("podman unshare did not start: rootless podman is not "
                                    "set up for this user (see `atomicscan doctor`)")
            user = os.open(f"/proc/{line}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            try:
                mnt = os.open(f"/proc/{line}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                os.close(user)
                raise
            return user, mnt
    except CommandError as exc:
        raise RootlessError(f"podman unshare failed: {exc}") from exc
    except OSError as exc:
        raise RootlessError(f"cannot open podman's namespaces: {exc.strerror}") from exc


def join_podman_namespace(podman: str = "podman", env: dict[str, str] | None = None) -> None:
    """Move this process into the user's rootless podman namespaces (user, then mount).

    Call it before any thread starts: the kernel lets only a single-threaded process change
    its user namespace. The working directory is kept; the environment gets what podman
    sets for the commands it starts in there, so the podman commands of the run know it.
    """
    state_home()  # podman needs the runtime directory too: say so before it fails obscurely
    if env is None:
        conf = isolation.host_containers_conf()
        env = {} if conf is None else {"CONTAINERS_CONF": str(conf)}
    uid, gid = os.getuid(), os.getgid()
    cwd = Path.cwd()
    user, mnt = _namespace_fds(podman, env)
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        for descriptor, kind in ((user, _CLONE_NEWUSER), (mnt, _CLONE_NEWNS)):
            if libc.setns(descriptor, kind) != 0:
                error = ctypes.get_errno()
                raise RootlessError(f"cannot join podman's user namespace: "
                                    f"{os.strerror(error)}")
    finally:
        os.close(user)
        os.close(mnt)
    # Joining a mount namespace moves the working directory to its root.
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir(home())
    os.environ.update(dict(zip(PODMAN_NAMESPACE_ENV, ("done", str(uid), str(gid)),
                               strict=True)))

