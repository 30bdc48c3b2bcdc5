"""The command line's contract that needs no runtime (fast tier)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"ATOMICSCAN_CONFIG_DIR": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "atomicscan", *args], capture_output=True,
                          text=True, env=env, check=False, timeout=60)


def test_help_teaches_examples_and_exit_codes(tmp_path: Path) -> None:
    run = _run("--help", tmp_path=tmp_path)
    assert run.returncode == 0
    for text in ("--scanner", "--scan-type", "--scanner-args", "--output-dir", "--json",
                 "--rootfs", "--list", "Exit codes", "130", "Examples"):
        assert text in run.stdout


def test_list_json(tmp_path: Path) -> None:
    run = _run("--list", "--json", tmp_path=tmp_path)
    assert run.returncode == 0
    names = [s["name"] for s in json.loads(run.stdout)["scanners"]]
    assert "packages" in names and names == sorted(names)


@pytest.mark.parametrize("args", [["--bogus"], ["--runtime", "rkt", "x"],
                                  ["--scanner-args", "=1", "x"]])
def test_usage_errors_are_one_line_exit_2(tmp_path: Path, args: list[str]) -> None:
    run = _run(*args, tmp_path=tmp_path)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith("atomicscan: error:")
    assert "Traceback" not in run.stderr


def test_version(tmp_path: Path) -> None:
    run = _run("--version", tmp_path=tmp_path)
    assert run.returncode == 0 and "0.1.0" in run.stdout


def test_no_usable_runtime_says_what_was_tried(tmp_path: Path) -> None:
    env = {"ATOMICSCAN_CONFIG_DIR": str(tmp_path / "none"), "PATH": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "atomicscan", "--scanner", "packages", "img"],
                         capture_output=True, text=True, env=env, check=False, timeout=60)
    if run.returncode == 1 and "needs root" in run.stderr:
        pytest.skip("the runtime checks run as root only")
    assert run.returncode == 1
    line = run.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "no container runtime is usable" in line
    assert "podman: binary not found" in line and "docker" in line


def test_plugins_command_lists_builtins_with_hooks(tmp_path: Path) -> None:
    run = _run("plugins", "--json", tmp_path=tmp_path)
    assert run.returncode == 0
    listed = {p["name"]: p for p in json.loads(run.stdout)["plugins"]}
    assert listed["atomicscan.builtin.merge"]["hooks"] == ["atomicscan_merge_results"]
    assert listed["atomicscan.builtin.podman"]["version"] == "0.1.0"
