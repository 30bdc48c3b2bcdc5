"""Attacks on the run itself, performed for real: hostile text on the terminal, a full results
disk, private results, `--rootfs /`, forged labels for cleanup, planted cache entries, secret
host files, untrusted fix scripts and host mounts with writable mounts below them."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd import ctr, import_from_podman
from dockerd import DOCKER_HOST, load_from_podman
from helpers import (
    ALPINE,
    DEBIAN,
    Atomicscan,
    Engine,
    HostSnapshot,
    assert_no_leftovers,
    podman,
    podman_env,
    snapshot,
)

from atomicscan.state import root_tag

#: An os-release that tries rich markup, clears the screen, sets the window title and prints
#: a fake "ok" line of its own.
HOSTILE_PRETTY = ("[/red][bold]Debian\x1b]0;pwned-title\x07\x1b[2J\x1b[H"
                  "\x1b[2K\x1b[1Gok image fake (podman): 0 packages")
ESC = "\x1b"


def _clean_lines(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert "internal error" not in stderr
    assert ESC not in stderr and "\x07" not in stderr and "\r" not in stderr
    return lines


@pytest.fixture(scope="module")
def hostile_image(tmp_path_factory: pytest.TempPathFactory, containerd_daemon: str
                  ) -> Iterator[str]:
    """A Debian image whose os-release is an attack on the admin's terminal (every runtime)."""
    name = f"localhost/atomicscan-test/hostile-osrelease:{os.getpid()}"
    context = tmp_path_factory.mktemp("hostile")
    (context / "os-release").write_text(
        f"PRETTY_NAME=\"{HOSTILE_PRETTY}\"\nNAME=\"Debian\"\nID=debian\n"
        "VERSION_ID=\"12\"\n")
    (context / "Containerfile").write_text(
        f"FROM {DEBIAN}\nCOPY os-release /usr/lib/os-release\n"
        "RUN rm -f /etc/os-release && ln -s ../usr/lib/os-release /etc/os-release\n")
    podman("build", "--pull=never", "--network", "none", "-q", "-t", name, str(context))
    load_from_podman(name, podman_env())
    import_from_podman(name, podman_env(), containerd_daemon)
    try:
        yield name
    finally:
        subprocess.run(["docker", "rmi", "--force", name], capture_output=True, check=False,
                       env=dict(os.environ, DOCKER_HOST=DOCKER_HOST))
        ctr("images", "rm", name, address=containerd_daemon, check=False)
        podman("rmi", "--force", name, check=False)


