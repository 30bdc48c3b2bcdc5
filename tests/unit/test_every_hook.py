"""Every hook is called through a plugin registered here, and documented (datasette's check)."""

from __future__ import annotations

import contextlib
import re
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from atomicscan import (
    AtomicscanError,
    Completed,
    Finding,
    FormatRegistry,
    OutputFormat,
    Package,
    Report,
    RunContext,
    Runtime,
    RuntimeRegistry,
    Scanner,
    ScannerContainer,
    ScannerRegistry,
    ScanResult,
    ScanType,
    Target,
    hookimpl,
    hookspecs,
)
from atomicscan.plugins import Plugins

ROOT = Path(__file__).resolve().parents[2]
HOOK_DOC = ROOT / "docs" / "hooks.md"


def _hooks() -> list[str]:
    return sorted(name for name in dir(hookspecs) if name.startswith(f"{hookspecs.PROJECT}_"))


def _scanner(name: str = "extra") -> Scanner:
    return Scanner(name=name, image=f"localhost/{name}", default_scan="s",
                   scan_types={"s": ScanType("s", ("true",))}, origin="test")


def _result(**changes: Any) -> ScanResult:
    base = ScanResult(target="t", target_id="id", target_type="rootfs", runtime=None,
                      scanner="extra", scan_type="s", successful=True, started_at="a",
                      finished_at="b")
    return base.replace(**changes)


@pytest.fixture(autouse=True)
def _no_host_definitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMICSCAN_CONFIG_DIR", str(tmp_path / "none"))


# --- one test per hook, named test_<hook>_... ---------------------------------------------


def test_atomicscan_add_scanners_registers_a_scanner() -> None:
    class AddsOne:
        @hookimpl
        def atomicscan_add_scanners(self, registry: ScannerRegistry) -> None:
            registry.add(_scanner("from-a-test"))

    plugins = Plugins.load([AddsOne()], entry_points=False)
    assert plugins.scanners.get("from-a-test").image == "localhost/from-a-test"
    assert "packages" in plugins.scanners.names()
    assert plugins.errors == []


class StubRuntime(Runtime):
    """A runtime that holds nothing: enough to be registered, made and checked."""

    name = "stub"

    def check(self) -> None:
        return None

    def resolve(self, ref: str) -> Target:
        raise NotImplementedError(ref)

    def mount_rootfs(self, target: Target, journal: Callable[[dict[str, Any]], None],
                     workdir: Path) -> contextlib.AbstractContextManager[Path]:
        @contextlib.contextmanager
        def mounted() -> Iterator[Path]:
            yield workdir
        return mounted()

    def undo(self, record: Mapping[str, Any]) -> None:
        return None

    def image_id(self, image: str) -> str | None:
        return None

    def run_scanner(self, container: ScannerContainer) -> Completed:
        raise NotImplementedError(container.name)

    def remove_container(self, name: str) -> None:
        return None

    def labelled_containers(self, label: str) -> list[tuple[str, str]]:
        return []


def test_atomicscan_add_runtimes_registers_a_runtime_made_on_first_use() -> None:
    made: list[str] = []

    def factory() -> Runtime:
        made.append("stub")
        return StubRuntime()

    class AddsStub:
        @hookimpl
        def atomicscan_add_runtimes(self, registry: RuntimeRegistry) -> None:
            registry.add("stub", factory)

    plugins = Plugins.load([AddsStub()], entry_points=False)
    assert {"stub", "podman", "docker"} <= set(plugins.runtimes.names())
    assert made == []  # the factory runs when the runtime is first needed
    assert isinstance(plugins.runtimes.get("stub"), StubRuntime)
    assert made == ["stub"]
    assert plugins.errors == []


def test_atomicscan_process_result_changes_the_result() -> None:
    class Flags:
        @hookimpl
        def atomicscan_process_result(self, result: ScanResult, scanner: Scanner) -> ScanResult:
            finding = Finding(id="flag", title=f"seen by {scanner.name}")
            return result.replace(findings=(*result.findings, finding))

    plugins = Plugins.load([Flags()], entry_points=False)
    out = plugins.process_result(_result(), _scanner())
    assert [(f.id, f.title) for f in out.findings] == [("flag", "seen by extra")]
    assert plugins.errors == []


def test_atomicscan_merge_results_replaces_the_builtin_merge() -> None:
    class Merges:
        @hookimpl
        def atomicscan_merge_results(self, results: Sequence[ScanResult], scanner: Scanner,
                                     scan_type: str, run_id: str) -> Report:
            return Report(run_id=run_id, scanner=scanner.name, scan_type=scan_type,
                          started_at="s", finished_at="f", results_dir=None,
                          results=tuple(results), extra={"merged_by": "test"})

    plugins = Plugins.load([Merges()], entry_points=False)
    report = plugins.merge_results([_result()], _scanner(), "s", "run-1")
    assert report.to_json()["merged_by"] == "test"
    assert report.started_at == "s"
    assert plugins.errors == []


