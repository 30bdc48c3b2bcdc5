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
