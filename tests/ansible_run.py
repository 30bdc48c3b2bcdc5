"""Running the project's Ansible playbooks in tests: a still copy of the checkout, a playbook
run with its PLAY RECAP totals, and removal of whatever a failed run installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import podman_env

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: What the role packs from a checkout (deploy/ansible for the playbooks themselves).
SOURCE_PARTS = ("pyproject.toml", "README.md", "atomicscan", "scanners", "scripts",
                "deploy", "docs")


def snapshot_source(dest: Path) -> Path:
    """A still copy of the checkout: others may edit it while the playbook runs twice."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*_cache", "reports")
    dest.mkdir(parents=True)
    for part in SOURCE_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=ignore, symlinks=True)
        else:
            shutil.copy2(source, dest / part)
    return dest


def playbook(source: Path, name: str, tmp_path: Path, *args: str
             ) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    """Run a playbook of the snapshot; returns the run and the PLAY RECAP totals."""
    env = podman_env() | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                          "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
                          "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
                          "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote-tmp"),
                          "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                          "ANSIBLE_PIPELINING": "1"}
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), *args,
         "-e", "ansible_python_interpreter={{ ansible_playbook_python }}", name],
        cwd=source / "deploy" / "ansible", capture_output=True, text=True, env=env,
        timeout=600, check=False)
    totals = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0}
    for line in done.stdout.splitlines():
        if re.match(r"^\S+\s+:\s+ok=", line):
            for key in totals:
                found = re.search(rf"\b{key}=(\d+)", line)
                totals[key] += int(found.group(1)) if found else 0
    return done, totals


def remove_leftovers(source: Path, places: dict[str, Path]) -> None:
    """Whatever a failed test left: the install script's own removal, then the directories."""
    if (source / "scripts" / "install").exists():
        subprocess.run([str(source / "scripts" / "install"), "--remove",
                        "--prefix", str(places["prefix"]), "--config-dir", str(places["config"]),
                        "--unit-dir", str(places["units"]), "--bin-dir", str(places["bin"])],
                       capture_output=True, text=True, timeout=120, check=False)
    for path in places.values():
        shutil.rmtree(path, ignore_errors=True)


def read_json(path: Path) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{path}: {constant} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)
