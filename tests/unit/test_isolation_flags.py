"""The scanner container's flags, bind specs, limits and seccomp profile (fast tier)."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from atomicscan import isolation, proc, seccomp
from atomicscan.builtin.docker import DockerRuntime
from atomicscan.builtin.podman import PodmanRuntime, podman_flags
from atomicscan.errors import MountError, RuntimeUnavailableError
from atomicscan.runtime import Bind, ScannerContainer

HOST_PROFILE = Path("/usr/share/containers/seccomp.json")


def container(*binds: Bind, **fields: Any) -> ScannerContainer:
    return ScannerContainer(name="atomicscan-test", image="localhost/scanner:1", args=("run",),
                            binds=binds, **fields)


def values_of(flags: Sequence[str], option: str) -> list[str]:
    return [flags[i + 1] for i, flag in enumerate(flags) if flag == option]


# -- binds ---------------------------------------------------------------------------------


def test_a_bind_is_non_recursive_private_and_read_only_by_default() -> None:
    spec = isolation.mount_spec(Bind(Path("/var/lib/atomicscan/x"), "/scanin/abc"))
    assert spec.split(",") == [
        "type=bind", "source=/var/lib/atomicscan/x", "destination=/scanin/abc",
        "bind-propagation=rprivate", "bind-nonrecursive", "readonly"]


def test_a_writable_bind_has_no_readonly_option() -> None:
    spec = isolation.mount_spec(Bind(Path("/run/out"), "/scanout", read_only=False))
    assert "readonly" not in spec.split(",")
    assert "bind-nonrecursive" in spec.split(",")


@pytest.mark.parametrize("source", [
    "/some/dir,U=true", "/some/dir,chown=true", "/a=b", '/a"b', "/a\nb", "/a\tb", "/a\x7fb",
    "/a\x1b[2Jb", "relative/dir", ".", "/a/../etc"])
def test_a_source_that_could_add_options_is_refused(source: str) -> None:
    with pytest.raises(MountError, match="bind source"):
        isolation.mount_spec(Bind(Path(source), "/x"))


@pytest.mark.parametrize("destination", [
    "/x,U=true", "/x:ro,U=true", "/x=y", '/x"', "/x\n", "/x\r", "x", "", "/scanin/../etc"])
def test_a_destination_that_could_add_options_is_refused(destination: str) -> None:
    with pytest.raises(MountError, match="bind destination") as caught:
        isolation.mount_spec(Bind(Path("/some/dir"), destination))
    assert "\n" not in str(caught.value).replace("\\n", "")


def test_every_mount_flag_has_exactly_the_fields_atomicscan_wrote() -> None:
    binds = (Bind(Path("/a b/c"), "/scanin/k"), Bind(Path("/o"), "/scanout", read_only=False))
    specs = values_of(isolation.isolation_flags(container(*binds)), "--mount")
    keys = [[field.partition("=")[0] for field in spec.split(",")] for spec in specs]
    assert keys == [
        ["type", "source", "destination", "bind-propagation", "bind-nonrecursive", "readonly"],
        ["type", "source", "destination", "bind-propagation", "bind-nonrecursive"]]


def test_one_bad_bind_refuses_the_whole_container() -> None:
    bad = container(Bind(Path("/ok"), "/scanin/k"), Bind(Path("/x,U=true"), "/y"))
    with pytest.raises(MountError):
        isolation.isolation_flags(bad)


# -- limits --------------------------------------------------------------------------------


def test_defaults_limit_memory_without_swap_cpu_and_scratch() -> None:
    flags = isolation.isolation_flags(container())
    memory = str(isolation.DEFAULT_MEMORY_BYTES)
    assert values_of(flags, "--memory") == [memory]
    assert values_of(flags, "--memory-swap") == [memory]
    assert values_of(flags, "--pids-limit") == [str(isolation.PIDS_LIMIT)]
    assert values_of(flags, "--cpu-shares") == [str(isolation.CPU_SHARES)]
    assert values_of(flags, "--shm-size") == [str(isolation.SHM_BYTES)]
    assert values_of(flags, "--log-driver") == ["none"]
    tmpfs = {spec.partition(":")[0]: spec.partition(":")[2].split(",")
             for spec in values_of(flags, "--tmpfs")}
    assert set(tmpfs) == {"/tmp", "/var/tmp", "/run"}
    assert f"size={isolation.DEFAULT_TMPFS_BYTES}" in tmpfs["/tmp"]
    assert f"size={isolation.DEFAULT_TMPFS_BYTES}" in tmpfs["/var/tmp"]
    assert f"size={isolation.RUN_TMPFS_BYTES}" in tmpfs["/run"]
    for options in tmpfs.values():
        assert {"noexec", "nosuid", "nodev"} <= set(options)


def test_limits_come_from_the_container() -> None:
    flags = isolation.isolation_flags(container(memory_bytes=300 * isolation.MiB, cpus=1.5,
                                                tmpfs_bytes=isolation.MiB))
    assert values_of(flags, "--memory") == values_of(flags, "--memory-swap") == [
        str(300 * isolation.MiB)]
    assert values_of(flags, "--cpus") == ["1.5"]
    assert f"/tmp:rw,noexec,nosuid,nodev,size={isolation.MiB},mode=1777" in values_of(
        flags, "--tmpfs")


def test_cpu_is_a_weight_by_default_and_a_cap_only_when_asked() -> None:
    flags = isolation.isolation_flags(container())
    assert values_of(flags, "--cpu-shares") == [str(isolation.CPU_SHARES)]
    assert "--cpus" not in flags


def test_a_sigkill_names_the_memory_limit() -> None:
    killed = proc.Completed(("podman", "run"), 137, "", "partial\n")
    explained = isolation.explain_exit(killed, container(memory_bytes=2 * isolation.GiB))
    assert explained.returncode == 137
    assert explained.stderr.splitlines()[-1] == (
        "the scanner was killed (SIGKILL), most likely for going over its memory limit of 2 GiB")
    assert explained.stderr.startswith("partial")
    for other in (proc.Completed(("x",), 3, "", "boom"),
                  proc.Completed(("x",), 137, "", "", timed_out=True)):
        assert isolation.explain_exit(other, container()) is other


@pytest.mark.parametrize(("size", "text"), [
    (2 * isolation.GiB, "2 GiB"), (300 * isolation.MiB, "300 MiB"), (1000, "1000 bytes")])
def test_size_text(size: int, text: str) -> None:
    assert isolation.size_text(size) == text


# -- both runtimes' argv ------------------------------------------------------------------


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, ...]]:
    argvs: list[tuple[str, ...]] = []

    def fake_run_bounded(argv: Sequence[str], **_kwargs: object) -> proc.Completed:
        argvs.append(tuple(argv))
        return proc.Completed(tuple(argv), 0, "", "")

    profile = tmp_path / "seccomp.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}))
    monkeypatch.setattr(proc, "run_bounded", fake_run_bounded)
    monkeypatch.setattr("atomicscan.builtin.podman.SCANNER_PROFILE", seccomp.ProfileFile([profile]))
    return argvs


def test_podman_sizes_its_own_scratch_and_restricts_seccomp(
        captured: list[tuple[str, ...]]) -> None:
    PodmanRuntime().run_scanner(container(Bind(Path("/r"), "/scanin/k")))
    (argv,) = captured
    assert "--read-only-tmpfs=false" in argv
    (profile,) = [value.removeprefix("seccomp=") for value in values_of(argv, "--security-opt")
                  if value.startswith("seccomp=")]
    names = {name for rule in json.loads(Path(profile).read_text())["syscalls"]
             for name in rule["names"]}
    assert {"unshare", "setns", "clone", "clone3"} <= names
    assert argv[-2:] == ("localhost/scanner:1", "run")


def test_docker_gets_the_same_limits_once(captured: list[tuple[str, ...]]) -> None:
    DockerRuntime().run_scanner(container(Bind(Path("/r"), "/scanin/k")))
    (argv,) = captured
    assert values_of(argv, "--log-driver") == ["none"]
    assert sorted(v.partition(":")[0] for v in values_of(argv, "--tmpfs")) == [
        "/run", "/tmp", "/var/tmp"]
    assert values_of(argv, "--memory") == [str(isolation.DEFAULT_MEMORY_BYTES)]
    assert not any(value.startswith("seccomp=") for value in values_of(argv, "--security-opt"))


def test_podman_flags_keep_the_shared_ones() -> None:
    shared = isolation.isolation_flags(container())
    assert podman_flags(container())[:len(shared)] == shared


# -- seccomp -------------------------------------------------------------------------------

SMALL_PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "syscalls": [
        {"names": ["read", "clone", "clone3", "unshare", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["setns"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["unshare"], "action": "SCMP_ACT_ALLOW"},
    ],
}


def test_the_restricted_profile_drops_every_namespace_door() -> None:
    profile = seccomp.restricted_profile(SMALL_PROFILE)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    rules = profile["syscalls"]
    assert rules[0] == {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rule in rules:
        for name in rule["names"]:
            by_name.setdefault(name, []).append(rule)
    assert [r["errnoRet"] for r in by_name["unshare"]] == [errno.EPERM]
    assert [r["errnoRet"] for r in by_name["setns"]] == [errno.EPERM]
    assert [r["errnoRet"] for r in by_name["clone3"]] == [errno.ENOSYS]
    for rule in by_name["clone"]:
        assert rule["action"] == "SCMP_ACT_ALLOW"
        (arg,) = rule["args"]
        assert arg["op"] == "SCMP_CMP_MASKED_EQ" and arg["valueTwo"] == 0
        assert arg["value"] == seccomp.NAMESPACE_FLAGS
    assert SMALL_PROFILE["syscalls"][0]["names"][1] == "clone", "the input must be untouched"


@pytest.mark.skipif(not HOST_PROFILE.is_file(), reason="no containers-common profile here")
def test_podmans_own_profile_keeps_no_unconditional_namespace_call() -> None:
    profile = seccomp.restricted_profile(json.loads(HOST_PROFILE.read_text()))
    for rule in profile["syscalls"]:
        doors = set(rule["names"]) & seccomp.REWRITTEN
        if doors and rule["action"] == "SCMP_ACT_ALLOW":
            assert doors == {"clone"} and rule["args"], rule


def test_the_profile_file_is_sealed_and_shared(tmp_path: Path) -> None:
    source = tmp_path / "seccomp.json"
    source.write_text(json.dumps(SMALL_PROFILE))
    profile_file = seccomp.ProfileFile([tmp_path / "missing.json", source])
    path = profile_file.path()
    assert path == profile_file.path()
    assert path.startswith(f"/proc/{os.getpid()}/fd/")
    assert json.loads(Path(path).read_text()) == seccomp.restricted_profile(SMALL_PROFILE)
    with pytest.raises(PermissionError):
        Path(path).write_text("{}")
    assert not list(tmp_path.glob("*.tmp")) and sorted(tmp_path.iterdir()) == [source]


def test_no_profile_or_a_broken_one_is_a_runtime_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnavailableError, match="no default seccomp profile"):
        seccomp.ProfileFile([tmp_path / "missing.json"]).path()
    broken = tmp_path / "broken.json"
    broken.write_text('{"syscalls": ')
    with pytest.raises(RuntimeUnavailableError, match="cannot read"):
        seccomp.ProfileFile([broken]).path()
    broken.write_text('{"syscalls": [{"action": "SCMP_ACT_ALLOW"}]}')
    with pytest.raises(RuntimeUnavailableError, match="unusable"):
        seccomp.ProfileFile([broken]).path()
