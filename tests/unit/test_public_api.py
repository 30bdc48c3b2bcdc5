"""The public API for plugin authors is `atomicscan`; docs and plugins import nothing else."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import atomicscan
from atomicscan.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
#: The modules a plugin or a doc may import: the package itself and its pytest plugin.
PUBLIC_MODULES = frozenset({"atomicscan", "atomicscan.testing"})
_IMPORT = re.compile(
    r"^\s*(?:from\s+(atomicscan(?:\.\w+)*)\s+import|import\s+(atomicscan(?:\.\w+)*))",
    re.MULTILINE)
_CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def private_imports(code: str) -> list[str]:
    """Each module of atomicscan that ``code`` imports and plugin authors may not."""
    modules = (match.group(1) or match.group(2) for match in _IMPORT.finditer(code))
    return [module for module in modules if module not in PUBLIC_MODULES]


def _docs() -> list[Path]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return docs + sorted(path for path in (ROOT / "plugins").rglob("README.md")
                         if "build" not in path.relative_to(ROOT / "plugins").parts)


def _plugin_sources() -> list[Path]:
    package = ROOT / "plugins" / "atomicscan-inventory-extra"
    return sorted(path for path in package.rglob("*.py")
                  if not {"build", "atomicscan_inventory_extra.egg-info"} & set(
                      path.relative_to(package).parts))


def test_the_checker_finds_private_imports() -> None:
    code = ("from atomicscan import Scanner\nimport atomicscan\nfrom atomicscan.testing import X\n"
            "from atomicscan.scanners import Scanner\n    import atomicscan.results as r\n")
    assert private_imports(code) == ["atomicscan.scanners", "atomicscan.results"]


@pytest.mark.parametrize("doc", _docs(), ids=lambda path: str(path.relative_to(ROOT)))
def test_docs_import_only_the_public_api(doc: Path) -> None:
    blocks = _CODE_BLOCK.findall(doc.read_text())
    found = [module for block in blocks for module in private_imports(block)]
    assert found == [], f"{doc.relative_to(ROOT)} imports internals; use `from atomicscan import`"


def test_the_plugin_package_imports_only_the_public_api() -> None:
    sources = _plugin_sources()
    assert any(path.name == "plugin.py" for path in sources)
    found = {str(path.relative_to(ROOT)): private_imports(path.read_text()) for path in sources}
    assert {path: modules for path, modules in found.items() if modules} == {}


def test_every_public_name_resolves_to_its_definition() -> None:
    assert sorted(atomicscan.__all__) == atomicscan.__all__
    exported = set(atomicscan.__all__) - {"__version__"}
    assert exported == set(atomicscan._EXPORTS)
    for name, module in atomicscan._EXPORTS.items():
        assert getattr(atomicscan, name) is getattr(importlib.import_module(module), name), name
        assert name in dir(atomicscan)
    with pytest.raises(AttributeError, match="no attribute 'internals'"):
        _ = atomicscan.internals  # type: ignore[attr-defined]


def test_what_the_builtins_and_the_tutorial_use_is_public() -> None:
    for name in ("hookimpl", "Scanner", "ScanType", "ScanResult", "Finding", "Package", "Report",
                 "Runtime", "Target", "ScannerRegistry", "RuntimeRegistry", "ScannerContainer",
                 "Bind", "AtomicscanError", "ExitCode"):
        assert name in atomicscan.__all__, name


def test_importing_the_package_stays_cheap() -> None:
    # The CLI imports the package first; the public names load on first use.
    code = ("import sys, atomicscan\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('atomicscan', 'pluggy', 'yaml')))\n"
            "from atomicscan import hookimpl, Scanner\n"
            "print('pluggy' in sys.modules, 'atomicscan.scanners' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.splitlines() == ["['atomicscan']", "True True"]


def test_exit_codes() -> None:
    assert {code.name: code.value for code in ExitCode} == {
        "OK": 0, "SCAN_FAILED": 1, "USAGE": 2, "POLICY": 3, "INTERRUPTED": 130}
    assert atomicscan.ExitCode is ExitCode
