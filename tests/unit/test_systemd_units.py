"""The shipped systemd units and the scan script they run (fast tier: no root, no podman).

The units are checked by systemd's own parser (``systemd-analyze verify``) as scripts/install
writes them: the directories substituted, the timer's schedule drop-in linked from the
configuration directory. atomicscan-host-scan runs against a fake atomicscan that records
how it was called.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import jinja2
import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
HOST_SCAN = SYSTEMD / "atomicscan-host-scan"
ROLE = ROOT / "deploy" / "ansible" / "roles" / "atomicscan"
FLEET_DOC = ROOT / "docs" / "fleet.md"

#: Directives that would put the scan in a mount namespace of its own, or take from podman
#: and runc what they need (docs/fleet.md says why for each): none may creep in.
LEFT_OUT = ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
            "ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "ProtectKernelTunables",
            "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc",
            "ProtectClock", "ProtectHostname", "RestrictNamespaces", "CapabilityBoundingSet",
            "PrivateNetwork", "IPAddressDeny", "MemoryDenyWriteExecute", "SystemCallFilter",
            "DynamicUser", "PrivateUsers", "RestrictSUIDSGID")
#: The hardening the service does use; each one is explained in docs/fleet.md.
HARDENING = ("NoNewPrivileges", "LockPersonality", "RestrictRealtime",
             "SystemCallArchitectures", "RestrictAddressFamilies", "UMask")

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze not installed (package systemd)")


def _service_settings(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return dict(parser["Service"])


def _installed(tmp_path: Path, schedule: str | None = None) -> tuple[Path, Path]:
    """The units as scripts/install writes them, with their ExecStart faked in a temp prefix.
    Returns the unit directory and the configuration directory."""
    prefix, config, units = tmp_path / "prefix", tmp_path / "etc", tmp_path / "units"
    for directory in (prefix / "bin", config, units / "atomicscan.timer.d"):
        directory.mkdir(parents=True)
    fake = prefix / "bin" / "atomicscan-host-scan"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    for name in ("atomicscan.service", "atomicscan.timer"):
        text = (SYSTEMD / name).read_text()
        text = text.replace("/opt/atomicscan", str(prefix)).replace("/etc/atomicscan", str(config))
        (units / name).write_text(text)
    (config / "schedule.conf").write_text(schedule or (SYSTEMD / "schedule.conf").read_text())
    (units / "atomicscan.timer.d" / "schedule.conf").symlink_to(config / "schedule.conf")
    return units, config


def _verify(units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", str(units / "atomicscan.service"),
                           str(units / "atomicscan.timer")],
                          capture_output=True, text=True, timeout=120, check=False)


@needs_analyze
def test_installed_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units, _ = _installed(tmp_path)
    verified = _verify(units)
    assert verified.returncode == 0, verified.stderr
    # verify only warns about unknown keys and ignored values: there must be none of ours
    assert str(units) not in verified.stderr
    assert "atomicscan" not in verified.stderr


@needs_analyze
def test_verify_reads_the_schedule_drop_in_from_the_config_dir(tmp_path: Path) -> None:
    """The check above is worth something: a broken schedule in /etc/atomicscan fails it."""
    units, _ = _installed(tmp_path, "[Timer]\nOnCalendar=\nOnCalendar=not-a-day\n")
    verified = _verify(units)
    assert verified.returncode != 0
    assert "not-a-day" in verified.stderr


@needs_analyze
def test_ansible_schedule_template_renders_a_valid_drop_in(tmp_path: Path) -> None:
    template = jinja2.Template((ROLE / "templates" / "schedule.conf.j2").read_text())
    text = template.render(ansible_managed="managed by Ansible",
                           atomicscan_schedule="Mon..Fri *-*-* 03:00",
                           atomicscan_randomized_delay="30min")
    units, _ = _installed(tmp_path, text)
    verified = _verify(units)
    assert verified.returncode == 0, verified.stderr
    assert "atomicscan" not in verified.stderr


@needs_analyze
def test_shipped_unit_names_a_missing_program_and_verify_says_so(tmp_path: Path) -> None:
    """Without the install (or a fake), verify fails: the tests above really check ExecStart."""
    units = tmp_path / "units"
    units.mkdir()
    text = (SYSTEMD / "atomicscan.service").read_text()
    (units / "atomicscan.service").write_text(text.replace("/opt/atomicscan",
                                                           str(tmp_path / "nowhere")))
    verified = subprocess.run(["systemd-analyze", "verify", str(units / "atomicscan.service")],
                              capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode != 0
    assert "nowhere" in verified.stderr


def test_service_takes_its_settings_from_the_config_dir_not_the_unit() -> None:
    settings = _service_settings(SYSTEMD / "atomicscan.service")
    assert settings["Type"] == "oneshot"
    assert settings["ExecStart"] == ("/opt/atomicscan/bin/atomicscan-host-scan "
                                     "--config-dir /etc/atomicscan")
    text = (SYSTEMD / "atomicscan.service").read_text()
    assert not re.search(r"(?m)^\s*(Environment|EnvironmentFile)\s*=", text)
    assert "postgresql://" not in text and "sqlite:" not in text
    assert settings["KillMode"] == "mixed"  # SIGTERM to atomicscan alone: it cleans up


def test_hardening_is_the_documented_set() -> None:
    settings = _service_settings(SYSTEMD / "atomicscan.service")
    assert {name for name in settings if name in LEFT_OUT} == set()
    assert set(HARDENING) <= set(settings)
    assert settings["NoNewPrivileges"] == "yes"
    doc = FLEET_DOC.read_text()
    for name in (*HARDENING, *LEFT_OUT):
        assert f"`{name}" in doc, f"docs/fleet.md does not explain {name}"


def test_timer_is_persistent_and_spread_out() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(SYSTEMD / "atomicscan.timer")
    assert parser["Timer"]["Persistent"] == "true"
    assert parser["Timer"]["RandomizedDelaySec"]
    assert parser["Install"]["WantedBy"] == "timers.target"


# ---------------------------------------------------------------- atomicscan-host-scan

FAKE_ATOMICSCAN = """#!/bin/sh
# Records its arguments and the environment it was given, one JSON line per call.
python3 - "$@" <<'PY'
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"argv": args, "db": os.environ.get("ATOMICSCAN_DB"),
                          "host": os.environ.get("ATOMICSCAN_HOSTNAME")}) + "\\n")