def test_hostile_os_release_is_printed_escaped_never_interpreted(
    atomicscan: Atomicscan, host_before: HostSnapshot, hostile_image: str
) -> None:
    human = atomicscan("--scanner", "packages", hostile_image)
    as_json = atomicscan("--scanner", "packages", "--json", hostile_image)

    assert human.returncode == 0, human.stderr
    _clean_lines(human.stderr)
    assert ESC not in human.stdout and "\x07" not in human.stdout and "\r" not in human.stdout
    (line,) = [line for line in human.stdout.splitlines() if line.startswith("ok ")]
    assert "[/red][bold]Debian\\x1b]0;pwned-title\\x07\\x1b[2J" in line
    assert "\\x1b[2K\\x1b[1Gok image fake" in line, "the fake line must stay inside the real one"
    assert as_json.returncode == 0
    _clean_lines(as_json.stderr)
    (result,) = as_json.json()["results"]
    assert result["os"]["pretty_name"] == HOSTILE_PRETTY, "JSON keeps the text exactly"
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_hostile_scanner_error_is_one_escaped_line(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    error = "[/red]boom\\u001b]0;title\\u0007\\nok image fake: 0 findings"
    atomicscan.add_scanner("liar", (
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        f"printf '%s' '{{\"Successful\":\"false\",\"Error\":\"{error}\"}}' "
        '> "/scanout/$k/json"; done'))

    human = atomicscan("--scanner", "liar", ALPINE)
    as_json = atomicscan("--scanner", "liar", "--json", ALPINE)

    for run in (human, as_json):
        assert run.returncode == 1
        (line,) = _clean_lines(run.stderr)
        assert line.startswith("atomicscan: error: image")
        assert "[/red]boom\\x1b]0;title\\x07\\nok image fake" in line
    assert ESC not in human.stdout
    assert_no_leftovers(host_before, atomicscan.state_dir)


@pytest.mark.parametrize("args", [
    ["--scanner", "[/red]\x1b[2J", DEBIAN],
    ["--scanner", "packages", "[/bold]\x1b]0;t\x07nope"],
    ["--scanner", "packages", "--scan-type", "[red]\n", DEBIAN],
])
def test_hostile_names_on_the_command_line_exit_2_with_one_line(
    atomicscan: Atomicscan, host_before: HostSnapshot, args: list[str]
) -> None:
    run = atomicscan(*args)

    assert run.returncode == 2
    (line,) = _clean_lines(run.stderr)
    assert line.startswith("atomicscan: error:")
    assert "\\x1b" in line or "\\n" in line
    assert_no_leftovers(host_before, atomicscan.state_dir)


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-3", "1e999"])
def test_timeouts_that_never_end_or_never_start_are_refused(
    atomicscan: Atomicscan, host_before: HostSnapshot, value: str
) -> None:
    run = atomicscan("--scanner", "packages", "--timeout", value, ALPINE)

    assert run.returncode == 2
    (line,) = _clean_lines(run.stderr)
    assert "--timeout" in line
    assert_no_leftovers(host_before, atomicscan.state_dir)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A results filesystem with room for a report or two, not for a scanner's extra files."""
    disk = tmp_path / "tiny"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k,mode=0700", "atomicscan-test-tiny",
                    str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_full_results_disk_is_one_line_and_keeps_the_report_on_stdout(
    atomicscan: Atomicscan, host_before: HostSnapshot, tiny_disk: Path
) -> None:
    atomicscan.add_scanner("bulky", (
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        'head -c 400000 /dev/urandom > "/scanout/$k/blob.bin"; '
        'head -c 200000 /dev/zero | tr "\\0" x > "/scanout/$k/padding"; '
        'printf \'{"Successful":"true","Custom":{"pad":"%s"}}\' '
        '"$(head -c 30000 /dev/zero | tr "\\0" y)" > "/scanout/$k/json"; done'))

    run = atomicscan("--scanner", "bulky", "--json", "--output-dir", str(tiny_disk),
                     ALPINE, DEBIAN)

    assert run.returncode == 1
    # The run's one summary line, then one line per failure.
    lines = [line for line in _clean_lines(run.stderr) if "failed, 0 cached" not in line]
    assert all(line.startswith("atomicscan: error:") for line in lines), lines
    assert any("No space left on device" in line for line in lines), lines
    report = run.json()
    assert {r["target"] for r in report["results"]} == {ALPINE, DEBIAN}, "nothing is lost"
    assert (tiny_disk / "bulky").is_dir(), "what was written is kept"
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_results_are_readable_by_their_owner_only(atomicscan: Atomicscan) -> None:
    run = atomicscan("--scanner", "packages", "--json", ALPINE)

    assert run.returncode == 0, run.stderr
    report = run.json()
    run_dir = Path(report["results_dir"])
    assert atomicscan.results_dir.stat().st_mode & 0o777 == 0o700
    assert run_dir.stat().st_mode & 0o777 == 0o700
    assert run_dir.parent.stat().st_mode & 0o777 == 0o700
    assert (run_dir / "report.json").stat().st_mode & 0o777 == 0o600
    for path in run_dir.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    # An admin shares the root with a group: later runs are readable by it, never by all.
    atomicscan.results_dir.chmod(0o750)
    shared = atomicscan("--scanner", "packages", "--no-cache", "--json", ALPINE)
    shared_dir = Path(shared.json()["results_dir"])
    assert shared_dir.stat().st_mode & 0o777 == 0o750
    assert (shared_dir / "report.json").stat().st_mode & 0o777 == 0o640
    for path in shared_dir.rglob("*"):
        assert path.stat().st_mode & 0o007 == 0, f"{path} is readable by others"


@pytest.mark.parametrize("runtime", ["podman"])
def test_rootfs_of_the_host_root_is_refused(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path
) -> None:
    link = tmp_path / "innocent"
    link.symlink_to("/")
    for path in ("/", str(link), "/usr/.."):
        run = atomicscan("--scanner", "packages", "--rootfs", path)
        assert run.returncode == 2
        (line,) = _clean_lines(run.stderr)
        assert "--allow-host-rootfs" in line
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_cleanup_leaves_containers_that_only_carry_our_label(
    atomicscan: Atomicscan, engine: Engine, containers: list[str], unique: str
) -> None:
    tag = root_tag(atomicscan.state_dir)
    fake_run = "20260101000000-0badc0de"
    decoys = {
        f"decoy-plain-{unique}": "x",
        f"decoy-tagged-{unique}": f"x@{tag}",
        # Well formed and of our root, but no such run of ours ever died here.
        f"atomicscan-{fake_run}-1-{unique}": f"{fake_run}@{tag}",
    }
    for name, label in decoys.items():
        containers.append(name)
        engine("create", "--name", name, "--label", f"io.atomicscan.run={label}", ALPINE, "true")

    run = atomicscan("cleanup", "--json")

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["containers"] == []
    for name in decoys:
        assert engine("container", "inspect", name, check=False).returncode == 0, name


def test_cache_entries_not_written_by_us_alone_are_ignored(atomicscan: Atomicscan) -> None:
    first = atomicscan("--scanner", "packages", "--json", DEBIAN)
    assert first.returncode == 0, first.stderr
    (entry,) = (atomicscan.results_dir / "cache").glob("*.json")
    # Another user plants a "successful" scan with no packages under the same key.
    planted = json.loads(entry.read_text())
    planted["packages"] = []
    entry.write_text(json.dumps(planted))
    os.chown(entry, 65534, 65534)

    second = atomicscan("--scanner", "packages", "--json", DEBIAN)

    (result,) = second.json()["results"]
    assert result["cached"] is False
    assert len(result["packages"]) > 50
    # A group-writable entry of our own is not trusted either.
    (entry,) = (atomicscan.results_dir / "cache").glob("*.json")
    entry.chmod(0o666)
    third = atomicscan("--scanner", "packages", "--json", DEBIAN)
    assert third.json()["results"][0]["cached"] is False


@pytest.mark.parametrize("runtime", ["podman"])
def test_secret_host_files_are_refused_as_scanner_arguments(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path
) -> None:
    link = tmp_path / "ignore-list"
    link.symlink_to("/etc/shadow")
    shadow_head = Path("/etc/shadow").read_text().splitlines()[0]
    for value in ("/etc/shadow", str(link), "/etc/../etc/./shadow", "/proc/self/environ"):
        run = atomicscan("--scanner", "configlint", "--scanner-args", f"ignore_file={value}",
                         "--json", DEBIAN)
        assert run.returncode == 2, run.stderr
        (line,) = _clean_lines(run.stderr)
        assert "refused" in line
        assert shadow_head not in run.stdout + run.stderr
    assert not atomicscan.results_dir.exists() or not any(
        shadow_head in p.read_text(errors="replace")
        for p in atomicscan.results_dir.rglob("*") if p.is_file())
    assert_no_leftovers(host_before, atomicscan.state_dir)


@pytest.mark.parametrize("runtime", ["podman"])
def test_remediate_refuses_scanners_that_are_not_built_in(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    atomicscan.add_scanner("fixer", "true")

    run = atomicscan("--scanner", "fixer", "--remediate", DEBIAN)

    assert run.returncode == 2
    (line,) = _clean_lines(run.stderr)
    assert "--trust-scanner fixer" in line and "root" in line
    assert_no_leftovers(host_before, atomicscan.state_dir)


@pytest.fixture
def dir_with_a_mount_below(tmp_path: Path) -> Iterator[Path]:
    """A host directory with a writable tmpfs mounted below it, as /dev holds /dev/shm."""
    top = tmp_path / "hostdir"
    (top / "below").mkdir(parents=True)
    (top / "top-file").write_text("top\n")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777",
                    "atomicscan-test-below", str(top / "below")], check=True)
    (top / "below" / "victim").write_text("untouched\n")
    (top / "below" / "victim").chmod(0o666)
    try:
        yield top
    finally:
        subprocess.run(["umount", str(top / "below")], check=False)