def test_atomicscan_describe_result_adds_a_phrase_to_the_summary() -> None:
    class Describes:
        @hookimpl
        def atomicscan_describe_result(self, result: ScanResult) -> str | None:
            layers = result.custom.get("layers")
            return f"{layers} layers" if layers is not None else None

    plugins = Plugins.load([Describes()], entry_points=False)
    assert plugins.describe_result(_result(custom={"layers": 3})) == ["3 layers"]
    assert plugins.describe_result(_result()) == []
    packages = Package("musl", "1.2", "x86_64", "apk", "pkg:apk/alpine/musl@1.2")
    described = plugins.describe_result(_result(packages=(packages,), custom={"layers": 1}))
    assert described == ["1 packages (1 apk)", "1 layers"]  # the built-in phrase first
    assert plugins.errors == []


def test_atomicscan_run_finished_sees_the_report_and_its_failure_is_one_line() -> None:
    seen: list[tuple[str, str]] = []

    class Records:
        @hookimpl
        def atomicscan_run_finished(self, report: Report, context: RunContext) -> None:
            seen.append((report.run_id, context.options.get("history.db", "")))

    class Fails:
        @hookimpl
        def atomicscan_run_finished(self, report: Report) -> None:
            raise AtomicscanError(f"not sent; send it later: send {report.run_id}")

    plugins = Plugins.load([Records(), Fails()], entry_points=False,
                           block=["atomicscan.builtin.history"])
    report = Report(run_id="r-9", scanner="extra", scan_type="s", started_at="s",
                    finished_at="f", results_dir=None, results=(_result(),))
    failures = plugins.run_finished(report, RunContext(options={"history.db": "sqlite://"}))
    assert seen == [("r-9", "sqlite://")]
    (line,) = failures
    assert line.endswith("failed in atomicscan_run_finished: not sent; send it later: send r-9")


def test_atomicscan_add_formats_registers_a_format() -> None:
    class AddsCsv:
        @hookimpl
        def atomicscan_add_formats(self, registry: FormatRegistry) -> None:
            def write(report: Report) -> bytes:
                return "".join(f"{r.target},{len(r.findings)}\n"
                               for r in report.results).encode()
            registry.add(OutputFormat("test-csv", "targets and finding counts", ".csv",
                                      write_run=write))

    plugins = Plugins.load([AddsCsv()], entry_points=False)
    found = plugins.formats.get("test-csv")
    assert found is not None and found.scope == "run" and found.write_run is not None
    report = Report(run_id="r", scanner="extra", scan_type="s", started_at="s",
                    finished_at="f", results_dir=None,
                    results=(_result(findings=(Finding("F-1", "one"),)),))
    assert found.write_run(report) == b"t,1\n"
    assert plugins.errors == []


# --- the meta-tests -----------------------------------------------------------------------


def test_every_hook_has_a_test_here() -> None:
    tests = [name for name in globals() if name.startswith("test_")]
    for hook in _hooks():
        assert any(name.startswith(f"test_{hook}_") for name in tests), f"{hook} has no test"


def test_every_hook_is_specified_typed_and_named_for_the_project() -> None:
    hooks = _hooks()
    assert len(hooks) >= 4
    for hook in hooks:
        spec = getattr(hookspecs, hook)
        assert re.fullmatch(r"atomicscan_[a-z]+_[a-z_]+", hook), hook
        assert spec.__doc__, f"{hook} needs a docstring"
        assert "return" in spec.__annotations__, f"{hook} needs a return type"
        assert getattr(spec, f"{hookspecs.PROJECT}_spec", None) is not None, hook


def test_every_hook_is_in_the_hook_reference_and_nothing_else_is() -> None:
    documented = re.findall(r"^## `(\w+)`$", HOOK_DOC.read_text(), flags=re.MULTILINE)
    assert sorted(documented) == _hooks()
    tutorial = (ROOT / "docs" / "writing-a-scanner.md").read_text()
    for hook in _hooks():
        assert f"`{hook}`" in tutorial, f"{hook} is missing from docs/writing-a-scanner.md"


def _examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", HOOK_DOC.read_text(),
                      flags=re.MULTILINE | re.DOTALL)


def test_the_hook_reference_has_an_example_of_every_hook() -> None:
    examples = "\n".join(_examples())
    for hook in _hooks():
        assert f"def {hook}(" in examples, f"docs/hooks.md has no example of {hook}"


@pytest.mark.parametrize("index", range(len(_examples())))
def test_each_example_in_the_hook_reference_works_as_a_plugin(index: int) -> None:
    example = types.ModuleType(f"hooks_md_example_{index}")
    code = compile(_examples()[index], f"docs/hooks.md example {index}", "exec")
    exec(code, example.__dict__)  # noqa: S102 - the documentation's own example
    plugins = Plugins.load([example], entry_points=False)
    _ = plugins.scanners, plugins.runtimes
    result = plugins.process_result(_result(), _scanner())
    report = plugins.merge_results([result], _scanner(), "s", "run-1")
    assert report.results == (result,)
    assert plugins.errors == []
