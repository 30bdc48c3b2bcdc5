"""Rootless runs (fast tier): telling a user from root, where a user's files go, what a user
may show a scanner, a rootless scanner's rlimits, and doctor's checks. The real runs are in
tests/integration/test_rootless.py."""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from atomicscan import cache, doctor, proc, resultsdir, rootless, state
from atomicscan.builtin.podman import podman_flags, rootless_limits
from atomicscan.cli import _join_rootless
from atomicscan.errors import CommandError, RuntimeUnavailableError
from atomicscan.history import dburl
from atomicscan.hostpaths import HostPathError, check_host_path
from atomicscan.runtime import ScannerContainer

USERNS_MAP = [(0, 1001, 1), (1, 100000, 65536)]


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This process as a user inside podman's namespace: uid 0 mapped to 1001, with a home
    and XDG directories in ``tmp_path``."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setattr(rootless, "id_map", lambda path="": list(USERNS_MAP))
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "ATOMICSCAN_STATE_DIR",
                 "ATOMICSCAN_RESULTS_DIR", "ATOMICSCAN_CACHE_DIR", "ATOMICSCAN_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return home


def test_the_id_map_tells_the_host_from_a_user_namespace(tmp_path: Path) -> None:
    initial = tmp_path / "initial"
    initial.write_text("         0          0 4294967295\n")
    inside = tmp_path / "inside"
    inside.write_text("         0       1001          1\n         1     100000      65536\n")
    assert rootless.id_map(str(initial)) == [(0, 0, 4294967295)]
    assert rootless.id_map(str(inside)) == USERNS_MAP
    assert rootless.id_map(str(tmp_path / "missing")) == [(0, 0, 4294967295)]


def test_uid_0_of_a_user_namespace_is_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless, "id_map", lambda path="": list(USERNS_MAP))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert rootless.in_user_namespace()
    assert not rootless.real_root()
    assert rootless.rootless()
    assert rootless.host_uid() == 1001
    assert not rootless.needs_join()  # already inside
    monkeypatch.setattr(os, "geteuid", lambda: 5)
    assert rootless.host_uid() == 100004


def test_a_user_outside_the_namespace_must_join(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless, "id_map", lambda path="": [(0, 0, 4294967295)])
    monkeypatch.setattr(os, "geteuid", lambda: 1001)
    assert rootless.needs_join() and rootless.rootless()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert rootless.real_root() and not rootless.needs_join()


