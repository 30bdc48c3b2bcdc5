"""Host paths handed to scanners are judged on their real path (fast tier)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atomicscan.errors import ExitCode, UsageError
from atomicscan.hostpaths import (
    REFUSED_PLACES,
    HostPathError,
    check_host_path,
    option_syntax_reason,
    refused_reason,
)


def test_the_list_names_the_places_the_brief_requires() -> None:
    listed = {place for place, _why in REFUSED_PLACES}
    required = {
        "/var/lib/containers", "/var/lib/docker", "/var/lib/containerd", "/var/lib/atomicscan",
        "/run/containers", "/run/atomicscan", "/run/docker.sock", "/run/docker", "/run/podman",
        "/run/containerd", "/run/crio", "/run/user", "/run/dbus", "/run/systemd",
        "/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers",
        "/etc/sudoers.d", "/etc/ssh", "/etc/ssl/private", "/root", "/home",
        "/etc/security/opasswd", "/proc", "/sys", "/dev", "/boot",
    }
    assert required <= listed
    for place, why in REFUSED_PLACES:
        assert os.path.normpath(place) == place and place.startswith("/") and why


@pytest.mark.parametrize(("real", "expected"), [
    ("/", "the whole host"),
    ("/etc/shadow", "is a refused place (password hashes)"),
    ("/etc", "holds /etc/shadow"),
    ("/var", "holds /var/lib/containers"),
    ("/var/lib", "holds /var/lib/containers"),
    ("/run", "is a refused place"),
    ("/run/containerd/containerd.sock", "inside /run/containerd"),
    ("/var/lib/docker/overlay2/abc/diff", "inside /var/lib/docker"),
    ("/var/lib/containers/storage/overlay", "inside /var/lib/containers"),
    ("/home/alice/.ssh", "inside /home"),
    ("/proc/1/root", "inside /proc"),
    ("/dev/shm", "inside /dev"),
    ("/etc/ssl", "holds /etc/ssl/private"),
    ("/etc/security", "holds /etc/security/opasswd"),
])
def test_refused_places_their_insides_and_everything_above(real: str, expected: str) -> None:
    reason = refused_reason(Path(real))
    assert reason is not None and expected in reason


@pytest.mark.parametrize("real", [
    "/usr", "/usr/share/doc", "/srv/feeds", "/etc/passwd", "/opt",
    # Compared by path parts: a shared string prefix is not containment.
    "/homework", "/etc/shadow.d", "/etc/sshd-feeds", "/rooted", "/devices", "/var/lib/dockerish",
    "/var/libx",
])
def test_other_paths_are_allowed(real: str) -> None:
    assert refused_reason(Path(real)) is None


@pytest.mark.parametrize("given", [
    "/.", "/usr/..", "//", "///usr/..", "/etc/../etc/shadow", "//etc/shadow",
    "/run/../run/.", "//run", "/var/run", "/proc/self/..", "/proc/self/root", "/dev/./shm",
])
def test_spellings_of_refused_places_are_resolved_first(given: str) -> None:
    with pytest.raises(HostPathError) as caught:
        check_host_path(given, what="-v source")
    message = str(caught.value)
    assert message.startswith(f"-v source {given}: refused: ")
    assert "\n" not in message


def test_symlinks_are_followed(tmp_path: Path) -> None:
    (tmp_path / "to-root").symlink_to("/")
    (tmp_path / "to-shadow").symlink_to("/etc/shadow")
    (tmp_path / "to-run").symlink_to("/var/run")
    for name in ("to-root", "to-shadow", "to-run"):
        with pytest.raises(HostPathError, match="refused"):
            check_host_path(tmp_path / name, what="source")


def test_an_allowed_path_comes_back_as_its_real_path(tmp_path: Path) -> None:
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    (tmp_path / "link").symlink_to(feeds)
    assert check_host_path(tmp_path / "link", what="source") == feeds.resolve()
    assert check_host_path(f"{feeds}/./", what="source") == feeds.resolve()


def test_missing_and_unresolvable_paths_are_one_line_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(HostPathError) as caught:
        check_host_path(tmp_path / "missing", what="-v source")
    assert str(caught.value) == f"-v source {tmp_path / 'missing'}: no such file or directory"
    assert isinstance(caught.value, UsageError)
    assert caught.value.exit_code == ExitCode.USAGE
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(HostPathError, match="cannot resolve"):
        check_host_path(tmp_path / "loop", what="source")
    with pytest.raises(HostPathError) as caught:
        check_host_path("/tmp/a\nb\x1b[2J\x00", what="source")
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


def test_what_ending_in_equals_is_joined_to_the_path() -> None:
    with pytest.raises(HostPathError) as caught:
        check_host_path("/etc/shadow", what="--scanner-args ignore_file=")
    assert str(caught.value).startswith("--scanner-args ignore_file=/etc/shadow: refused")


@pytest.mark.parametrize("text", [
    "/x,U=true", "/x=1", "/a:b", "/a\nb", "/a\x00b", "/a\x1bb", '/a"b', "/a'b", "/a\x85b",
])
def test_option_syntax_is_found(text: str) -> None:
    reason = option_syntax_reason(text)
    assert reason is not None and "mount options" in reason
    assert "\n" not in reason and "\x00" not in reason


@pytest.mark.parametrize("text", ["/srv/feeds", "/srv/my feeds", "/srv/été", "/x-1_2.3"])
def test_plain_paths_have_no_option_syntax(text: str) -> None:
    assert option_syntax_reason(text) is None
