"""Bad input: one clear line on stderr, the documented exit code, nothing left behind."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ALPINE, DEBIAN, Atomicscan, Engine, HostSnapshot, assert_no_leftovers


@pytest.fixture
def ambiguous_name(engine: Engine, unique: str) -> Iterator[str]:
    name = f"atomicscan-ambig-{unique}"
    engine("tag", DEBIAN, f"localhost/{name}:latest")
    engine("tag", ALPINE, f"example.com/{name}:latest")
    yield name
    engine("rmi", f"localhost/{name}:latest", f"example.com/{name}:latest", check=False)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(("args", "expected"), [
    (["--scanner", "packages", "localhost/no-such-image:1"], "no-such-image"),
    (["--scanner", "nope", DEBIAN], "unknown scanner 'nope'"),
    (["--scanner", "packages", "--scan-type", "nope", DEBIAN], "no scan type 'nope'"),
    (["--scanner", "packages", "--no-such-flag", DEBIAN], "--no-such-flag"),
    (["--scanner", "packages", "--scanner-args", "novalue", DEBIAN], "KEY=VALUE"),
    (["--scanner", "packages", "--rootfs", "/no/such/dir"], "not a directory"),
    (["--scanner", "packages"], "nothing to scan"),
    (["--scanner", "packages", "--runtime", "rkt", DEBIAN], "unknown runtime 'rkt'"),
])
def test_usage_errors_exit_2_with_one_line(
    atomicscan: Atomicscan, host_before: HostSnapshot, args: list[str], expected: str
) -> None:
    run = atomicscan(*args)
    assert run.returncode == 2
    assert expected in _one_line(run.stderr)
    assert run.stdout == ""
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_ambiguous_name_exits_2_and_lists_the_candidates(
    atomicscan: Atomicscan, ambiguous_name: str
) -> None:
    run = atomicscan("--scanner", "packages", ambiguous_name)
    assert run.returncode == 2
    line = _one_line(run.stderr)
    assert "matches 2 images" in line
    assert f"localhost/{ambiguous_name}:latest" in line


def test_the_first_bad_reference_is_the_one_reported(
    atomicscan: Atomicscan, ambiguous_name: str
) -> None:
    # References are resolved together, but errors come in the order they were given.
    missing = atomicscan("--scanner", "packages", "localhost/no-such-image:1", ambiguous_name)
    ambiguous = atomicscan("--scanner", "packages", ambiguous_name, "localhost/no-such-image:1")

    assert missing.returncode == ambiguous.returncode == 2
    assert "'localhost/no-such-image:1' is neither" in _one_line(missing.stderr)
    assert "matches 2 images" in _one_line(ambiguous.stderr)


def test_without_scanner_the_choices_are_listed_when_several(atomicscan: Atomicscan) -> None:
    atomicscan.add_scanner("second", "true")
    run = atomicscan(DEBIAN)
    assert run.returncode == 2
    line = _one_line(run.stderr)
    assert "--scanner" in line and "packages" in line and "second" in line


def test_with_one_scanner_installed_it_is_used(
    atomicscan: Atomicscan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    only = tmp_path / "builtin" / "packages"
    only.mkdir(parents=True)
    shutil.copy(Path(__file__).parents[2] / "scanners/packages/scanner.toml", only)
    monkeypatch.setenv("ATOMICSCAN_BUILTIN_SCANNERS_DIR", str(only.parent))
    run = atomicscan("--json", ALPINE)
    assert run.returncode == 0, run.stderr
    assert run.json()["scanner"] == "packages"


def test_missing_scanner_image_says_how_to_build_it(atomicscan: Atomicscan) -> None:
    atomicscan.add_scanner("ghost", "true", image="localhost/atomicscan/ghost:latest")
    run = atomicscan("--scanner", "ghost", DEBIAN)
    assert run.returncode == 1
    line = _one_line(run.stderr)
    assert "localhost/atomicscan/ghost:latest" in line and "build" in line


def test_json_mode_prints_exactly_one_document(atomicscan: Atomicscan) -> None:
    run = atomicscan("--scanner", "packages", "--json", "--verbose", ALPINE)
    assert run.returncode == 0
    run.json()  # the whole of stdout parses as one document
    assert "mounting" in run.stderr, "progress goes to stderr"


def test_list_marks_defaults(atomicscan: Atomicscan) -> None:
    run = atomicscan("--list", "--json")
    assert run.returncode == 0
    (scanner,) = [s for s in run.json()["scanners"] if s["name"] == "packages"]
    assert [t["name"] for t in scanner["scan_types"] if t["default"]] == ["inventory"]
