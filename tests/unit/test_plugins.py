"""The plugin manager and hooks, with small plugins declared inline (fast tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from atomicscan import hookspecs
from atomicscan.errors import DuplicateScannerError
from atomicscan.hookspecs import hookimpl
from atomicscan.plugins import Plugins
from atomicscan.results import ScanResult
from atomicscan.scanners import Scanner, ScannerRegistry, ScanType


def _scanner(name: str) -> Scanner:
    return Scanner(name=name, image=f"localhost/{name}", default_scan="s",
                   scan_types={"s": ScanType("s", ("true",))}, origin="test")


def _result(**changes: object) -> ScanResult:
    base = ScanResult(target="t", target_id="id", target_type="rootfs", runtime=None,
                      scanner="extra", scan_type="s", successful=True, started_at="a",
                      finished_at="b")
    return base.replace(**changes)


@pytest.fixture(autouse=True)
def _no_host_definitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMICSCAN_CONFIG_DIR", str(tmp_path / "none"))


class AddsExtra:
    @hookimpl
    def atomicscan_add_scanners(self, registry: ScannerRegistry) -> None:
        registry.add(_scanner("extra"))


def test_builtins_are_registered_like_plugins() -> None:
    plugins = Plugins.load(entry_points=False)
    names = {info.name for info in plugins.info()}
    assert {"atomicscan.builtin.podman", "atomicscan.builtin.packages"} <= names
    assert "packages" in plugins.scanners.names()
    assert "podman" in plugins.runtimes.names()


def test_an_outside_plugin_adds_a_scanner() -> None:
    plugins = Plugins.load([AddsExtra()], entry_points=False)
    assert {"extra", "packages"} <= set(plugins.scanners.names())


def test_two_plugins_adding_one_name_is_an_error_naming_the_plugin() -> None:
    plugins = Plugins.load([AddsExtra(), AddsExtra()], entry_points=False)
    assert "extra" in plugins.scanners.names() and "packages" in plugins.scanners.names()
    (error,) = plugins.errors
    assert "failed in atomicscan_add_scanners" in error and "defined twice" in error


def test_registry_itself_rejects_duplicates() -> None:
    registry = ScannerRegistry()
    registry.add(_scanner("x"))
    with pytest.raises(DuplicateScannerError):
        registry.add(_scanner("x"))


def test_a_plugin_that_raises_is_named_and_the_others_still_run() -> None:
    class Broken:
        @hookimpl
        def atomicscan_add_scanners(self, registry: ScannerRegistry) -> None:
            raise RuntimeError("boom")

        @hookimpl
        def atomicscan_process_result(self, result: ScanResult, scanner: Scanner) -> None:
            raise ValueError("bad result hook")

        @hookimpl
        def atomicscan_merge_results(self, results: object, scanner: Scanner, scan_type: str,
                                     run_id: str) -> None:
            raise KeyError("merge")

    broken = Broken()
    plugins = Plugins.load([broken], entry_points=False)
    name = plugins.pm.get_name(broken)
    assert "packages" in plugins.scanners.names()
    out = plugins.process_result(_result(), _scanner("extra"))
    assert any(f"plugin {name} failed in atomicscan_process_result" in n for n in out.notes)
    report = plugins.merge_results([out], _scanner("extra"), "s", "r")
    assert report.results == (out,)
    assert len(plugins.errors) == 3 and all(f"plugin {name}" in e for e in plugins.errors)


def test_blocked_builtin_is_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMICSCAN_BLOCK_PLUGINS", "atomicscan.builtin.definitions")
    assert Plugins.load(entry_points=False).scanners.names() == []


def test_process_result_implementations_chain_in_call_order() -> None:
    seen: list[str] = []

    class First:
        @hookimpl(tryfirst=True)
        def atomicscan_process_result(self, result: ScanResult, scanner: Scanner) -> ScanResult:
            seen.append("first")
            return result.replace(notes=(*result.notes, "first"))

    class Last:
        @hookimpl(trylast=True)
        def atomicscan_process_result(self, result: ScanResult, scanner: Scanner) -> None:
            seen.append(f"last saw {result.notes}")

    plugins = Plugins.load([Last(), First()], entry_points=False)
    out = plugins.process_result(_result(), _scanner("extra"))
    assert out.notes == ("first",)
    assert seen == ["first", "last saw ('first',)"]


def test_builtin_merge_is_the_trylast_default() -> None:
    plugins = Plugins.load(entry_points=False)
    report = plugins.merge_results([_result(), _result(successful=False, error="x")],
                                   _scanner("extra"), "s", "run-1")
    assert report.run_id == "run-1"
    assert report.to_json()["summary"] == {"targets": 2, "failed": 1, "findings": 0}


def test_every_hookspec_is_documented_and_named_for_the_project() -> None:
    specs = [name for name in dir(hookspecs) if name.startswith("atomicscan_")]
    assert len(specs) >= 4
    for name in specs:
        assert getattr(hookspecs, name).__doc__, f"{name} needs a docstring"


def test_every_hook_is_in_the_hook_reference() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "writing-a-scanner.md").read_text()
    for name in (n for n in dir(hookspecs) if n.startswith("atomicscan_")):
        assert f"`{name}`" in doc, f"{name} is missing from docs/writing-a-scanner.md"
