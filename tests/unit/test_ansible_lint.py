"""The Ansible role and playbooks: ansible-lint's production profile, offline, and syntax."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "deploy" / "ansible"
ROLE = ANSIBLE / "roles" / "atomicscan"
PLAYBOOKS = ("site.yml", "scan.yml", "remove.yml")
BIN = Path(sys.executable).parent


def _env(tmp_path: Path) -> dict[str, str]:
    # ansible keeps its caches under ANSIBLE_HOME: in the test's directory, not root's home
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "ANSIBLE_HOME": str(tmp_path / "ansible-home"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "NO_COLOR": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_ansible_lint_production_profile_is_clean(tmp_path: Path) -> None:
    done = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--profile", "production",
                           "--nocolor"], cwd=ANSIBLE, capture_output=True, text=True,
                          env=_env(tmp_path), timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"Profile 'production' was required, and it passed", output), output
    counted = re.search(r"in (\d+) files processed", output)
    assert counted and int(counted.group(1)) >= 10, output  # the role and playbooks were read


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax(tmp_path: Path, playbook: str) -> None:
    done = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                           playbook], cwd=ANSIBLE, capture_output=True, text=True,
                          env=_env(tmp_path), timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_role_variable_is_documented() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    doc = (ROOT / "docs" / "fleet.md").read_text()
    missing = [name for name in defaults if f"`{name}`" not in doc]
    assert missing == []


def test_placement_variables_exist_for_temporary_installs() -> None:
    """Prefix, config dir and unit dir are variables, so a test can install into temp dirs."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["atomicscan_prefix"] == "/opt/atomicscan"
    assert defaults["atomicscan_config_dir"] == "/etc/atomicscan"
    assert defaults["atomicscan_unit_dir"] == "/etc/systemd/system"
    assert defaults["atomicscan_timer_enabled"] is True