def test_a_read_only_host_mount_is_read_only_all_the_way_down(
    atomicscan: Atomicscan, dir_with_a_mount_below: Path
) -> None:
    top = dir_with_a_mount_below
    before_mounts = snapshot(atomicscan.state_dir).mounts
    script = (
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        'if echo pwned > /host/below/victim 2>/dev/null; then w=yes; else w=no; fi; '
        'if touch /host/below/new 2>/dev/null; then n=yes; else n=no; fi; '
        'if touch /host/new 2>/dev/null; then t=yes; else t=no; fi; '
        'if [ -e /host/top-file ]; then s=yes; else s=no; fi; '
        'printf \'{"Successful":"true","Custom":{"w":"%s","n":"%s","t":"%s","s":"%s"}}\' '
        '"$w" "$n" "$t" "$s" > "/scanout/$k/json"; done')
    (atomicscan.config_dir / "hostmount.toml").write_text(f"""\
type = "scanner"
scanner_name = "hostmount"
image_name = "localhost/atomicscan/packages:latest"
custom_args = ["-v", "{top}:/host:ro"]

[[scans]]
name = "test"
args = ["sh", "-c", {json.dumps(script)}]
""")

    run = atomicscan("--scanner", "hostmount", "--json", ALPINE)

    assert run.returncode == 0, run.stderr
    probe = run.json()["results"][0]["custom"]
    assert probe["s"] == "yes", "the host directory itself is shown"
    assert probe == {"w": "no", "n": "no", "t": "no", "s": "yes"}
    assert (top / "below" / "victim").read_text() == "untouched\n"
    assert not (top / "below" / "new").exists() and not (top / "new").exists()
    assert snapshot(atomicscan.state_dir).mounts == before_mounts