out = next(a.split("=", 1)[1] for a in args if a.startswith("json="))
scanner = args[args.index("--scanner") + 1]
with open(out, "w") as report:
    json.dump({"scanner": scanner}, report)
sys.exit(int(os.environ.get("FAKE_EXIT_" + scanner, "0")))
PY
"""


def _host_scan_env(tmp_path: Path) -> dict[str, str]:
    fake = tmp_path / "fake-atomicscan"
    fake.write_text(FAKE_ATOMICSCAN)
    fake.chmod(0o755)
    return {"PATH": os.environ["PATH"], "ATOMICSCAN_COMMAND": str(fake),
            "FAKE_LOG": str(tmp_path / "calls.jsonl"), "ATOMICSCAN_DB": "sqlite:////wrong.db"}


def _config(tmp_path: Path, scan_env: str, db_url: str | None = None) -> Path:
    config = tmp_path / "etc"
    config.mkdir(exist_ok=True)
    (config / "scan.env").write_text(scan_env)
    if db_url is not None:
        (config / "db-url").write_text(db_url + "\n")
        (config / "db-url").chmod(0o600)
    return config


def _run_host_scan(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HOST_SCAN), "--config-dir", str(config)], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def _calls(tmp_path: Path) -> list[dict[str, object]]:
    log = tmp_path / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_host_scan_runs_each_scanner_with_the_configured_targets(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    config = _config(tmp_path, f"""# comment
