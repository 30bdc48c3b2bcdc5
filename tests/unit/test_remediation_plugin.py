"""``--remediate`` end to end with fakes: the core asks the scanner for a fix script, and the
openscap plugin's remediation (a plugin like any other) builds the image from it, with the
target and runtime the run hands it in ``context``."""

from __future__ import annotations

import json
from pathlib import Path

from test_pipeline import FakeHost, FakeRuntime, _Shapes, image, run_env

from atomicscan import Completed, ResultContext, ScannerContainer, ScanResult, hookimpl
from atomicscan.builtin import openscap_remediation
from atomicscan.plugins import Plugins
from atomicscan.scan import ScanRequest, ScanRun

__all__ = ["run_env"]  # the fixture, imported for pytest


class FixingRuntime(FakeRuntime):
    """A fake whose scanner writes a fix script when asked, and which "builds" images."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.built: list[tuple[str, str]] = []

    def run_scanner(self, container: ScannerContainer) -> Completed:
        done = super().run_scanner(container)
        if json.loads(container.env["ATOMICSCAN_SCANNER_ARGS"]).get("remediate") == "true":
            scanout = next(b.source for b in container.binds if b.destination == "/scanout")
            for entry in json.loads(container.env["ATOMICSCAN_TARGETS"]):
                (scanout / entry["key"] / openscap_remediation.FIX_SCRIPT).write_text("true\n")
        return done

    def image_user(self, image: str) -> str:
        return "app"

    def build_image(self, context: Path, tag: str) -> None:
        self.built.append((tag, (context / "Containerfile").read_text()))


def test_remediate_builds_the_image_through_the_plugin(run_env: Path) -> None:
    podman = FixingRuntime("podman", [image("a")], rootfs=run_env / "roots")
    loaded = Plugins.load([_Shapes([podman])], entry_points=False)  # a built-in
    request = ScanRequest(targets=("a",), output_dir=run_env / "results", remediate=True,
                          trusted_scanners=("fake",))
    progress: list[str] = []
    report = ScanRun(loaded, request, progress=progress.append, host=FakeHost()).execute()
    (result,) = report.results
    assert result.successful and result.remediated_image == "localhost/atomicscan-remediated:" \
        + image("a").id[:12]
    ((tag, containerfile),) = podman.built
    assert tag == result.remediated_image
    assert containerfile.startswith(f"FROM {image('a').id}\n") and "USER app" in containerfile
    assert "building the remediated image of a" in progress


def test_without_remediate_the_plugin_leaves_the_result_alone(run_env: Path) -> None:
    podman = FixingRuntime("podman", [image("a")], rootfs=run_env / "roots")
    loaded = Plugins.load([_Shapes([podman])], entry_points=False)  # a built-in
    report = ScanRun(loaded, ScanRequest(targets=("a",), output_dir=run_env / "results"),
                     host=FakeHost()).execute()
    assert report.results[0].remediated_image is None and podman.built == []


def test_a_result_without_a_fix_script_says_so() -> None:
    result = ScanResult(target="a", target_id="i", target_type="image", runtime="podman",
                        scanner="fake", scan_type="check", successful=True, started_at="s",
                        finished_at="f")
    changed = openscap_remediation.atomicscan_process_result(
        result, ResultContext(remediate=True))
    assert changed is not None and changed.successful
    assert changed.notes == ("no remediation: the scanner left no remediation.sh for this "
                             "target",)


def test_a_plugin_sees_the_target_and_runtime_in_its_context(run_env: Path) -> None:
    podman = FakeRuntime("podman", [image("a")], rootfs=run_env / "roots")
    seen: list[tuple[str | None, str | None, str]] = []

    class Looks:
        @hookimpl
        def atomicscan_process_result(self, context: ResultContext) -> None:
            seen.append((context.target.ref if context.target else None,
                         context.runtime.name if context.runtime else None,
                         context.scanner_args.get("level", "")))

    loaded = Plugins.load([_Shapes([podman]), Looks()], entry_points=False)
    request = ScanRequest(targets=("a",), output_dir=run_env / "results",
                          scanner_args={"level": "2"})
    ScanRun(loaded, request, host=FakeHost()).execute()
    assert seen == [("a", "podman", "2")]