def test_a_host_file_mount_is_the_file_alone_and_read_only(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path
) -> None:
    (tmp_path / "neighbour").write_text("not for the scanner\n")
    feed = tmp_path / "feed.txt"
    feed.write_text("feed line\n")
    feed.chmod(0o644)
    script = (
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        'if echo pwned >> /feeds/feed.txt 2>/dev/null; then w=yes; else w=no; fi; '
        'printf \'{"Successful":"true","Custom":{"w":"%s","read":"%s","n":"%s"}}\' "$w" '
        '"$(cat /feeds/feed.txt)" "$(ls /feeds)" > "/scanout/$k/json"; done')
    (atomicscan.config_dir / "filemount.toml").write_text(f"""\
type = "scanner"
scanner_name = "filemount"
image_name = "localhost/atomicscan/packages:latest"
custom_args = ["-v", "{feed}:/feeds/feed.txt:ro"]

[[scans]]
name = "test"
args = ["sh", "-c", {json.dumps(script)}]
""")

    run = atomicscan("--scanner", "filemount", "--json", ALPINE)

    assert run.returncode == 0, run.stderr
    assert run.json()["results"][0]["custom"] == {"w": "no", "read": "feed line",
                                                  "n": "feed.txt"}
    assert feed.read_text() == "feed line\n"
    assert_no_leftovers(host_before, atomicscan.state_dir)


