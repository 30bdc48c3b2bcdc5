"""The fleet question end to end: three hosts, set up by the Ansible playbook with their own
host names, scan and record into one throwaway PostgreSQL; one history query answers for
all three. The "hosts" are this machine three times (``ansible_connection=local``), each
with its own configuration. The playbook runs with ``--skip-tags atomicscan_install`` on a
prefix holding this checkout's atomicscan and scan script: test_ansible_real.py tests the
install itself, and a pip install per test would make this one slow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ansible_run import BIN, playbook, read_json, remove_leftovers, snapshot_source
from helpers import ALPINE

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
