"""The run's own defences that need no runtime (fast tier): hostile text, timeouts, result
paths, cleanup's judgement of labels, cache trust, `--rootfs /` and untrusted fix scripts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from atomicscan import cache, cleanup
from atomicscan.errors import UsageError
from atomicscan.plugins import Plugins
from atomicscan.render import print_report
from atomicscan.results import Report, ScanResult
from atomicscan.runtime import Target
from atomicscan.safetext import console, printable
from atomicscan.scan import (
    DEFAULT_TIMEOUT,
    _rootfs_targets,
    check_timeout,
    is_builtin,
    scanner_results_dir,
)
from atomicscan.scanners import Scanner, ScanType


def _result(**changes: object) -> ScanResult:
    base = ScanResult(target="t", target_id="0" * 64, target_type="image", runtime="podman",
                      scanner="s", scan_type="x", successful=True, started_at="a",
                      finished_at="b")
    return base.replace(**changes)


@pytest.mark.parametrize(("text", "shown"), [
    ("plain", "plain"),
    ("a\nb", "a\\nb"),
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
    ("tab\there\r", "tab\\there\\r"),
    ("\x9b31m", "\\x9b31m"),
    ("rtl\u202eevil", "rtl\\u202eevil"),
    ("[/red] stays", "[/red] stays"),
    ("ünïcode ✓", "ünïcode ✓"),
])
def test_printable_escapes_controls_and_keeps_the_rest(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_report_with_markup_and_escapes_prints_them_as_text() -> None:
    hostile = "[/red][bold]x\x1b[2J\nok fake"
    report = Report(run_id="r", scanner="s[/b]", scan_type="x", started_at="a",
                    finished_at="b", results_dir=None, results=(
                        _result(target=hostile, os={"pretty_name": hostile}),
                        _result(successful=False, error=hostile, notes=(hostile,))))
    out = io.StringIO()

    print_report(console(file=out), report,
                 Plugins.load(entry_points=False).describe_result)

    text = out.getvalue()
    assert "\x1b" not in text
    assert text.count("[/red][bold]x\\x1b[2J\\nok fake") >= 4
    assert len(text.splitlines()) == 4


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 0.0, -5.0])
def test_timeouts_that_are_no_time_limit_are_refused(value: float) -> None:
    with pytest.raises(UsageError, match="--timeout"):
        check_timeout(value)


def test_a_batch_has_a_time_limit_by_default() -> None:
    assert check_timeout(None) == DEFAULT_TIMEOUT
    assert check_timeout(2.5) == 2.5


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "1e999", "soon"])
def test_cli_refuses_bad_timeouts_with_exit_2(tmp_path: Path, value: str) -> None:
    env = {"ATOMICSCAN_CONFIG_DIR": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "atomicscan", "--scanner", "packages",
                          "--timeout", value, "img"], capture_output=True, text=True,
                         env=env, check=False, timeout=60)
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("atomicscan: error:") and "--timeout" in line


@pytest.mark.parametrize("name", ["../../../tmp/x", "/tmp/x", "..", "a/b", "."])
def test_results_never_leave_the_results_root(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError, match="outside"):
        scanner_results_dir(tmp_path, name)
    assert scanner_results_dir(tmp_path, "packages") == tmp_path.resolve() / "packages"


def test_a_symlinked_scanner_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "evil").symlink_to(tmp_path)
    with pytest.raises(UsageError, match="outside"):
        scanner_results_dir(tmp_path / "root", "evil")


def test_rootfs_of_the_host_root_needs_the_explicit_option(tmp_path: Path) -> None:
    link = tmp_path / "root-link"
    link.symlink_to("/")
    for path in (Path("/"), link, Path("/usr/..")):
        with pytest.raises(UsageError, match="--allow-host-rootfs"):
            _rootfs_targets([path], allow_host_root=False)
    (target,) = _rootfs_targets([link], allow_host_root=True)
    assert target.id == "/"
    assert _rootfs_targets([tmp_path], allow_host_root=False)[0].id == str(tmp_path.resolve())


def test_only_scanners_of_the_scanners_folder_are_built_in(tmp_path: Path) -> None:
    def scanner(origin: str) -> Scanner:
        return Scanner(name="s", image="i", scan_types={"x": ScanType("x", ())},
                       default_scan="x", origin=origin)

    builtin = Path(__file__).resolve().parents[2] / "scanners" / "openscap" / "scanner.toml"
    assert is_builtin(scanner(str(builtin)))
    assert not is_builtin(scanner(str(tmp_path / "openscap.toml")))
    assert not is_builtin(scanner("some-plugin"))


@pytest.mark.parametrize(("name", "label", "removed"), [
    ("atomicscan-20260101000000-0badc0de-1", "20260101000000-0badc0de@TAG", True),
    ("atomicscan-20260101000000-0badc0de-1", "x", False),
    ("atomicscan-20260101000000-0badc0de-1", "20260101000000-0badc0de", False),
    ("atomicscan-20260101000000-0badc0de-1", "20260101000000-0badc0de@other", False),
    ("atomicscan-20260101000000-0badc0de-1", "20260101000000-12345678@TAG", False),
    ("my-database", "20260101000000-0badc0de@TAG", False),
    ("atomicscan-20260101000000-0badc0de-1x", "20260101000000-0badc0de@TAG", False),
    ("atomicscan-x-1", "x@TAG", False),
])
def test_cleanup_removes_only_containers_of_its_own_dead_runs(
        name: str, label: str, removed: bool) -> None:
    dead = {"20260101000000-0badc0de", "x"}
    found = cleanup._dead_run_of(name, label.replace("TAG", "abcd1234"), "abcd1234", dead)
    assert (found is not None) is removed


def _stored(directory: Path) -> tuple[str, Target]:
    target = Target(ref="img", id="1" * 64, type="image", runtime="podman", key="1" * 64)
    key = cache.cache_key(target, "s", "scanner-id", "x", {}, ())
    assert key is not None
    cache.store(directory, key, _result(target_id=target.id))
    return key, target


def test_cache_entries_are_private_and_trusted_when_ours(tmp_path: Path) -> None:
    key, target = _stored(tmp_path / "cache")
    entry = tmp_path / "cache" / f"{key}.json"
    assert entry.stat().st_mode & 0o777 == 0o600
    loaded = cache.load(tmp_path / "cache", key, target)
    assert loaded is not None and loaded.cached


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_cache_entries_of_another_user_are_ignored(tmp_path: Path) -> None:
    key, target = _stored(tmp_path / "cache")
    entry = tmp_path / "cache" / f"{key}.json"
    os.chown(entry, 65534, 65534)
    assert cache.load(tmp_path / "cache", key, target) is None


def test_writable_cache_entries_and_directories_are_ignored(tmp_path: Path) -> None:
    key, target = _stored(tmp_path / "cache")
    entry = tmp_path / "cache" / f"{key}.json"
    entry.chmod(0o622)
    assert cache.load(tmp_path / "cache", key, target) is None
    entry.chmod(0o600)
    (tmp_path / "cache").chmod(0o777)
    assert cache.load(tmp_path / "cache", key, target) is None


def test_a_symlinked_cache_entry_is_ignored(tmp_path: Path) -> None:
    key, target = _stored(tmp_path / "cache")
    entry = tmp_path / "cache" / f"{key}.json"
    real = tmp_path / "elsewhere.json"
    real.write_text(entry.read_text())
    real.chmod(0o600)
    entry.unlink()
    entry.symlink_to(real)
    assert cache.load(tmp_path / "cache", key, target) is None


def test_a_hostile_cache_document_is_a_miss(tmp_path: Path) -> None:
    key, target = _stored(tmp_path / "cache")
    entry = tmp_path / "cache" / f"{key}.json"
    for text in ("[" * 100_000, json.dumps({"successful": True}), "1" * 5000):
        entry.write_text(text)
        assert cache.load(tmp_path / "cache", key, target) is None


def test_results_under_a_directory_others_can_write_are_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(UsageError, match="writable by others"):
        scanner_results_dir(shared, "packages")
    # Below a sticky directory others can't rename what is ours: a private root is fine.
    (shared / "mine").mkdir(mode=0o700)
    assert scanner_results_dir(shared / "mine", "packages").name == "packages"
    loose = tmp_path / "loose"
    (loose / "inner").mkdir(parents=True)
    loose.chmod(0o777)
    with pytest.raises(UsageError, match="writable by others"):
        scanner_results_dir(loose / "inner", "packages")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_scanner_folder_planted_by_another_user_is_refused(tmp_path: Path) -> None:
    (tmp_path / "packages").mkdir(mode=0o700)
    os.chown(tmp_path / "packages", 65534, 65534)
    with pytest.raises(UsageError, match="belongs to uid 65534"):
        scanner_results_dir(tmp_path, "packages")


def test_lone_surrogates_are_escaped_when_printed() -> None:
    assert printable("dir\udc9bx") == "dir\\udc9bx"


@pytest.mark.parametrize("user", ["1000\nRUN rm -rf /", "a b", "x;y", "\x1b[2J"])
def test_remediation_refuses_image_users_that_would_add_build_lines(user: str) -> None:
    from atomicscan.builtin.openscap_remediation import RemediationError, containerfile

    with pytest.raises(RemediationError):
        containerfile("0" * 64, user)
    assert containerfile("0" * 64, "app:app").endswith("USER app:app\n")
