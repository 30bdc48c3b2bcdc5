"""The fleet question end to end: three hosts, set up by the Ansible playbook with their own
host names, scan and record into one throwaway PostgreSQL; one history query answers for
all three. The "hosts" are this machine three times (``ansible_connection=local``), each
with its own configuration. The playbook runs with ``--skip-tags atomicscan_install`` on a
prefix holding this checkout's atomicscan and scan script: test_ansible_real.py tests the
install itself, and a pip install per test would make this one slow."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import ALPINE, podman_env

# The same helpers as test_ansible_real.py (test modules don't import each other).
ROOT = Path(__file__).resolve().parents[2]
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


HOSTS = ("host-a", "host-b", "host-c")


def _inventory(tmp_path: Path, source: Path, pg_url: str
               ) -> tuple[Path, dict[str, dict[str, Path]]]:
    base = tmp_path / "fleet"
    prefix, bin_dir = base / "opt-atomicscan", base / "usr-local-bin"
    bin_dir.mkdir(parents=True)
    (prefix / "bin").mkdir(parents=True)
    shutil.copy2(source / "deploy" / "systemd" / "atomicscan-host-scan", prefix / "bin")
    (prefix / "bin" / "atomicscan").symlink_to(BIN / "atomicscan")
    places: dict[str, dict[str, Path]] = {}
    inventory: dict[str, object] = {"all": {"hosts": {}, "vars": {
        "ansible_connection": "local",
        "atomicscan_prefix": str(prefix),
        "atomicscan_bin_dir": str(bin_dir),
        "atomicscan_timer_enabled": False,
        "atomicscan_scanners": ["packages"],
        "atomicscan_targets": [ALPINE],
        "atomicscan_db_url": pg_url,
        "atomicscan_fetch_dir": str(tmp_path / "fetched"),
    }}}
    hosts: dict[str, object] = {}
    for host in HOSTS:
        own = {"prefix": prefix, "bin": bin_dir, "config": base / host / "etc",
               "units": base / host / "units", "data": base / host / "data"}
        own["units"].mkdir(parents=True)
        places[host] = own
        hosts[host] = {
            "atomicscan_hostname": host,
            "atomicscan_config_dir": str(own["config"]),
            "atomicscan_unit_dir": str(own["units"]),
            "atomicscan_report_dir": str(own["data"] / "host-scan"),
            "atomicscan_options": ["--runtime", "podman", "--output-dir",
                                   str(own["data"] / "results")],
        }
    inventory["all"] = {**inventory["all"], "hosts": hosts}  # type: ignore[dict-item]
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inventory))
    return path, places


def test_three_hosts_one_history_one_answer(tmp_path: Path, pg_url: str) -> None:
    source = snapshot_source(tmp_path / "source")
    inventory, places = _inventory(tmp_path, source, pg_url)
    common = ("-i", str(inventory))
    try:
        setup, totals = playbook(source, "site.yml", tmp_path, *common, "--forks", "3",
                                 "--skip-tags", "atomicscan_install")
        assert setup.returncode == 0, setup.stdout[-4000:] + setup.stderr[-2000:]
        assert totals["failed"] == 0
        # one host after the other: three scans of one image at once would only test
        # podman's image mounts
        scan, totals = playbook(source, "scan.yml", tmp_path, *common, "--forks", "1")
        assert scan.returncode == 0, scan.stdout[-4000:] + scan.stderr[-2000:]
        for host in HOSTS:
            report = read_json(tmp_path / "fetched" / host / "packages.json")
            assert report["host"]["hostname"] == host
            assert report["results"][0]["successful"]

        asked = subprocess.run([sys.executable, "-m", "atomicscan", "history", "package", "musl",
                                "--json", "--db", pg_url],
                               capture_output=True, text=True, timeout=120, check=False)
        assert asked.returncode == 0, asked.stderr
        answer = json.loads(asked.stdout)
        found = answer["found"]
        assert sorted(row["target"]["host"] for row in found) == list(HOSTS)
        assert {row["target"]["target"] for row in found} == {ALPINE}
        assert {row["version"] for row in found} == {"1.2.4-r2"}  # tests/testbed/README.md

        removal, _ = playbook(source, "remove.yml", tmp_path, *common, "--forks", "3")
        assert removal.returncode == 0, removal.stdout[-4000:]
        for own in places.values():
            assert not own["config"].exists()
            assert list(own["units"].iterdir()) == []
    finally:
        for own in places.values():
            remove_leftovers(source, own)
