"""Built-in runtimes stand where a third party's would: the core reaches them by the contract."""

from __future__ import annotations

import ast
import typing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from atomicscan import doctor, isolation, runtime
from atomicscan.builtin.docker import DockerRuntime
from atomicscan.builtin.podman import PodmanRuntime
from atomicscan.proc import Completed
from atomicscan.runtime import Runtime, ScannerContainer, Target

PACKAGE = Path(doctor.__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_no_core_module_imports_a_builtin_runtime(path: Path) -> None:
    imported = _imported_modules(path)
    assert not {m for m in imported
                if m.startswith(("atomicscan.builtin.podman", "atomicscan.builtin.docker",
                                 "atomicscan.builtin.containerd"))}


def test_the_containerd_runtime_imports_only_the_public_api() -> None:
    # Written like a third party's plugin: `from atomicscan import ...` and its own module.
    import atomicscan

    public = {"atomicscan", *(f"atomicscan.{name}" for name in atomicscan.__all__)}
    for name in ("containerd.py", "containerd_spec.py"):
        imported = {m for m in _imported_modules(PACKAGE / "builtin" / name)
                    if m.startswith("atomicscan")}
        own = {m for m in imported if m.startswith("atomicscan.builtin.containerd_spec")}
        assert imported - public - own == set(), name


def test_builtin_runtimes_do_not_import_each_other() -> None:
    for name, other in (("podman", "docker"), ("docker", "podman")):
        imported = _imported_modules(PACKAGE / "builtin" / f"{name}.py")
        assert not any(m.startswith(f"atomicscan.builtin.{other}") for m in imported)


def test_doctor_names_no_runtime() -> None:
    source = (PACKAGE / "doctor.py").read_text(encoding="utf-8")
    assert '"podman"' not in source and '"docker"' not in source


class _FailingRuntime:
    name = "fake"

    def __init__(self, hint: str) -> None:
        self.hint = hint
        self.removed: list[str] = []

    def run_scanner(self, container: ScannerContainer) -> Completed:
        return Completed((), 125, "", "Error: starting\ncgroups: cannot apply limit\n\n")

    def remove_container(self, name: str) -> None:
        self.removed.append(name)

    def run_failure_hint(self) -> str:
        return self.hint


@pytest.mark.parametrize("hint", ["", "install the fix-up config"])
def test_doctor_takes_the_fix_for_a_failed_run_from_the_runtime(hint: str) -> None:
    fake = _FailingRuntime(hint)
    plugins: Any = SimpleNamespace(runtimes=SimpleNamespace(get=lambda name: fake))
    check = doctor._probe_run(plugins, "fake", "img")
    assert not check.ok
    assert check.detail == "cgroups: cannot apply limit"  # the last line says why
    assert check.fix == hint
    assert fake.removed and fake.removed[0].startswith("atomicscan-doctor-")


def test_podman_suggests_the_shipped_config_unless_one_is_chosen(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    hint = PodmanRuntime().run_failure_hint()
    assert str(isolation.shipped_containers_conf()) in hint
    assert str(isolation.HOST_CONTAINERS_CONF) in hint
    assert isolation.shipped_containers_conf().is_file()
    monkeypatch.setenv("CONTAINERS_CONF", "/elsewhere.conf")
    assert PodmanRuntime().run_failure_hint() == ""
    assert isolation.host_containers_conf() is None


def test_runtimes_without_a_fix_say_nothing() -> None:
    assert DockerRuntime().run_failure_hint() == ""
    assert Runtime.run_failure_hint(DockerRuntime()) == ""


@pytest.mark.parametrize(("text", "line"), [
    ("", ""),
    ("\n  \n", ""),
    ("only\n", "only"),
    ("Error: first\n  detail  \nwhy it failed\n\n", "why it failed"),
])
def test_last_line_is_the_last_meaningful_line(text: str, line: str) -> None:
    assert runtime.last_line(text) == line


def test_target_type_is_one_of_three() -> None:
    hints = typing.get_type_hints(Target)
    assert hints["type"] == runtime.TargetType
    assert set(typing.get_args(runtime.TargetType)) == {"image", "container", "rootfs"}
