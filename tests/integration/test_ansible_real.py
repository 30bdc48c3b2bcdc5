"""The Ansible role for real against this machine (``-c local``): it installs atomicscan
into temporary places, a scan through the scan playbook records into the history and its
report is fetched, a second run changes nothing, and the removal playbook leaves nothing
of ours behind. The timer is not enabled (systemd may not be PID 1 here, and an enabled
timer must not outlive the test)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_run import playbook, read_json, remove_leftovers, snapshot_source
from helpers import ALPINE, image_id, mounted_image, podman, podman_env
from truth import apk_packages

SCANNER_IMAGES = ("localhost/atomicscan/packages:latest",)


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    base = tmp_path / "host"
    return {"prefix": base / "opt-atomicscan", "config": base / "etc-atomicscan",
            "units": base / "systemd-system", "bin": base / "usr-local-bin",
            "data": base / "var-lib-atomicscan"}


def test_role_installs_scans_is_idempotent_and_removes_everything(
        tmp_path: Path, places: dict[str, Path]) -> None:
    source = snapshot_source(tmp_path / "source")
    db_path = places["data"] / "history.db"
    fetched = tmp_path / "fetched"
    variables = {
        "atomicscan_prefix": str(places["prefix"]),
        "atomicscan_config_dir": str(places["config"]),
        "atomicscan_unit_dir": str(places["units"]),
        "atomicscan_bin_dir": str(places["bin"]),
        "atomicscan_timer_enabled": False,
        "atomicscan_scanners": ["packages"],
        # one small image, with podman only: the private test dockerd is not this host's
        "atomicscan_targets": [ALPINE],
        "atomicscan_options": ["--runtime", "podman", "--output-dir",
                               str(places["data"] / "results")],
        "atomicscan_report_dir": str(places["data"] / "host-scan"),
        "atomicscan_hostname": "ansible-host",
        "atomicscan_db_url": f"sqlite:///{db_path}",
        "atomicscan_fetch_dir": str(fetched),
    }
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(variables))
    common = ("-i", "localhost,", "-c", "local", "-e", f"@{vars_file}")
    images_before = {name: image_id(name) for name in SCANNER_IMAGES}
    places["bin"].mkdir(parents=True)
    places["units"].mkdir(parents=True)
    try:
        first, totals = playbook(source, "site.yml", tmp_path, *common)
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
        assert totals["changed"] > 0 and totals["failed"] == 0

        # what the role installed: a non-editable atomicscan that finds its scanners
        prefix = places["prefix"]
        package = next((prefix / "venv" / "lib").glob("python3*/site-packages/atomicscan"))
        assert (package / "__init__.py").is_file()
        listed = subprocess.run([str(places["bin"] / "atomicscan"), "--list", "--json"],
                                capture_output=True, text=True, env=podman_env(), timeout=120,
                                check=True)
        assert "packages" in [s["name"] for s in json.loads(listed.stdout)["scanners"]]
        db_url = places["config"] / "db-url"
        assert stat.S_IMODE(db_url.stat().st_mode) == 0o600
        assert db_url.read_text().strip() == f"sqlite:///{db_path}"
        service = (places["units"] / "atomicscan.service").read_text()
        assert f"ExecStart={prefix}/bin/atomicscan-host-scan --config-dir {places['config']}" \
            in service
        assert "sqlite" not in service
        verified = subprocess.run(
            ["systemd-analyze", "verify", str(places["units"] / "atomicscan.service"),
             str(places["units"] / "atomicscan.timer")],
            capture_output=True, text=True, timeout=120, check=False)
        assert verified.returncode == 0, verified.stderr

        # an ad-hoc scan across the inventory, each host's report fetched
        scan, totals = playbook(source, "scan.yml", tmp_path, *common)
        assert scan.returncode == 0, scan.stdout[-4000:] + scan.stderr[-2000:]
        report = read_json(fetched / "localhost" / "packages.json")
        assert report["host"]["hostname"] == "ansible-host"
        (result,) = report["results"]
        assert result["target"] == ALPINE and result["successful"]
        with mounted_image(ALPINE) as rootfs:
            truth = apk_packages(rootfs)
        assert sorted((p["name"], p["version"], p["architecture"])
                      for p in result["packages"]) == truth
        runs = subprocess.run([sys.executable, "-m", "atomicscan", "history", "runs", "--json",
                               "--db", f"sqlite:///{db_path}"],
                              capture_output=True, text=True, timeout=120, check=True)
        assert "ansible-host" in runs.stdout and report["run_id"] in runs.stdout

        again, totals = playbook(source, "site.yml", tmp_path, *common)
        assert again.returncode == 0, again.stdout[-4000:]
        assert totals["changed"] == 0, again.stdout[-6000:]
        assert totals["ok"] > 0

        removal, totals = playbook(source, "remove.yml", tmp_path, *common)
        assert removal.returncode == 0, removal.stdout[-4000:] + removal.stderr[-2000:]
        assert totals["changed"] > 0
        assert not prefix.exists()
        assert not places["config"].exists()
        assert list(places["units"].iterdir()) == []
        assert list(places["bin"].iterdir()) == []
        # the scanner images were there before: the role found them up to date and left them
        assert {name: image_id(name) for name in SCANNER_IMAGES} == images_before
        assert podman("image", "exists", SCANNER_IMAGES[0], check=False).returncode == 0
    finally:
        remove_leftovers(source, places)
