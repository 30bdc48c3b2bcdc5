"""The scanner programs' copied helpers agree: a copy that drifts fails here, not in a scan.

Each scanner program is one self-contained file inside its image, so the helpers every scanner
needs (symlink-safe path resolution inside a target, os-release parsing, writing the json
document) are copied into each. These tests run every copy on the same inputs and require
the same answers, a symlink loop included: every copy raises the same OSError (ELOOP), and
each scanner decides what a loop means for it (its own tests pin that).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = {
    "packages": REPO / "scanners" / "packages" / "inventory.py",
    "openscap": REPO / "scanners" / "openscap" / "oscap_scan.py",
    "configlint": REPO / "scanners" / "configlint" / "configlint.py",
    "inventory-extra": REPO / "plugins" / "atomicscan-inventory-extra" / "scanner"
    / "inspect_extra.py",
}

def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"copies_{name.replace('-', '_')}",
                                                  PROGRAMS[name])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


MODULES = {name: _load(name) for name in PROGRAMS}

Resolver = Callable[[str, str], "str | None"]


def _resolvers() -> dict[str, Resolver]:
    """Each copy as ``(root, relpath) -> target path ("/etc/x") or None``."""
    packages, openscap = MODULES["packages"], MODULES["openscap"]
    configlint, extra = MODULES["configlint"], MODULES["inventory-extra"]

    def inside(root: str, host: str | None) -> str | None:
        if host is None:
            return None
        assert host == root or host.startswith(root + "/"), host  # never outside the root
        return "/" + os.path.relpath(host, root) if host != root else "/"

    def from_extra(root: str, relpath: str) -> str | None:
        canonical = extra.TargetRoot(root).canonical(relpath)
        return None if canonical is None else "/" + canonical

    return {
        "packages": lambda root, rel: inside(root, packages.TargetRoot(root).resolve(rel)),
        "openscap": lambda root, rel: inside(root, openscap.resolve_in_root(root, rel)),
        "configlint": lambda root, rel: inside(root, configlint.resolve_in_root(root, rel)),
        "inventory-extra": from_extra,
    }


RESOLVERS = _resolvers()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A target with every kind of link a hostile image can hold, and a host file beside it."""
    base = tmp_path_factory.mktemp("copies")
    root = base / "root"
    (base / "host-secret").write_text("host\n")
    for directory in ("etc/ssl", "usr/lib", "usr/bin", "var/lib/dpkg", "opt/app"):
        (root / directory).mkdir(parents=True)
    (root / "etc/hostname").write_text("box\n")
    (root / "usr/lib/os-release").write_text("ID=demo\n")
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    (root / "bin").symlink_to("usr/bin")
    (root / "usr/bin/tool").write_text("#!/bin/sh\n")
    links = {
        "etc/absolute": "/usr/lib/os-release",  # absolute: starts again at the root
        "etc/escape": "../../../../../host-secret",  # climbs: stops at the root
        "etc/host": str(base / "host-secret"),  # the host's path, looked up in the target
        "etc/rootlink": "/",
        "etc/dangling": "/nowhere/at/all",
        "etc/loop-a": "loop-b",
        "etc/loop-b": "/etc/loop-a",
        "etc/self": "self",
        "opt/app/current": "../app/./current-real/",
        "etc/through-file": "/etc/hostname/x",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    (root / "opt/app/current-real").mkdir()
    (root / "opt/app/current-real/conf").write_text("x\n")
    chain = root / "chain"
    chain.mkdir()
    for index in range(45):  # link i points at link i+1; "45" is a file
        (chain / str(index)).symlink_to(str(index + 1))
    (chain / "45").write_text("end\n")
    return root


#: What every copy does with more than 40 links: raise OSError(ELOOP), as the kernel does.
LOOP = "loop"

#: relpath -> the answer every copy must give (LOOP: the loop error, see :func:`_answer`).
CASES: dict[str, str | None] = {
    "": "/",
    ".": "/",
    "etc/hostname": "/etc/hostname",
    "/etc/hostname": "/etc/hostname",
    "etc//./hostname": "/etc/hostname",
    "etc/../etc/hostname": "/etc/hostname",
    "../../etc/hostname": "/etc/hostname",
    "etc/os-release": "/usr/lib/os-release",
    "bin/tool": "/usr/bin/tool",
    "etc/absolute": "/usr/lib/os-release",
    "etc/escape": None,
    "etc/host": None,
    "etc/rootlink": "/",
    "etc/rootlink/etc/hostname": "/etc/hostname",
    "etc/dangling": None,
    "etc/missing": None,
    "etc/hostname/x": None,
    "etc/through-file": None,
    "opt/app/current/conf": "/opt/app/current-real/conf",
    "chain/6": "/chain/45",  # 39 links: within the limit of 40
    "chain/5": "/chain/45",  # exactly 40 links
    "chain/4": LOOP,  # 41 links
    "etc/loop-a": LOOP,
    "etc/self": LOOP,
    "etc/self/x": LOOP,
}


def _answer(name: str, root: Path, relpath: str) -> str | None:
    """The copy's answer; LOOP only for exactly the error every copy must raise on a loop."""
    try:
        return RESOLVERS[name](str(root), relpath)
    except OSError as exc:
        shown = f"{name}: {type(exc).__name__}: {exc}"
        assert type(exc) is OSError and exc.errno == errno.ELOOP, shown
        assert exc.strerror == "too many levels of symbolic links", shown
        assert exc.filename == "/" + relpath.lstrip("/"), shown
        assert "symbolic links" in str(exc), shown
        return LOOP


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("relpath", sorted(CASES))
def test_every_copy_resolves_paths_inside_the_target_alike(
    tree: Path, name: str, relpath: str
) -> None:
    assert _answer(name, tree, relpath) == CASES[relpath]


def test_every_copy_gives_the_same_answers(tree: Path) -> None:
    answers = {name: {rel: _answer(name, tree, rel) for rel in CASES} for name in PROGRAMS}
    for name, answer in answers.items():
        assert answer == answers["packages"], name


OS_RELEASE_TEXTS = [
    'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\nPRETTY_NAME="Debian 12 (x)"\n',
    "ID=fedora\nVERSION_ID=40\n# a comment\n\nVERSION_CODENAME=\n",
    "ID='single quoted'\nNAME=\"with \\\"escaped\\\" quotes\"\n",
    'NAME="unbalanced\nID=ok\n',
    "  ID = spaced  \nBROKEN LINE WITHOUT EQUALS\n=novalue\n",
    'ID=debian\nID=ubuntu\nNAME="a $b `c`"\n',
    "ID=x # not a comment\nNAME=two words\n",
]


@pytest.mark.parametrize("text", OS_RELEASE_TEXTS)
def test_both_os_release_parsers_read_the_same_fields(text: str) -> None:
    packages = MODULES["packages"].parse_os_release(text)
    openscap = MODULES["openscap"].parse_os_release(text)
    # packages keeps os-release's upper-case keys, openscap lower-cases them: same fields.
    wanted = ("ID", "VERSION_ID", "NAME", "PRETTY_NAME", "VERSION_CODENAME")
    assert {k: packages.get(k) for k in wanted} == {k: openscap.get(k.lower()) for k in wanted}


DOCUMENT: dict[str, Any] = {
    "Scanner": "copies",
    "Successful": "true",
    "UUID": "ab" * 32,
    "Results": [{"Title": "t\u00e9st \u2603 \U0001f600", "Description": "line\nbreak\ttab\x01"
                 "\x7f quote\" back\\slash </script>", "Severity": "low", "Custom": {}}],
    "Custom": {"count": 3, "big": 2**53, "negative": -1, "ratio": 0.5, "flag": False,
               "nothing": None, "nested": [[[]], {}], "empty": ""},
}


def _strict_load(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_copy_writes_the_json_document_alike(tmp_path: Path, name: str) -> None:
    out_dir = tmp_path / "scanout" / "key"
    MODULES[name].write_document(str(out_dir), DOCUMENT)
    assert sorted(os.listdir(out_dir)) == ["json"]  # written whole, then renamed into place
    text = (out_dir / "json").read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert _strict_load(text) == DOCUMENT
    # Written again over an older document, it replaces it.
    MODULES[name].write_document(str(out_dir), {**DOCUMENT, "Successful": "false"})
    assert _strict_load((out_dir / "json").read_text())["Successful"] == "false"