SCANNERS="packages configlint"
TARGETS='--images web:1'
OPTIONS="--runtime podman --keep 3"
HOSTNAME="web01"
REPORT_DIR="{reports}"
""", db_url="postgresql://scan:s3cret@db.example/atomicscan")
    done = _run_host_scan(config, _host_scan_env(tmp_path))
    assert done.returncode == 0, done.stderr
    calls = _calls(tmp_path)
    assert [call["argv"] for call in calls] == [
        ["--scanner", scanner, "-o", f"json={reports}/{scanner}.json.new",
         "--runtime", "podman", "--keep", "3", "--images", "web:1"]
        for scanner in ("packages", "configlint")]
    # the URL from the root-only file wins over the environment, and never is an argument
    assert {call["db"] for call in calls} == {"postgresql://scan:s3cret@db.example/atomicscan"}
    assert {call["host"] for call in calls} == {"web01"}
    assert "s3cret" not in done.stdout + done.stderr
    assert sorted(path.name for path in reports.iterdir()) == ["configlint.json",
                                                               "packages.json"]
    assert json.loads((reports / "packages.json").read_text()) == {"scanner": "packages"}
    assert stat.S_IMODE(reports.stat().st_mode) == 0o700


def test_host_scan_reads_its_config_as_data_never_as_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    config = _config(tmp_path, f"""SCANNERS="packages"
TARGETS="$(touch {marker}) `touch {marker}`;touch {marker}"
REPORT_DIR="{tmp_path / 'reports'}"
""")
    done = _run_host_scan(config, _host_scan_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    argv = _calls(tmp_path)[0]["argv"]
    assert isinstance(argv, list)
    assert f"$(touch {marker})" in " ".join(argv)


@pytest.mark.parametrize(("scan_env", "message"), [
    ("SCANNERS=packages\nEXTRA=1\n", "unknown setting EXTRA"),
    ("SCANNERS=packages\nthis is not a setting\n", "not KEY=VALUE"),
    ('SCANNERS=""\n', "SCANNERS is empty"),
    ('SCANNERS="../../etc"\n', "not a scanner name"),
    ('SCANNERS=packages\nREPORT_DIR="relative/dir"\n', "absolute path"),
])
def test_host_scan_refuses_a_bad_config_with_exit_2(tmp_path: Path, scan_env: str,
                                                    message: str) -> None:
    if "REPORT_DIR" not in scan_env:  # never the default under /var/lib
        scan_env += f'REPORT_DIR="{tmp_path / "reports"}"\n'
    config = _config(tmp_path, scan_env)
    env = _host_scan_env(tmp_path)
    done = _run_host_scan(config, env)
    assert done.returncode == 2
    assert message in done.stderr
    assert _calls(tmp_path) == []


def test_host_scan_without_config_exits_2(tmp_path: Path) -> None:
    done = _run_host_scan(tmp_path / "missing", _host_scan_env(tmp_path))
    assert done.returncode == 2
    assert "scan.env" in done.stderr


def test_host_scan_goes_on_after_a_failure_and_reports_the_first(tmp_path: Path) -> None:
    config = _config(tmp_path, f'SCANNERS="a b c"\nREPORT_DIR="{tmp_path / "r"}"\n')
    env = _host_scan_env(tmp_path) | {"FAKE_EXIT_a": "3", "FAKE_EXIT_b": "1"}
    done = _run_host_scan(config, env)
    assert done.returncode == 3
    assert len(_calls(tmp_path)) == 3


SLOW_ATOMICSCAN = """#!/bin/sh
trap 'echo "$$" > "$STOPPED"; exit 130' TERM
echo ready > "$READY"
while :; do sleep 0.1; done
"""


def test_host_scan_passes_sigterm_to_atomicscan_and_exits_130(tmp_path: Path) -> None:
    """systemctl stop (KillMode=mixed) signals the script alone: atomicscan must hear it."""
    slow = tmp_path / "slow-atomicscan"
    slow.write_text(SLOW_ATOMICSCAN)
    slow.chmod(0o755)
    ready, stopped = tmp_path / "ready", tmp_path / "stopped"
    config = _config(tmp_path, f'SCANNERS="a b"\nREPORT_DIR="{tmp_path / "r"}"\n')
    env = {"PATH": os.environ["PATH"], "ATOMICSCAN_COMMAND": str(slow),
           "READY": str(ready), "STOPPED": str(stopped)}
    process = subprocess.Popen([str(HOST_SCAN), "--config-dir", str(config)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the fake atomicscan never started"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert stopped.exists()  # atomicscan got SIGTERM ...
    assert "stopped by a signal" in stderr  # ... and scanner b never started


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_scripts_pass_shellcheck() -> None:
    done = subprocess.run(["shellcheck", str(HOST_SCAN), str(ROOT / "scripts" / "install")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout
