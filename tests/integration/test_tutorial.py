"""docs/writing-a-scanner.md run as written: part 1's commands, and part 2's plugin code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import DEBIAN, PACKAGES_SCANNER, Atomicscan, podman, podman_env

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-scanner.md"

#: The scanner program part 2's plugin names (the tutorial leaves the image to the reader).
MINE_SCAN = """\
import json, os
for key in sorted(os.listdir("/scanin")):
    root = os.path.join("/scanin", key)
    os.makedirs(os.path.join("/scanout", key))
    release = any(os.path.exists(os.path.join(root, p))
                  for p in ("etc/os-release", "usr/lib/os-release"))
    document = {"Scanner": "mine", "Time": "2026-01-01T00:00:00Z",
                "Finished Time": "2026-01-01T00:00:00Z", "Successful": "true",
                "Scan Type": os.environ["ATOMICSCAN_SCAN_TYPE"], "UUID": key, "Results": [],
                "Custom": {"has_os_release": release,
                           "top": sorted(os.listdir(root))[:3]}}
    with open(os.path.join("/scanout", key, "json"), "w") as out:
        json.dump(document, out)
"""


def _part(number: int) -> str:
    """The text of part ``number`` (``## 1.``, ``## 2.``), up to the next second-level title."""
    match = re.search(rf"^## {number}\.(.*?)(?=^## )", DOC.read_text(), flags=re.S | re.M)
    assert match is not None, f"docs/writing-a-scanner.md lost its part {number}"
    return match.group(1)


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_definition_file_tutorial_runs_as_written(tmp_path: Path) -> None:
    blocks = _blocks(_part(1), "sh")
    assert len(blocks) >= 4, "the tutorial lost its commands"
    env = podman_env()
    env.update({
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        "ATOMICSCAN_CONFIG_DIR": str(tmp_path / "atomicscan.d"),
        "ATOMICSCAN_STATE_DIR": str(tmp_path / "state"),
        "ATOMICSCAN_RESULTS_DIR": str(tmp_path / "results"),
    })
    work = tmp_path / "work"
    work.mkdir()
    outputs: list[str] = []
    try:
        for block in blocks:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=600, check=False)
            assert done.returncode == 0, f"tutorial step failed:\n{block}\n{done.stderr}"
            outputs.append(done.stdout)
        listing = next(out for block, out in zip(blocks, outputs, strict=True)
                       if "atomicscan --list" in block)
        assert re.search(r"^\W*hello\b", listing, flags=re.M), listing
        (result,) = json.loads((work / "hello.json").read_text())["results"]
        assert result["successful"] is True
        assert result["custom"]["has_os_release"] is True
        assert result["custom"]["etc_files"] > 10
        # The last step prints the result's success and custom object, exactly.
        assert outputs[-1].strip() == f"True {result['custom']}"
    finally:
        podman("rmi", "--force", "localhost/hello-scanner:latest", check=False)


def _install_part_two(site: Path) -> tuple[str, str]:
    """Part 2's plugin module, found through an entry point in ``site`` as pip would leave it.

    Returns the entry-point group the tutorial names and the scanner's image. The module is
    the tutorial's Python block as it stands; the group comes from its TOML block.
    """
    part = _part(2)
    (toml_block,) = _blocks(part, "toml")
    python_blocks = _blocks(part, "python")
    assert python_blocks, "part 2 lost its plugin code"
    groups = tomllib.loads(toml_block)["project"]["entry-points"]
    (group,) = groups
    site.mkdir()
    (site / "tutorial_mine_plugin.py").write_text("\n\n".join(python_blocks))
    dist = site / "tutorial_mine_plugin-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tutorial-mine-plugin\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\ntutorial-mine = tutorial_mine_plugin\n")
    image = re.search(r'image="([^"]+)"', "\n".join(python_blocks))
    assert image is not None, "part 2's scanner lost its image"
    return group, image.group(1)


def _run(scan: Atomicscan, site: Path, *args: str,
         **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {**scan.env, "PYTHONPATH": str(site), **extra_env}
    return subprocess.run(scan.argv(*args), capture_output=True, text=True, env=env,
                          timeout=600, check=False)


def test_python_plugin_tutorial_registers_and_scans(tmp_path: Path) -> None:
    site = tmp_path / "site"
    group, image = _install_part_two(site)
    assert group == "atomicscan"
    context = tmp_path / "mine-image"
    context.mkdir()
    (context / "scan.py").write_text(MINE_SCAN)
    (context / "Containerfile").write_text(
        f"FROM {PACKAGES_SCANNER}\nCOPY scan.py /opt/mine/scan.py\nUSER 65534:65534\n")
    podman("build", "--network", "none", "--pull=never", "--quiet", "-t", image, str(context))
    scan = Atomicscan(tmp_path, "podman")
    try:
        listed = _run(scan, site, "--list", "--json")
        assert listed.returncode == 0, listed.stderr
        (mine,) = [s for s in json.loads(listed.stdout)["scanners"] if s["name"] == "mine"]
        assert mine["image"] == image

        plugins = _run(scan, site, "plugins", "--json")
        assert plugins.returncode == 0, plugins.stderr
        assert "tutorial-mine" in [p["name"] for p in json.loads(plugins.stdout)["plugins"]]

        done = _run(scan, site, "--runtime", "podman", "--scanner", "mine", "--json", DEBIAN)
        assert done.returncode == 0, done.stderr
        (result,) = json.loads(done.stdout)["results"]
        assert result["successful"] is True, result
        assert result["scanner"] == "mine" and result["scan_type"] == "scan"
        assert result["custom"]["has_os_release"] is True
        assert result["custom"]["top"] == ["bin", "boot", "dev"]

        # "ATOMICSCAN_BLOCK_PLUGINS=name keeps it from loading", as the tutorial says.
        blocked = _run(scan, site, "--list", "--json", ATOMICSCAN_BLOCK_PLUGINS="tutorial-mine")
        assert blocked.returncode == 0, blocked.stderr
        assert "mine" not in [s["name"] for s in json.loads(blocked.stdout)["scanners"]]
    finally:
        podman("rmi", "--force", image, check=False)


@pytest.mark.parametrize("part", [1, 2])
def test_each_part_has_code_to_run(part: int) -> None:
    assert _blocks(_part(part), "sh" if part == 1 else "python")
