"""The plugin manager and hooks, with small plugins declared inline (fast tier)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator, Sequence
from pathlib import Path

import pluggy
import pytest

from atomicscan import (
    DuplicateScannerError,
    Report,
    Scanner,
    ScannerRegistry,
    ScanResult,
    ScanType,
    hookimpl,
)
from atomicscan.plugins import Plugins


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


# --- pluggy calls every implementation: arguments, wrappers, tracing ----------------------


def test_an_implementation_may_take_fewer_arguments_than_its_spec() -> None:
    class OnlyResult:
        @hookimpl
        def atomicscan_process_result(self, result: ScanResult) -> ScanResult:
            return result.replace(notes=(*result.notes, "saw the result only"))

    class OnlyRunId:
        @hookimpl(tryfirst=True)
        def atomicscan_merge_results(self, run_id: str) -> None:
            seen.append(run_id)

    class NoArguments:
        @hookimpl
        def atomicscan_add_scanners(self) -> None:
            seen.append("called")

    seen: list[str] = []
    plugins = Plugins.load([OnlyResult(), OnlyRunId(), NoArguments()], entry_points=False)
    assert "packages" in plugins.scanners.names()
    assert plugins.process_result(_result(), _scanner("extra")).notes == ("saw the result only",)
    assert plugins.merge_results([_result()], _scanner("extra"), "s", "run-7").run_id == "run-7"
    assert seen == ["called", "run-7"]
    assert plugins.errors == []


def test_a_new_style_wrapper_wraps_the_collecting_hook() -> None:
    class Filter:
        @hookimpl(wrapper=True)
        def atomicscan_add_scanners(self, registry: ScannerRegistry) -> Generator[None, None, None]:
            before.extend(registry.names())
            yield
            after.extend(registry.names())

    before: list[str] = []
    after: list[str] = []
    plugins = Plugins.load([Filter(), AddsExtra()], entry_points=False)
    assert "extra" in plugins.scanners.names()
    assert before == []
    assert {"extra", "packages"} <= set(after)
    assert plugins.errors == []


def test_a_wrapper_wraps_the_whole_process_result_chain() -> None:
    calls: list[str] = []

    class Link:
        @hookimpl
        def atomicscan_process_result(self, result: ScanResult) -> ScanResult:
            calls.append("link")
            return result.replace(notes=(*result.notes, "link"))

    class Wrapper:
        @hookimpl(wrapper=True)
        def atomicscan_process_result(
                self, result: ScanResult) -> Generator[None, list[ScanResult], list[ScanResult]]:
            calls.append(f"before, notes {result.notes}")
            (final,) = yield
            calls.append(f"after, notes {final.notes}")
            return [final.replace(notes=(*final.notes, "wrapped"))]

    plugins = Plugins.load([Link(), Wrapper(), Link()], entry_points=False)
    out = plugins.process_result(_result(), _scanner("extra"))
    assert out.notes == ("link", "link", "wrapped")
    assert calls == ["before, notes ()", "link", "link", "after, notes ('link', 'link')"]


def test_an_old_style_hookwrapper_can_force_the_merged_report() -> None:
    class Totals:
        @hookimpl(hookwrapper=True)
        def atomicscan_merge_results(self, results: Sequence[ScanResult],
                                     ) -> Generator[None, pluggy.Result[Report], None]:
            outcome = yield
            report = outcome.get_result()
            outcome.force_result(dataclasses.replace(report, extra={"total": len(results)}))

    plugins = Plugins.load([Totals()], entry_points=False)
    report = plugins.merge_results([_result(), _result()], _scanner("extra"), "s", "r")
    assert report.to_json()["total"] == 2
    assert report.run_id == "r"  # the built-in merge ran inside the wrapper


def test_wrappers_nest_in_pluggys_order() -> None:
    order: list[str] = []

    def wrapper(label: str, *, tryfirst: bool = False, trylast: bool = False) -> object:
        class Wrapper:
            @hookimpl(wrapper=True, tryfirst=tryfirst, trylast=trylast)
            def atomicscan_add_scanners(self) -> Generator[None, None, None]:
                order.append(f"{label} in")
                yield
                order.append(f"{label} out")
        return Wrapper()

    plugins = Plugins.load([wrapper("last", trylast=True), wrapper("first", tryfirst=True),
                            wrapper("middle")], entry_points=False)
    _ = plugins.scanners
    assert order == ["first in", "middle in", "last in", "last out", "middle out", "first out"]


def test_pluggy_tracing_sees_every_call() -> None:
    class OnlyResult:
        @hookimpl
        def atomicscan_process_result(self, result: ScanResult) -> None:
            return None

    lines: list[str] = []
    plugins = Plugins.load([OnlyResult()], entry_points=False)
    plugins.pm.trace.root.setwriter(lines.append)
    undo = plugins.pm.enable_tracing()
    try:
        _ = plugins.scanners, plugins.runtimes
        out = plugins.process_result(_result(), _scanner("extra"))
        plugins.merge_results([out], _scanner("extra"), "s", "r")
    finally:
        undo()
    traced = "".join(lines)
    for hook in ("atomicscan_add_scanners", "atomicscan_add_runtimes",
                 "atomicscan_process_result", "atomicscan_merge_results"):
        assert f"{hook} [hook]" in traced, hook
    assert "finish atomicscan_merge_results --> Report(run_id='r'" in traced


# --- isolation: one plugin's failure is named, the others run -----------------------------


def test_a_wrapper_that_raises_is_named_and_the_value_it_wrapped_is_kept(
        caplog: pytest.LogCaptureFixture) -> None:
    runs: list[str] = []

    class Link:
        @hookimpl
        def atomicscan_process_result(self, result: ScanResult) -> ScanResult:
            runs.append("link")
            return result.replace(notes=(*result.notes, "link"))

    class BreaksBefore:
        @hookimpl(wrapper=True)
        def atomicscan_process_result(self) -> Generator[None, list[ScanResult], None]:
            raise RuntimeError("before yield")
            yield

    class BreaksAfter:
        @hookimpl(wrapper=True, tryfirst=True)
        def atomicscan_process_result(self) -> Generator[None, list[ScanResult], None]:
            yield
            raise ValueError("after yield")

    before, after = BreaksBefore(), BreaksAfter()
    plugins = Plugins.load([Link(), before, after], entry_points=False)
    with caplog.at_level(logging.WARNING, logger="atomicscan.plugins"):
        out = plugins.process_result(_result(), _scanner("extra"))
    assert runs == ["link"]  # the chain ran once, though both wrappers around it failed
    names = plugins.pm.get_name(before), plugins.pm.get_name(after)
    assert plugins.errors == [
        f"plugin {names[0]} failed in atomicscan_process_result: RuntimeError: before yield",
        f"plugin {names[1]} failed in atomicscan_process_result: ValueError: after yield",
    ]
    assert out.notes == ("link", *plugins.errors)
    assert [record.getMessage() for record in caplog.records] == plugins.errors


def test_a_wrapper_returning_the_wrong_type_is_named() -> None:
    class Garbage:
        @hookimpl(wrapper=True)
        def atomicscan_merge_results(self) -> Generator[None, Report, str]:
            yield
            return "not a report"

    garbage = Garbage()
    plugins = Plugins.load([garbage], entry_points=False)
    report = plugins.merge_results([_result()], _scanner("extra"), "s", "r")
    assert report.run_id == "r"
    (error,) = plugins.errors
    assert error == (f"plugin {plugins.pm.get_name(garbage)} failed in atomicscan_merge_results:"
                     " returned str, not a Report or None")


def test_a_process_result_returning_the_wrong_type_is_named_and_skipped() -> None:
    class Wrong:
        @hookimpl
        def atomicscan_process_result(self) -> dict[str, str]:
            return {"not": "a result"}

    plugins = Plugins.load([Wrong()], entry_points=False)
    out = plugins.process_result(_result(notes=("kept",)), _scanner("extra"))
    (error,) = plugins.errors
    assert error.endswith("returned dict, not a ScanResult or None")
    assert out.notes == ("kept", error)


def test_a_collecting_hook_that_raises_does_not_stop_the_others() -> None:
    class Broken:
        @hookimpl(tryfirst=True)
        def atomicscan_add_runtimes(self) -> None:
            raise OSError("no socket")

    broken = Broken()
    plugins = Plugins.load([broken], entry_points=False)
    assert {"podman", "docker"} <= set(plugins.runtimes.names())
    assert plugins.errors == [f"plugin {plugins.pm.get_name(broken)} failed in "
                              "atomicscan_add_runtimes: OSError: no socket"]


def test_a_wrapper_that_is_not_a_generator_is_refused_at_load_in_one_line() -> None:
    class NotAGenerator:
        @hookimpl(wrapper=True)
        def atomicscan_add_scanners(self, registry: ScannerRegistry) -> None:
            registry.add(_scanner("never"))

    refused = NotAGenerator()
    plugins = Plugins.load([refused, AddsExtra()], entry_points=False)
    assert not plugins.pm.is_registered(refused)
    assert {"extra", "packages"} <= set(plugins.scanners.names())
    assert "never" not in plugins.scanners.names()
    (error,) = plugins.errors
    assert "\n" not in error
    assert error.startswith("plugin ") and " refused: " in error
    assert "atomicscan_add_scanners" in error and "not a generator function" in error


def test_a_plugin_implementing_an_unknown_hook_is_refused_in_one_line() -> None:
    class Typo:
        @hookimpl
        def atomicscan_add_scaners(self, registry: ScannerRegistry) -> None:
            raise AssertionError("never called")

    typo = Typo()
    plugins = Plugins.load([typo, AddsExtra()], entry_points=False)
    assert not plugins.pm.is_registered(typo)
    assert "extra" in plugins.scanners.names()
    (error,) = plugins.errors
    assert "\n" not in error and "unknown hook 'atomicscan_add_scaners'" in error