#: open_by_handle_at on inode 2 (a filesystem's root) of whatever filesystem /etc/hosts is on:
#: with DAC_READ_SEARCH this is the "shocker" escape to the host's own root.
SHOCKER = r"""
import ctypes, json, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for where in ("/etc/hosts", "/scanmeta/targets.json", "/etc/hostname"):
    try:
        fd = os.open(where, os.O_RDONLY)
    except OSError:
        continue
    for handle_type in (1, 2, 0x81):
        handle = struct.pack("IiII", 8, handle_type, 2, 0)
        opened = libc.open_by_handle_at(fd, ctypes.c_char_p(handle), os.O_RDONLY | os.O_DIRECTORY)
        errno = ctypes.get_errno()
        if opened >= 0:
            out[f"{where}:{handle_type}"] = sorted(os.listdir(f"/proc/self/fd/{opened}"))[:5]
        else:
            out[f"{where}:{handle_type}"] = errno
for d in os.listdir("/scanin"):
    os.makedirs(f"/scanout/{d}", exist_ok=True)
    with open(f"/scanout/{d}/json", "w") as f:
        json.dump({"Successful": "true", "Custom": out}, f)
"""


def test_a_scanner_with_dac_read_search_cannot_open_host_inodes_by_handle(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    (atomicscan.config_dir / "shocker.toml").write_text(f"""\
type = "scanner"
scanner_name = "shocker"
image_name = "localhost/atomicscan/packages:latest"

[[scans]]
name = "test"
args = ["python3", "-c", {json.dumps(SHOCKER)}]

[isolation]
capabilities = ["DAC_READ_SEARCH"]
""")

    run = atomicscan("--scanner", "shocker", "--json", ALPINE)

    assert run.returncode == 0, run.stderr
    attempts = run.json()["results"][0]["custom"]
    assert attempts, "the probe found no file to take a handle from"
    assert set(attempts.values()) == {1}, f"open_by_handle_at must fail with EPERM: {attempts}"
    assert "shadow" not in run.stdout
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_a_results_directory_others_can_write_is_refused(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o1777)
    squatted = tmp_path / "private"
    (squatted / "packages").mkdir(parents=True, mode=0o700)
    squatted.chmod(0o700)
    os.chown(squatted / "packages", 65534, 65534)  # another user planted the scanner folder

    for output_dir in (shared, squatted):
        run = atomicscan("--scanner", "packages", "--output-dir", str(output_dir), ALPINE)
        assert run.returncode == 2
        (line,) = _clean_lines(run.stderr)
        assert "writable by others" in line or "belongs to uid 65534" in line
    assert list(shared.iterdir()) == []
    assert list((squatted / "packages").iterdir()) == []
    assert_no_leftovers(host_before, atomicscan.state_dir)


@pytest.mark.parametrize("runtime", ["podman"])
def test_two_definitions_claiming_one_name_are_both_refused(atomicscan: Atomicscan) -> None:
    for file_name in ("0-squatter.toml", "mycorp.toml"):
        (atomicscan.config_dir / file_name).write_text("""\
type = "scanner"
scanner_name = "mycorp"
image_name = "localhost/atomicscan/packages:latest"

[[scans]]
name = "test"
args = ["true"]
""")

    listed = atomicscan("--list", "--json")
    scan = atomicscan("--scanner", "mycorp", "--remediate", "--trust-scanner", "mycorp", DEBIAN)

    assert "mycorp" not in [s["name"] for s in json.loads(listed.stdout)["scanners"]]
    warnings = [line for line in listed.stderr.splitlines() if "also defined" in line]
    assert len(warnings) == 2
    assert scan.returncode == 2
    assert "unknown scanner 'mycorp'" in _clean_lines(scan.stderr)[-1]


@pytest.mark.parametrize("runtime", ["podman"])
def test_host_file_argument_names_cannot_leave_the_run(
    atomicscan: Atomicscan, tmp_path: Path, unique: str
) -> None:
    escape = f"../../../../../tmp/atomicscan-trav-{unique}"
    (atomicscan.config_dir / "trav.toml").write_text(f"""\
type = "scanner"
scanner_name = "trav"
image_name = "localhost/atomicscan/packages:latest"

[[scans]]
name = "test"
args = ["true"]
host_files = [{json.dumps(escape)}]
""")
    feed = tmp_path / "feed"
    feed.write_text("x\n")

    listed = atomicscan("--list", "--json")
    run = atomicscan("--scanner", "trav", "--scanner-args", f"{escape}={feed}", ALPINE)

    assert "trav" not in [s["name"] for s in json.loads(listed.stdout)["scanners"]]
    assert run.returncode == 2
    assert not Path(f"/tmp/atomicscan-trav-{unique}").exists()


def test_a_lone_surrogate_from_a_scanner_fails_its_target_in_one_line(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    atomicscan.add_scanner("surrogate", (
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        "printf '%s' '{\"Successful\":\"false\",\"Error\":\"bad \\ud800 error\"}' "
        '> "/scanout/$k/json"; done'))

    human = atomicscan("--scanner", "surrogate", ALPINE)
    as_json = atomicscan("--scanner", "surrogate", "--json", ALPINE)

    for run in (human, as_json):
        assert run.returncode == 1
        (line,) = _clean_lines(run.stderr)
        assert "lone surrogate" in line
    assert "\\ud800" not in as_json.stdout
    assert_no_leftovers(host_before, atomicscan.state_dir)


@pytest.mark.parametrize("runtime", ["podman"])
def test_plugins_and_list_print_hostile_file_names_escaped(atomicscan: Atomicscan) -> None:
    (atomicscan.config_dir / "x\x1b[2J\x1b]0;PWNED\x07.toml").write_text("""\
type = "scanner"
scanner_name = "packages"
image_name = "localhost/atomicscan/packages:latest"

[[scans]]
name = "test"
args = ["true"]
""")
    for args in (["plugins"], ["--list"], ["doctor"]):
        run = atomicscan(*args)
        assert ESC not in run.stdout + run.stderr and "\x07" not in run.stdout + run.stderr
        assert "x\\x1b[2J\\x1b]0;PWNED\\x07.toml" in run.stderr, args


@pytest.fixture(scope="module")
def volume_scanner_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scanner image that declares a VOLUME, which a runtime would back with host disk."""
    name = f"localhost/atomicscan-test/volume-scanner:{os.getpid()}"
    context = tmp_path_factory.mktemp("volume-scanner")
    (context / "Containerfile").write_text(
        "FROM localhost/atomicscan/packages:latest\nUSER root\n"
        "RUN mkdir /fill && chown 65534:65534 /fill\nVOLUME /fill\nUSER 65534\n")
    podman("build", "--pull=never", "--network", "none", "-q", "-t", name, str(context))
    load_from_podman(name, podman_env())
    try:
        yield name
    finally:
        subprocess.run(["docker", "rmi", "--force", name], capture_output=True, check=False,
                       env=dict(os.environ, DOCKER_HOST=DOCKER_HOST))
        podman("rmi", "--force", name, check=False)


def test_a_volume_in_the_scanner_image_is_no_unbounded_host_disk(
    atomicscan: Atomicscan, host_before: HostSnapshot, volume_scanner_image: str
) -> None:
    atomicscan.add_scanner("volfill", (
        'if head -c 300000000 /dev/zero > /fill/x 2>/dev/null; then w=yes; else w=no; fi; '
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        'printf \'{"Successful":"true","Custom":{"w":"%s"}}\' "$w" > "/scanout/$k/json"; done'),
        image=volume_scanner_image)

    run = atomicscan("--scanner", "volfill", "--json", ALPINE)

    assert run.returncode == 0, run.stderr
    assert run.json()["results"][0]["custom"] == {"w": "no"}
    assert_no_leftovers(host_before, atomicscan.state_dir)
