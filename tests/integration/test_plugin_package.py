"""The third-party plugin package: installed with pip it scans like a built-in; removed, gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import DEBIAN, Atomicscan, podman

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "atomicscan-inventory-extra"
IMAGE = "localhost/atomicscan/inventory-extra:latest"


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                   check=True, capture_output=True, timeout=600)


def test_plugin_installs_scans_and_uninstalls(tmp_path: Path) -> None:
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        podman("build", "--network", "host", "-t", IMAGE, str(PLUGIN / "scanner"))
    scan = Atomicscan(tmp_path, "podman")
    assert "inventory-extra" not in scan("--list").stdout
    _pip("install", "--no-deps", str(PLUGIN))
    try:
        listed = scan("--list", "--json").json()
        assert "inventory-extra" in [s["name"] for s in listed["scanners"]]
        plugins = scan("plugins", "--json").json()
        (entry,) = [p for p in plugins["plugins"] if p["name"] == "inventory-extra"]
        assert entry["version"] == "0.1.0"

        # Its output format is listed and documented like the built-in ones...
        assert "runtimes-csv" in [f["name"] for f in listed["formats"]]
        assert "runtimes-csv" in " ".join(scan("--help").stdout.split())
        csv_file = tmp_path / "runtimes.csv"
        run = scan("--scanner", "inventory-extra", "--json", "-o", f"runtimes-csv={csv_file}",
                   DEBIAN)
        assert run.returncode == 0, run.stderr
        (result,) = run.json()["results"]
        assert result["successful"] is True
        assert any("glibc" in note for note in result["notes"])
        # ...and writes what it promises: one row per libc and runtime found.
        rows = csv_file.read_text().splitlines()
        assert rows[0] == "target,target_id,kind,name,version,path"
        assert any(row.startswith(f"{DEBIAN},") and ",libc,glibc," in row for row in rows)
        # Its phrase reaches the summary line through atomicscan_describe_result.
        human = scan("--scanner", "inventory-extra", DEBIAN)
        assert "glibc" in human.stdout.splitlines()[0], human.stdout

        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", str(PLUGIN / "tests")],
                               capture_output=True, text=True, env=scan.env, check=False,
                               cwd=PLUGIN, timeout=900)
        assert tests.returncode == 0, tests.stdout[-3000:]
    finally:
        _pip("uninstall", "-y", "atomicscan-inventory-extra")
    assert "inventory-extra" not in scan("--list").stdout
