"""Scanner definition files and the scanner registry (fast tier)."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pytest

from atomicscan.errors import DuplicateScannerError, UnknownScannerError
from atomicscan.plugins import Plugins
from atomicscan.scanners import (
    MAX_DEFINITION_BYTES,
    DefinitionError,
    InvalidScannerError,
    Scanner,
    ScannerRegistry,
    ScanType,
    load_definition,
)

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
    ("['-v', '/var/run/docker.sock:/var/run/docker.sock:ro']", "docker's socket"),
    ("['-v', '/run/podman/podman.sock:/s:ro']", "podman's socket"),
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


# -- issue 10: hostile definition files ---------------------------------------------------


def _atomic(tmp_path: Path, extra: str, name: str = "bad") -> Path:
    path = tmp_path / name
    path.write_text(ATOMIC_RPM_VERIFY + extra)
    return path


def _refusal(path: Path) -> str:
    with pytest.raises(DefinitionError) as caught:
        load_definition(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and "\x1b" not in message and "\x00" not in message
    return message


def _mount(tmp_path: Path, spec: str, name: str = "bad") -> Path:
    return _atomic(tmp_path, f"custom_args: {json.dumps(['-v', spec])}\n", name)


@pytest.fixture
def feeds(tmp_path: Path) -> Path:
    directory = tmp_path / "srv" / "feeds"
    directory.mkdir(parents=True)
    (directory / "feed.xml").write_text("<feed/>")
    return directory


def test_a_read_only_mount_is_kept_as_its_real_path(tmp_path: Path, feeds: Path) -> None:
    (tmp_path / "feeds-link").symlink_to(feeds)
    scanner = load_definition(_atomic(tmp_path, (
        f"custom_args: ['-v', '{feeds}:/feeds:ro', '--volume={tmp_path}/feeds-link/./:/f2:ro',"
        f" '-v', '{feeds}/feed.xml:/etc/feed.xml:ro']\n")))
    real = str(feeds.resolve())
    assert scanner.host_mounts == ((real, "/feeds"), (real, "/f2"),
                                   (f"{real}/feed.xml", "/etc/feed.xml"))
    assert scanner.capabilities == ()


def test_a_missing_source_is_kept_for_the_scan_to_judge(tmp_path: Path) -> None:
    scanner = load_definition(_mount(tmp_path, f"{tmp_path}/later/../feeds:/feeds:ro"))
    assert scanner.host_mounts == ((f"{tmp_path.resolve()}/feeds", "/feeds"),)


@pytest.mark.parametrize(("source", "message"), [
    ("/", "/ is the whole host"),
    ("/.", "/ is the whole host"),
    ("/usr/..", "/ is the whole host"),
    ("//", "/ is the whole host"),
    ("/etc", "/etc holds /etc/shadow"),
    ("/etc/../etc/shadow", "/etc/shadow is a refused place"),
    ("/run/./containerd", "/run/containerd"),
    ("//run/containerd", "/run/containerd"),
    ("/run/../run/containerd", "/run/containerd"),
    ("/var/run/docker.sock", "docker's socket"),
    ("/var/run", "/run is a refused place"),
    ("/var", "/var holds /var/lib/containers"),
    ("/var/lib/containers/storage", "podman's image and container storage"),
    ("/var/lib/docker/overlay2", "docker's image and container storage"),
    ("/proc/self/status", "inside /proc"),
    ("/dev/shm", "inside /dev"),
    ("/sys", "/sys is a refused place"),
    ("/root", "root's home"),
    ("/home/someone/.ssh", "inside /home"),
    ("/boot", "/boot is a refused place"),
])
def test_refused_host_paths_are_judged_on_their_real_path(
    tmp_path: Path, source: str, message: str
) -> None:
    assert message in _refusal(_mount(tmp_path, f"{source}:/host:ro"))


def test_a_symlink_to_a_refused_place_is_refused(tmp_path: Path) -> None:
    for name, target in (("to-root", "/"), ("to-etc", "/etc"), ("to-sock", "/var/run")):
        (tmp_path / name).symlink_to(target)
        message = _refusal(_mount(tmp_path, f"{tmp_path / name}:/host:ro", name=f"def-{name}"))
        assert "refused" in message


def test_sockets_fifos_and_devices_are_not_mounted(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        for name in ("fifo", "sock"):
            message = _refusal(_mount(tmp_path, f"{tmp_path / name}:/x:ro"))
            assert "not a directory or a regular file" in message


@pytest.mark.parametrize("spec", [
    "{feeds}:/x,U=true:ro",
    "{feeds},U=true:/x:ro",
    "{feeds}:/x:ro,U=true",
    "{feeds}:/x:ro,z",
    "{feeds}:/x:Z",
    "{feeds}:/x=y:ro",
    "{feeds}=y:/x:ro",
    "{feeds}:/x\ny:ro",
    "{feeds}:/x\x00:ro",
    "{feeds}\x1b[2J:/x:ro",
    '{feeds}:/x",readonly=false:ro',
    "{feeds}:/x",
    "{feeds}:/x:rw",
    "{feeds}:/x:ro:extra",
])
def test_mount_option_injection_is_refused(tmp_path: Path, feeds: Path, spec: str) -> None:
    message = _refusal(_mount(tmp_path, spec.format(feeds=feeds)))
    assert "refused" in message


def test_a_source_whose_real_path_holds_option_syntax_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "a,U=true"
    odd.mkdir()
    (tmp_path / "plain").symlink_to(odd)
    message = _refusal(_mount(tmp_path, f"{tmp_path / 'plain'}:/x:ro"))
    assert "its real path" in message and "mount options" in message


@pytest.mark.parametrize(("destination", "message"), [
    ("feeds", "absolute"),
    ("/x/../scanout", "without '.', '..' or '//'"),
    ("//scanout", "without '.', '..' or '//'"),
    ("/x/./y", "without '.', '..' or '//'"),
    ("/x/", "without '.', '..' or '//'"),
    ("/", "belongs to the scan"),
    ("/scanin", "belongs to the scan"),
    ("/scanin/abc", "belongs to the scan"),
    ("/scanout", "belongs to the scan"),
    ("/scanmeta/targets.json", "belongs to the scan"),
    ("/scanhost", "belongs to the scan"),
    ("/proc", "belongs to the scan"),
    ("/sys/fs", "belongs to the scan"),
    ("/dev", "belongs to the scan"),
])
def test_destinations_that_belong_to_the_scan_are_refused(
    tmp_path: Path, feeds: Path, destination: str, message: str
) -> None:
    assert message in _refusal(_mount(tmp_path, f"{feeds}:{destination}:ro"))


def test_a_destination_mounted_twice_is_refused(tmp_path: Path, feeds: Path) -> None:
    path = _atomic(tmp_path, f"custom_args: ['-v', '{feeds}:/x:ro', '-v', '{feeds}:/x:ro']\n")
    assert "mounted twice" in _refusal(path)


@pytest.mark.parametrize("request_cap", [
    "custom_args: ['-v', '{feeds}:/x:ro', '--cap-add', 'DAC_READ_SEARCH']\n",
    "custom_args: ['--cap-add=CAP_DAC_READ_SEARCH', '-v', '{feeds}:/x:ro']\n",
    "custom_args: ['-v', '{feeds}:/x:ro']\nisolation: {{capabilities: [dac_read_search]}}\n",
])
def test_a_host_mount_never_comes_with_dac_read_search(
    tmp_path: Path, feeds: Path, request_cap: str
) -> None:
    message = _refusal(_atomic(tmp_path, request_cap.format(feeds=feeds)))
    assert "host mount (-v)" in message and "DAC_READ_SEARCH" in message


def test_a_host_mount_may_come_with_sys_chroot(tmp_path: Path, feeds: Path) -> None:
    scanner = load_definition(_atomic(
        tmp_path, f"custom_args: ['-v', '{feeds}:/x:ro', '--cap-add', 'SYS_CHROOT']\n"))
    assert scanner.capabilities == ("SYS_CHROOT",)


@pytest.mark.parametrize("name", [
    "/tmp/x", "../../../tmp/x", "..", "a..b", "x/y", "Upper", "-x", ".x", "_x", "x y",
    "[red]x[/red]", "x\n", "x\x1b[2J", "x\x00", "a" * 64, "é",
])
def test_unsafe_scanner_and_scan_type_names_are_refused(tmp_path: Path, name: str) -> None:
    scanner_doc = GOOD.replace('scanner_name = "demo"', f"scanner_name = {json.dumps(name)}")
    message = _refusal(_write(tmp_path, scanner_doc))
    assert "scanner_name: refused" in message and "not a valid name" in message
    scan_doc = GOOD.replace('name = "a"', f"name = {json.dumps(name)}")
    assert "name: refused" in _refusal(_write(tmp_path, scan_doc))


@pytest.mark.parametrize("name", ["a", "0", "rpm-verify", "standards_compliance", "v1.2",
                                  "a" * 63])
def test_plain_names_are_accepted(tmp_path: Path, name: str) -> None:
    doc = GOOD.replace('scanner_name = "demo"', f'scanner_name = "{name}"').replace(
        'name = "a"', f'name = "{name}"')
    scanner = load_definition(_write(tmp_path, doc))
    assert scanner.name == name and name in scanner.scan_types


@pytest.mark.parametrize("image", ["-x", "--privileged", "a b", "a\tb", "img\x1b[2J", "a\nb"])
def test_unsafe_image_names_are_refused(tmp_path: Path, image: str) -> None:
    doc = GOOD.replace('image_name = "localhost/demo:latest"', f"image_name = {json.dumps(image)}")
    assert "image_name: refused" in _refusal(_write(tmp_path, doc))


def test_plugins_cannot_register_unsafe_names() -> None:
    registry = ScannerRegistry()
    scans = {"s": ScanType(name="s", args=("x",))}
    for name, image in (("../x", "img"), ("ok", "--privileged")):
        with pytest.raises(InvalidScannerError, match="refused"):
            registry.add(Scanner(name=name, image=image, scan_types=scans, default_scan="s"))
    with pytest.raises(InvalidScannerError, match="not a valid name"):
        registry.add(Scanner(name="ok", image="img", default_scan="../s",
                             scan_types={"../s": ScanType(name="../s", args=())}))
    assert len(registry) == 0


def test_descriptions_must_be_strings(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace('description = "the b scan"', "description = [1, 2]"))
    assert "'description' must be a string" in _refusal(path)


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


@pytest.mark.parametrize(("text", "message"), [
    (ALIAS_BOMB, "line 1: refused YAML: anchors and aliases (& and *) are refused"),
    (ATOMIC_RPM_VERIFY + "extra: &x 1\n", "anchors and aliases"),
    (ATOMIC_RPM_VERIFY + "extra: *x\n", "anchors and aliases"),
    ("base: &b {type: scanner}\nother: {<<: *b}\n", "anchors and aliases"),
    ("a: " + "[" * 100_000, "nested deeper than"),
    ("a: " + "{b: " * 10_000 + "1" + "}" * 10_000, "nested deeper than"),
    ("a: " + "1" * 5000, "not usable YAML: ValueError"),
    ("a: 2020-13-45", "not usable YAML: ValueError"),
])
def test_yaml_that_can_explode_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bomb"
    path.write_text(text)
    assert message in _refusal(path)


@pytest.mark.parametrize(("text", "message"), [
    ("a = " + "[" * 100_000, "not usable TOML: RecursionError"),
    ("a = " + "{b=" * 50_000, "not usable TOML: RecursionError"),
    ("a = " + "1" * 5000, "not usable TOML: ValueError"),
])
def test_toml_that_can_explode_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bomb.toml"
    path.write_text(text)
    assert message in _refusal(path)


@pytest.mark.parametrize("name", ["big", "big.toml"])
def test_oversized_files_are_refused_before_parsing(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(GOOD + "#" * MAX_DEFINITION_BYTES)
    assert f"larger than {MAX_DEFINITION_BYTES} bytes" in _refusal(path)


def test_non_files_and_non_utf8_are_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.toml")
    assert "not a regular file" in _refusal(tmp_path / "fifo.toml")
    (tmp_path / "dir.toml").mkdir()
    assert "not a regular file" in _refusal(tmp_path / "dir.toml")
    (tmp_path / "latin1.toml").write_bytes(b"scanner_name = \"\xe9\"\n")
    assert "not UTF-8" in _refusal(tmp_path / "latin1.toml")


def test_hostile_file_names_stay_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "evil\n\x1b[2Jname.toml"
    path.write_text("scanner_name = \n")
    with pytest.raises(DefinitionError) as caught:
        load_definition(path)
    assert "evil\\n\\x1b[2Jname.toml" in str(caught.value)


def test_an_alias_bomb_does_not_hide_the_other_definitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from atomicscan.plugins import Plugins

    (tmp_path / "00-bomb").write_text(ALIAS_BOMB)
    (tmp_path / "rpm-verify").write_text(ATOMIC_RPM_VERIFY)
    (tmp_path / "zz-path.toml").write_text(GOOD.replace('"demo"', '"../../../tmp/x"'))
    monkeypatch.setenv("ATOMICSCAN_CONFIG_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING):
        plugins = Plugins.load(entry_points=False)
        names = plugins.scanners.names()
    assert "rpm-verify" in names and "packages" in names and "bomb" not in names
    assert not plugins.errors
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "00-bomb" in w]) == 1
    assert len([w for w in warnings if "zz-path.toml" in w]) == 1


def test_a_name_two_host_files_claim_is_refused_in_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for file_name in ("0-squatter.toml", "mycorp.toml"):
        (tmp_path / file_name).write_text(
            'type = "scanner"\nscanner_name = "mycorp"\nimage_name = "localhost/x"\n'
            '[[scans]]\nname = "s"\nargs = ["true"]\n')
    (tmp_path / "other.toml").write_text(
        'type = "scanner"\nscanner_name = "other"\nimage_name = "localhost/x"\n'
        '[[scans]]\nname = "s"\nargs = ["true"]\n')
    monkeypatch.setenv("ATOMICSCAN_CONFIG_DIR", str(tmp_path))

    names = Plugins.load(entry_points=False).scanners.names()

    assert "mycorp" not in names and "other" in names
    assert sum("also defined by another file" in r.getMessage() for r in caplog.records) == 2


def test_host_file_names_are_names(tmp_path: Path) -> None:
    path = tmp_path / "trav.toml"
    path.write_text('type = "scanner"\nscanner_name = "trav"\nimage_name = "localhost/x"\n'
                    '[[scans]]\nname = "s"\nargs = ["true"]\nhost_files = ["../../x"]\n')
    with pytest.raises(DefinitionError, match="host_files"):
        load_definition(path)


def test_a_parser_surprise_skips_only_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "aaa.yaml").write_text(
        "type: scanner\nscanner_name: aaa\nimage_name: localhost/x\n"
        "scans: [{name: s, args: ['true']}]\nisolation: {1: x, b: y}\n")
    (tmp_path / "bbb.toml").write_text(
        'type = "scanner"\nscanner_name = "bbb"\nimage_name = "localhost/x"\n'
        '[[scans]]\nname = "s"\nargs = ["true"]\n')
    monkeypatch.setenv("ATOMICSCAN_CONFIG_DIR", str(tmp_path))

    assert "bbb" in Plugins.load(entry_points=False).scanners.names()
