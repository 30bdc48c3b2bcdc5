"""Hostile definition files, tried for real: refused when loaded, the host left as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import (
    ALPINE,
    PACKAGES_SCANNER,
    Atomicscan,
    CliResult,
    HostSnapshot,
    snapshot,
    tree_digest,
)

#: A scanner that tries to carry the host's secrets out through its results.
LOOTER = r"""
for d in /scanin/*; do
  k=$(basename "$d"); mkdir -p "/scanout/$k"
  cat /host/etc/shadow /host/shadow /host/run/containers/*/auth.json > "/scanout/$k/loot" 2>&1
  line=$(head -n 1 "/scanout/$k/loot" | tr -d '"\\')
  printf '{"Successful":"true","Custom":{"loot":"%s"}}' "$line" > "/scanout/$k/json"
done
"""

#: A scanner that tries to change a host directory it was given read-only.
WRITER = r"""
for d in /scanin/*; do
  k=$(basename "$d"); mkdir -p "/scanout/$k"
  if echo pwned > /x/data 2>/dev/null; then w=yes; else w=no; fi
  if touch /x/new 2>/dev/null; then t=yes; else t=no; fi
  printf '{"Successful":"true","Custom":{"read":"%s","write":"%s","touch":"%s"}}' \
    "$(cat /x/data)" "$w" "$t" > "/scanout/$k/json"
done
"""

GOOD = r"""
for d in /scanin/*; do
  k=$(basename "$d"); mkdir -p "/scanout/$k"
  printf '{"Successful":"true","Custom":{"good":"yes"}}' > "/scanout/$k/json"
done
"""

ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
type: scanner
scanner_name: bomb
image_name: x
scans: [{name: s, args: *i}]
"""


def _yaml_definition(name: str, script: str, custom_args: list[str]) -> str:
    # JSON is YAML: every value quoted exactly, as a hostile author could write it by hand.
    return json.dumps({
        "type": "scanner", "scanner_name": name, "image_name": PACKAGES_SCANNER,
        "default_scan": "test", "custom_args": custom_args,
        "scans": [{"name": "test", "args": ["sh", "-c", script]}],
    }) + "\n"


def _toml_definition(name: str, script: str, custom_args: list[str]) -> str:
    return (f'type = "scanner"\nscanner_name = {json.dumps(name)}\n'
            f"image_name = {json.dumps(PACKAGES_SCANNER)}\ndefault_scan = \"test\"\n"
            f"custom_args = {json.dumps(custom_args)}\n\n"
            f'[[scans]]\nname = "test"\nargs = ["sh", "-c", {json.dumps(script)}]\n')


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "skipping scanner definition" in line]


def _listed(atomicscan: Atomicscan) -> tuple[set[str], str]:
    run = atomicscan("--list", "--json", timeout=60)
    assert run.returncode == 0, run.stderr
    return {scanner["name"] for scanner in run.json()["scanners"]}, run.stderr


def _assert_clean(before: HostSnapshot, atomicscan: Atomicscan) -> None:
    """Nothing of this test's runs is left; other people's runs on this host are not ours."""
    after = snapshot(atomicscan.state_dir)
    state = str(atomicscan.state_dir)
    assert {m for m in after.mounts - before.mounts if state in m} == set()
    assert after.state - before.state == set()
    assert atomicscan.engine.scanner_containers(atomicscan.state_dir) == []


def _assert_each_file_warned_once(stderr: str, files: list[str]) -> None:
    warnings = _warnings(stderr)
    assert "\x1b" not in stderr
    for name in files:
        assert len([w for w in warnings if f"/{name}: " in w]) == 1, (name, stderr)


def _scan(atomicscan: Atomicscan, name: str) -> CliResult:
    return atomicscan("--scanner", name, "--json", ALPINE, timeout=300)


def _assert_refused_scan(run: CliResult) -> None:
    """Scanning with a refused scanner is a usage error on one line, and runs nothing."""
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("atomicscan: error:")]
    assert len(errors) == 1 and "unknown scanner" in errors[0], run.stderr
    assert all(line in errors or "skipping scanner definition" in line
               for line in run.stderr.splitlines()), run.stderr


def test_mounting_the_host_root_with_dac_read_search_is_refused(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path
) -> None:
    (tmp_path / "rootlink").symlink_to("/")
    (tmp_path / "etclink").symlink_to("/etc")
    reads_all = ["--cap-add", "DAC_READ_SEARCH"]
    attacks = {
        "dot": ["-v", "/.:/host:ro", *reads_all],
        "dotdot": ["-v", "/usr/..:/host:ro", *reads_all],
        "rootlink": ["-v", f"{tmp_path}/rootlink:/host:ro", *reads_all],
        "etclink": ["-v", f"{tmp_path}/etclink/:/host/etc:ro", *reads_all],
        "etc": ["--cap-add=CAP_DAC_READ_SEARCH", "--volume=/etc/../etc:/host/etc:ro"],
        "shadow": ["-v", "//etc/shadow:/host/shadow:ro"],
        "run-dot": ["-v", "/run/./containers:/host/run/containers:ro"],
        "run-slashes": ["-v", "//run/containers:/host/run/containers:ro"],
        "run-up": ["-v", "/run/../run/containers:/host/run/containers:ro"],
        "var-run": ["-v", "/var/run/../run:/host/run:ro"],
        # A mount that is fine on its own, but never together with DAC_READ_SEARCH.
        "feeds": ["-v", f"{tmp_path}:/feeds:ro", *reads_all],
    }
    files = []
    for name, custom_args in attacks.items():
        toml = name in {"etc", "run-up"}
        file = f"loot-{name}.toml" if toml else f"loot-{name}"
        render = _toml_definition if toml else _yaml_definition
        (atomicscan.config_dir / file).write_text(render(f"loot-{name}", LOOTER, custom_args))
        files.append(file)

    # The attack itself: try every scan, then look at what reached the results and the terminal.
    runs = {name: _scan(atomicscan, f"loot-{name}") for name in attacks}
    listed, stderr = _listed(atomicscan)

    shadow = [line for line in Path("/etc/shadow").read_text().splitlines() if line.strip()]
    shown = stderr + "".join(run.stdout + run.stderr for run in runs.values())
    written = [path.read_text(errors="replace") for path in atomicscan.results_dir.rglob("*")
               if path.is_file()] if atomicscan.results_dir.exists() else []
    for line in shadow:
        assert line not in shown
        assert not any(line in text for text in written)
    assert not {f"loot-{name}" for name in attacks} & listed
    assert "packages" in listed
    _assert_each_file_warned_once(stderr, files)
    for run in runs.values():
        _assert_refused_scan(run)
    _assert_clean(host_before, atomicscan)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-owned host directory that a definition tries to have chowned or written."""
    directory = tmp_path / "victim"
    directory.mkdir(mode=0o755)
    (directory / "data").write_text("original\n")
    os.chown(directory, 0, 0)
    os.chown(directory / "data", 0, 0)
    return directory


def test_mount_option_injection_is_refused_and_the_victim_is_unchanged(
    atomicscan: Atomicscan, host_before: HostSnapshot, victim: Path
) -> None:
    attacks = {
        "dest-u": ["-v", f"{victim}:/x,U=true:ro"],
        "src-u": ["-v", f"{victim},U=true:/x:ro"],
        "opt-u": ["-v", f"{victim}:/x:ro,U=true"],
        "relabel": ["-v", f"{victim}:/x:z"],
        "rw": ["-v", f"{victim}:/x,readonly=false:ro"],
        "newline": ["-v", f"{victim}:/x\n,U=true:ro"],
        "toml-u": ["--volume", f"{victim}:/x,U=true:ro"],
    }
    files = []
    for name, custom_args in attacks.items():
        file = f"inject-{name}.toml" if name.startswith("toml") else f"inject-{name}"
        render = _toml_definition if name.startswith("toml") else _yaml_definition
        (atomicscan.config_dir / file).write_text(render(f"inject-{name}", WRITER, custom_args))
        files.append(file)
    before = tree_digest([victim])

    runs = [_scan(atomicscan, f"inject-{name}") for name in attacks]
    listed, stderr = _listed(atomicscan)

    assert tree_digest([victim]) == before
    assert (victim.stat().st_uid, victim.stat().st_gid) == (0, 0)
    assert ((victim / "data").stat().st_uid, (victim / "data").stat().st_gid) == (0, 0)
    assert not {f"inject-{name}" for name in attacks} & listed
    _assert_each_file_warned_once(stderr, files)
    for run in runs:
        _assert_refused_scan(run)
    _assert_clean(host_before, atomicscan)


def test_a_plain_read_only_mount_is_usable_and_stays_read_only(
    atomicscan: Atomicscan, host_before: HostSnapshot, victim: Path, tmp_path: Path
) -> None:
    (tmp_path / "victim-link").symlink_to(victim)
    (atomicscan.config_dir / "reader").write_text(
        _yaml_definition("reader", WRITER, ["-v", f"{tmp_path}/victim-link:/x:ro"]))
    before = tree_digest([victim])

    listed, _stderr = _listed(atomicscan)
    run = atomicscan("--scanner", "reader", "--json", ALPINE, timeout=300)

    assert "reader" in listed
    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert result["custom"] == {"read": "original", "write": "no", "touch": "no"}
    assert tree_digest([victim]) == before
    _assert_clean(host_before, atomicscan)


def test_scanner_names_that_are_paths_or_markup_are_refused(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path, unique: str
) -> None:
    names = {
        "up": f"../../../tmp/x-{unique}",
        "abs": f"/tmp/x-{unique}-abs",
        "markup": f"[red]x-{unique}[/red]",
        "escape": f"x-{unique}\x1b]0;owned\x07\x1b[2J",
        "newline": f"x-{unique}\natomicscan: ok",
    }
    for key, name in names.items():
        (atomicscan.config_dir / f"name-{key}").write_text(_yaml_definition(name, GOOD, []))
    outside = [Path(f"/tmp/x-{unique}"), Path(f"/tmp/x-{unique}-abs"),
               (atomicscan.results_dir / f"../../../tmp/x-{unique}").resolve(),
               tmp_path.parent / f"x-{unique}"]

    runs = [_scan(atomicscan, names[key]) for key in ("up", "abs")]
    listed, stderr = _listed(atomicscan)

    for path in outside:
        assert not path.exists(), f"{path} was created outside the results root"
    assert not set(names.values()) & listed
    _assert_each_file_warned_once(stderr, [f"name-{key}" for key in names])
    assert "\x07" not in stderr and "atomicscan: ok" not in stderr.splitlines()
    for run in runs:
        _assert_refused_scan(run)
    assert not atomicscan.results_dir.exists() or not any(atomicscan.results_dir.iterdir())
    _assert_clean(host_before, atomicscan)


def test_an_alias_bomb_and_other_parser_traps_leave_the_good_definition_usable(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    traps = {
        "00-bomb": ALIAS_BOMB,
        "01-deep": "a: " + "[" * 200_000,
        "02-deep.toml": "a = " + "[" * 200_000,
        "03-big.toml": "# padding\n" * 30_000,
        "04-digits": "scanner_name: " + "9" * 100_000,
    }
    for file, text in traps.items():
        (atomicscan.config_dir / file).write_text(text)
    assert len(ALIAS_BOMB.encode()) < 1024
    atomicscan.add_scanner("good", GOOD)

    listed, stderr = _listed(atomicscan)
    run = atomicscan("--scanner", "good", "--json", ALPINE, timeout=300)

    assert "good" in listed and "bomb" not in listed
    _assert_each_file_warned_once(stderr, list(traps))
    assert len(_warnings(stderr)) == len(traps)
    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert result["successful"] is True and result["custom"] == {"good": "yes"}
    assert len(_warnings(run.stderr)) == len(traps)
    _assert_clean(host_before, atomicscan)
