"""Scanner definition files and the scanner registry (fast tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from atomicscan.errors import DuplicateScannerError, UnknownScannerError
from atomicscan.scanners import DefinitionError, ScannerRegistry, load_definition

GOOD = """
type = "scanner"
scanner_name = "demo"
image_name = "localhost/demo:latest"
default_scan = "b"

[[scans]]
name = "a"
args = ["run", "a"]

[[scans]]
name = "b"
args = ["run", "b"]
description = "the b scan"

[isolation]
capabilities = ["CAP_SYS_CHROOT"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "demo.toml"
    path.write_text(text)
    return path


def test_good_definition(tmp_path: Path) -> None:
    scanner = load_definition(_write(tmp_path, GOOD))
    assert scanner.name == "demo"
    assert scanner.scan_type(None).args == ("run", "b")
    assert scanner.capabilities == ("SYS_CHROOT",)
    with pytest.raises(UnknownScannerError, match="offers: a, b"):
        scanner.scan_type("c")


@pytest.mark.parametrize(("change", "message"), [
    (('capabilities = ["CAP_SYS_CHROOT"]', 'capabilities = ["SYS_ADMIN"]'), "SYS_ADMIN"),
    (('capabilities = ["CAP_SYS_CHROOT"]', 'capabilities = ["SYS_CHROOT", "DAC_READ_SEARCH"]'),
     "one capability"),
    (('[isolation]', '[isolation]\nprivileged = true'), "privileged"),
    (('default_scan = "b"', 'default_scan = "z"'), "default_scan"),
    (('image_name = "localhost/demo:latest"', ''), "image_name"),
    (('args = ["run", "a"]', 'args = "run a"'), "list of strings"),
    (('scanner_name = "demo"', 'scanner_name = "demo'), "not valid TOML"),
])
def test_bad_definitions_name_the_file_and_the_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(DefinitionError) as caught:
        load_definition(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_registry_rejects_duplicates_and_names_both_origins(tmp_path: Path) -> None:
    registry = ScannerRegistry()
    registry.add(load_definition(_write(tmp_path, GOOD)))
    with pytest.raises(DuplicateScannerError, match="defined twice"):
        registry.add(load_definition(_write(tmp_path, GOOD)))
    with pytest.raises(UnknownScannerError, match="installed scanners: demo"):
        registry.get("other")


def test_builtin_packages_definition_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    scanner = load_definition(root / "scanners" / "packages" / "scanner.toml")
    assert scanner.name == "packages"
    assert scanner.default_scan in scanner.scan_types
    assert scanner.capabilities == ()


ATOMIC_RPM_VERIFY = """\
type: scanner
scanner_name: rpm-verify
image_name: registry.example.org/scanner-rpm-verify
default_scan: rpm-verify
scans: [
  { name: rpm-verify,
    args: ["python", "rpm_verify.py"],
    description: "Verify installed RPMs"
  }
]
"""

ATOMIC_OPENSCAP = """\
type: scanner
scanner_name: oscap-old
image_name: openscap
default_scan: cve
custom_args: ['-v', '/etc/oscapd:/etc/oscapd:ro']
scans: [
  { name: cve,
    args: ['oscapd-evaluate', 'scan', '--targets', 'chroots-in-dir:///scanin',
           '--output', '/scanout'],
    description: "Performs a CVE scan based on known CVE data"},
  { name: standards_compliance,
    args: ['oscapd-evaluate', 'scan', '--no-cve-scan'],
    description: "Performs a standard scan"}
]
"""


def test_atomic_scan_files_are_accepted_as_they_are(tmp_path: Path) -> None:
    plain = tmp_path / "rpm-verify"
    plain.write_text(ATOMIC_RPM_VERIFY)
    scanner = load_definition(plain)
    assert scanner.name == "rpm-verify"
    assert scanner.scan_type(None).args == ("python", "rpm_verify.py")
    old = tmp_path / "openscap"
    old.write_text(ATOMIC_OPENSCAP)
    scanner = load_definition(old)
    assert scanner.default_scan == "cve"
    assert scanner.host_mounts == (("/etc/oscapd", "/etc/oscapd"),)
    assert set(scanner.scan_types) == {"cve", "standards_compliance"}


@pytest.mark.parametrize(("custom_args", "message"), [
    ("['--privileged']", "'--privileged' is refused"),
    ("['--net=host']", "'--net=host' is refused"),
    ("['--pid', 'host']", "'--pid' is refused"),
    ("['--ipc=host']", "'--ipc=host' is refused"),
    ("['-v', '/etc:/hostetc']", "only mounted read-only"),
    ("['-v', '/var/run/docker.sock:/var/run/docker.sock:ro']", "runtime socket"),
    ("['-v', '/run/podman/podman.sock:/s:ro']", "runtime socket"),
    ("['-v', '/:/host:ro']", "whole host"),
    ("['--cap-add', 'SYS_ADMIN']", "SYS_ADMIN is not allowed"),
])
def test_unsafe_requests_in_atomic_files_are_refused(
    tmp_path: Path, custom_args: str, message: str
) -> None:
    path = tmp_path / "bad"
    path.write_text(ATOMIC_RPM_VERIFY + f"custom_args: {custom_args}\n")
    with pytest.raises(DefinitionError) as caught:
        load_definition(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize("key", ["privileged", "network", "pid", "ipc", "volumes"])
def test_isolation_requests_beyond_capabilities_are_refused(tmp_path: Path, key: str) -> None:
    path = _write(tmp_path, GOOD.replace("[isolation]", f"[isolation]\n{key} = true"))
    with pytest.raises(DefinitionError, match=f"isolation.{key}: refused"):
        load_definition(path)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken"
    path.write_text("type: scanner\nscanner_name: x\nscans: [\n  { name: a,\n    args: [\n")
    with pytest.raises(DefinitionError) as caught:
        load_definition(path)
    assert str(path) in str(caught.value) and "line " in str(caught.value)


def test_one_bad_file_does_not_hide_the_others(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from atomicscan.plugins import Plugins

    (tmp_path / "rpm-verify").write_text(ATOMIC_RPM_VERIFY)
    (tmp_path / "broken.toml").write_text("scanner_name = \n")
    (tmp_path / "rpm-verify.rpmsave").write_text("garbage")
    monkeypatch.setenv("ATOMICSCAN_CONFIG_DIR", str(tmp_path))
    names = Plugins.load(entry_points=False).scanners.names()
    assert "rpm-verify" in names and "packages" in names
