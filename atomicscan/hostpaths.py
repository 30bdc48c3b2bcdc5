"""Host paths a scanner may be shown: judged on their real path, never on the text typed."""

from __future__ import annotations

import os
import re
from pathlib import Path

from atomicscan import rootless
from atomicscan.errors import UsageError
from atomicscan.safetext import printable


class HostPathError(UsageError):
    """A host path that does not exist, or that no scanner may see, even read-only."""


#: Host places no scanner may see, nor anything above them (``/etc`` holds ``/etc/shadow``).
#: Judged on real paths, so ``/var/run/docker.sock`` is caught as ``/run/docker.sock``.
REFUSED_PLACES: tuple[tuple[str, str], ...] = (
    # Container runtimes' storage and state: image layers, other containers, our own runs.
    ("/var/lib/containers", "podman's image and container storage"),
    ("/var/lib/docker", "docker's image and container storage"),
    ("/var/lib/containerd", "containerd's image and container storage"),
    ("/var/lib/kubelet", "the kubelet's pod volumes and secrets"),
    ("/var/lib/etcd", "etcd's data"),
    ("/var/lib/atomicscan", "atomicscan's results"),
    ("/run/containers", "podman's runtime state and registry credentials"),
    ("/run/atomicscan", "atomicscan's run state and mounts"),
    # Sockets and runtime directories that hand over the host to whoever can connect.
    ("/run/docker.sock", "docker's socket"),
    ("/run/docker", "docker's runtime state"),
    ("/run/podman", "podman's socket"),
    ("/run/containerd", "containerd's socket and state"),
    ("/run/crio", "CRI-O's socket"),
    ("/run/user", "users' session sockets"),
    ("/run/dbus", "the system bus socket"),
    ("/run/systemd", "systemd's sockets"),
    ("/run", "runtime state and sockets of the host's services"),
    # Secrets: password hashes, sudo rules, host and user keys, credentials.
    ("/etc/shadow", "password hashes"),
    ("/etc/shadow-", "password hashes"),
    ("/etc/gshadow", "group password hashes"),
    ("/etc/gshadow-", "group password hashes"),
    ("/etc/security/opasswd", "old password hashes"),
    ("/etc/sudoers", "sudo rules"),
    ("/etc/sudoers.d", "sudo rules"),
    ("/etc/ssh", "the host's SSH keys"),
    ("/etc/ssl/private", "TLS private keys"),
    ("/etc/pki/tls/private", "TLS private keys"),
    ("/etc/krb5.keytab", "Kerberos keys"),
    ("/etc/docker", "docker's daemon configuration and keys"),
    ("/etc/kubernetes", "Kubernetes credentials"),
    ("/etc/containers/auth.json", "registry credentials"),
    ("/etc/NetworkManager/system-connections", "network passwords and keys"),
    ("/etc/wireguard", "VPN keys"),
    ("/etc/letsencrypt", "TLS private keys"),
    ("/var/backups", "backups of the password files"),
    ("/root", "root's home"),
    ("/home", "users' homes"),
    # Kernel and device trees: live host state, not files to scan.
    ("/proc", "the host's processes"),
    ("/sys", "the host's kernel and devices"),
    ("/dev", "the host's devices"),
    ("/boot", "the host's kernels and boot loader"),
)

#: In a user's own home, which a rootless run may show (it holds what the user builds), the
#: places no scanner may see: keys, credentials, the user's container storage and results.
USER_REFUSED_PLACES: tuple[tuple[str, str], ...] = (
    (".ssh", "your SSH keys"),
    (".gnupg", "your GnuPG keys"),
    (".password-store", "your passwords"),
    (".netrc", "your network passwords"),
    (".docker", "your registry credentials"),
    (".kube", "your Kubernetes credentials"),
    (".aws", "your cloud credentials"),
    (".config", "your applications' settings and tokens"),
    (".local/share/containers", "your podman storage"),
    (".local/share/atomicscan", "your atomicscan results"),
    (".cache/atomicscan", "your atomicscan cache"),
)

# Characters that end or extend an option in `--mount a=b,c=d` or `-v a:b:c`, quotes that
# start a CSV field, and every control character (newline, NUL, escape sequences).
_OPTION_SYNTAX = re.compile("[,=:\"'\x00-\x1f\x7f-\x9f]")


def option_syntax_reason(text: str) -> str | None:
    """Why ``text`` could add options when put in a runtime's mount flag, or None."""
    found = _OPTION_SYNTAX.search(text)
    if found is None:
        return None
    return f"it holds {printable(repr(found.group()))}, which could add mount options"


def _user_places() -> list[tuple[str, str]]:
    """A rootless run's own refused places, below its home and where XDG puts its files."""
    if not rootless.rootless():
        return []
    home = rootless.home()
    places = [(str(home / relative), why) for relative, why in USER_REFUSED_PLACES]
    # Where XDG moves them when the user's variables say so.
    places += [(str(rootless.data_home()), "your atomicscan results"),
               (str(rootless.data_home().parent / "containers"), "your podman storage"),
               (str(rootless.config_home()), "your applications' settings and tokens"),
               (str(rootless.cache_home()), "your atomicscan cache")]
    return places


def _own_home() -> tuple[str, ...] | None:
    """A rootless run's home as path parts: refused places above it don't refuse it."""
    if not rootless.rootless():
        return None
    return Path(os.path.realpath(rootless.home())).parts


def _places() -> list[tuple[tuple[str, ...], str, str]]:
    """Each refused place as path parts, by its listed path and by its real path."""
    places: list[tuple[tuple[str, ...], str, str]] = []
    for listed, why in (*REFUSED_PLACES, *_user_places()):
        for form in dict.fromkeys((listed, os.path.realpath(listed))):
            places.append((Path(form).parts, listed, why))
    return places


def refused_reason(real: Path) -> str | None:
    """Why the already-resolved path ``real`` is refused, or None if a scanner may see it."""
    parts = real.parts
    if len(parts) <= 1:
        return f"{real} is the whole host"
    places = _places()
    home = _own_home()
    for place, listed, why in places:
        if home and len(place) < len(home) == len(parts[:len(home)]) \
                and parts[:len(home)] == home and home[:len(place)] == place:
            continue  # /home refuses other users' homes, not the rootless user's own
        if parts[:len(place)] == place:
            where = "a refused place" if parts == place else f"inside {listed}"
            return f"{real} is {where} ({why})"
    for place, listed, why in places:
        if place[:len(parts)] == parts:
            return f"{real} holds {listed} ({why})"
    return None


def check_host_path(path: str | os.PathLike[str], *, what: str) -> Path:
    """The real path of ``path`` (symlinks and ``..`` resolved) if a scanner may see it.

    A missing path, ``/`` and any path equal to, inside or above a refused place raise
    :class:`HostPathError` with a one-line message that starts with ``what``.
    """
    shown = printable(os.fspath(path))
    label = f"{what}{shown}" if what.endswith("=") else f"{what} {shown}"
    try:
        real = Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:
        raise HostPathError(f"{label}: no such file or directory") from None
    except (OSError, RuntimeError, ValueError) as exc:
        # A symlink loop, a denied directory, a NUL in the path.
        detail = getattr(exc, "strerror", None) or str(exc)
        raise HostPathError(f"{label}: cannot resolve: {printable(detail)}") from None
    reason = refused_reason(real)
    if reason is not None:
        raise HostPathError(f"{label}: refused: {printable(reason)}")
    if rootless.rootless() and not os.access(real, os.R_OK):
        raise HostPathError(f"{label}: refused: you (uid {rootless.host_uid()}) cannot read "
                            "it, so no scanner of yours may")
    return real