def test_a_users_files_follow_the_xdg_base_directories(as_user: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert rootless.data_home() == as_user / ".local/share/atomicscan"
    assert rootless.cache_home() == as_user / ".cache/atomicscan"
    assert state.state_root() == tmp_path / "run" / "atomicscan"
    assert resultsdir.results_root(None) == as_user / ".local/share/atomicscan"
    assert cache.cache_dir(resultsdir.results_root(None)) == as_user / ".cache/atomicscan"
    assert dburl.resolve_url(None, {}) == \
        f"sqlite:///{as_user}/.local/share/atomicscan/history.db"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert rootless.data_home() == tmp_path / "data" / "atomicscan"
    assert rootless.cache_home() == as_user / ".cache/atomicscan"
    # What the user names still wins.
    assert resultsdir.results_root(tmp_path / "mine") == tmp_path / "mine"
    assert dburl.resolve_url(None, {"ATOMICSCAN_DB": "sqlite:///x.db"}) == "sqlite:///x.db"


def test_roots_places_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless, "real_root", lambda: True)
    for name in ("ATOMICSCAN_STATE_DIR", "ATOMICSCAN_RESULTS_DIR", "ATOMICSCAN_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert state.state_root() == Path("/run/atomicscan")
    assert resultsdir.results_root(None) == Path("/var/lib/atomicscan")
    assert cache.cache_dir(Path("/var/lib/atomicscan")) == Path("/var/lib/atomicscan/cache")


def test_without_a_runtime_directory_a_user_is_told_how_to_get_one(
    as_user: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(rootless, "host_uid", lambda: 2_000_000_000)  # no /run/user/UID
    with pytest.raises(rootless.RootlessError, match="enable-linger"):
        state.state_root()


def test_a_user_may_show_their_home_but_not_their_keys_or_other_homes(
    as_user: Path, tmp_path: Path
) -> None:
    (as_user / "src" / "rootfs").mkdir(parents=True)
    (as_user / ".ssh").mkdir()
    (as_user / ".local/share/containers/storage").mkdir(parents=True)
    assert check_host_path(as_user / "src" / "rootfs", what="--x") == as_user / "src/rootfs"
    for secret in (".ssh", ".local/share/containers/storage"):
        with pytest.raises(HostPathError, match="refused"):
            check_host_path(as_user / secret, what="--x")
    with pytest.raises(HostPathError, match="holds"):
        check_host_path(as_user, what="--x")  # it holds the keys


def test_podman_storage_and_settings_are_refused_where_xdg_puts_them(
    as_user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(as_user / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(as_user / "conf"))
    for place in ("data/containers/storage", "conf/containers"):
        (as_user / place).mkdir(parents=True)
        with pytest.raises(HostPathError, match="refused"):
            check_host_path(as_user / place, what="--x")
    if Path("/home").is_dir():
        with pytest.raises(HostPathError, match="/home"):
            check_host_path("/home", what="--x")


def _container(**changes: Any) -> ScannerContainer:
    fields: dict[str, Any] = {"name": "n", "image": "i", "args": (), "binds": (),
                              "timeout": 90.5, "memory_bytes": 512 * 1024 * 1024}
    fields.update(changes)
    return ScannerContainer(**fields)


def test_a_rootless_scanner_is_bounded_by_rlimits() -> None:
    assert rootless_limits(_container()) == [
        "--ulimit", "nproc=1024:1024", "--ulimit", "data=536870912:536870912",
        "--ulimit", "stack=8388608:8388608", "--ulimit", "nofile=1024:1024",
        "--ulimit", "cpu=91:91"]
    assert "cpu" not in " ".join(rootless_limits(_container(timeout=None)))


def test_rlimits_are_added_for_users_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless, "real_root", lambda: True)
    assert "--ulimit" not in podman_flags(_container())
    monkeypatch.setattr(rootless, "real_root", lambda: False)
    flags = podman_flags(_container())
    assert flags[flags.index("--ulimit") + 1] == "nproc=1024:1024"
    assert "--memory" in flags  # kept: applied wherever cgroups are delegated


def test_the_namespace_holder_yields_its_line_and_is_gone_after() -> None:
    with proc.first_line_while_running(["sh", "-c", 'echo "$$"; exec cat >/dev/null']) as line:
        assert line.isdigit()
        assert Path(f"/proc/{line}").exists()
    assert not Path(f"/proc/{line}/cmdline").exists() or \
        Path(f"/proc/{line}/stat").read_text().split()[2] == "Z"


def test_a_holder_that_prints_nothing_fails_with_its_stderr() -> None:
    with pytest.raises(CommandError, match="no namespace here"), \
            proc.first_line_while_running(["sh", "-c", "echo no namespace here >&2"]):
        pass
    with pytest.raises(CommandError, match="within 1s"), \
            proc.first_line_while_running(["sleep", "30"], timeout=1):
        pass


def test_joining_without_podman_is_one_clear_error(as_user: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(rootless.RootlessError, match="podman unshare failed"):
        rootless.join_podman_namespace(str(tmp_path / "no-podman"), env={})


def test_doctor_finds_a_users_subordinate_ranges(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "subuid").write_text("other:100000:65536\nme:200000:65536\n")
    (etc / "subgid").write_text("me:200000:1000\n")  # too few for podman's default map
    monkeypatch.setattr(rootless, "host_uid", lambda: 0)
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: SimpleNamespace(pw_name="me"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    checks = {check.name: check for check in doctor.user_namespace_checks(etc)}
    assert not checks["subordinate IDs"].ok
    assert checks["subordinate IDs"].detail == "no range of 65536 IDs for me in /etc/subgid"
    assert "usermod --add-subuids" in checks["subordinate IDs"].fix
    (etc / "subgid").write_text("me:200000:65536\n")
    checks = {check.name: check for check in doctor.user_namespace_checks(etc)}
    assert checks["subordinate IDs"].ok
    assert checks["runtime directory"].ok  # tmp_path is ours


class _Runtime:
    def __init__(self, name: str, *, can: bool, note: tuple[str, str] | None = None) -> None:
        self.name, self.rootless, self.note = name, can, note

    def check(self) -> None:
        raise RuntimeUnavailableError(f"{self.name}: its own reason")

    def user_storage_note(self) -> tuple[str, str] | None:
        return self.note


def _plugins(*runtimes: _Runtime) -> Any:
    by_name = {r.name: r for r in runtimes}
    return SimpleNamespace(scanners=[], runtimes=SimpleNamespace(
        names=lambda: sorted(by_name), get=by_name.__getitem__))


def test_doctor_as_a_user_skips_roots_runtimes_and_warns_about_storage(
    as_user: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "user_namespace_checks", lambda: [])
    monkeypatch.setattr(rootless, "needs_join", lambda: False)
    plugins = _plugins(_Runtime("rootful", can=False),
                       _Runtime("userful", can=True, note=("vfs copies", "use overlay")))
    checks = {check.name: check for check in doctor.run_checks(plugins)}
    assert checks["runtime rootful"].ok and "needs root" in checks["runtime rootful"].detail
    assert checks["userful storage"].warn and checks["userful storage"].fix == "use overlay"
    assert not checks["runtime userful"].ok  # its check() still decides


def test_a_named_runtime_that_cant_serve_a_user_refuses_in_its_own_words(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    joined: list[bool] = []
    monkeypatch.setattr(rootless, "needs_join", lambda: True)
    monkeypatch.setattr(rootless, "join_podman_namespace", lambda: joined.append(True))
    plugins = _plugins(_Runtime("rootful", can=False), _Runtime("userful", can=True))
    with pytest.raises(RuntimeUnavailableError, match="rootful: its own reason"):
        _join_rootless(plugins, "rootful", None)
    assert not joined
    _join_rootless(plugins, "userful", tmp_path / "results")
    _join_rootless(plugins, None, tmp_path / "results")
    assert joined == [True, True]
