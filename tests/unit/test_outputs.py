"""``-o FORMAT[=PATH]``: parsing, checks before the scan, and where documents are written."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from atomicscan import (
    FormatError,
    FormatRegistry,
    OutputFormat,
    Report,
    ScanResult,
    UsageError,
    outputs,
)
from atomicscan.outputs import (
    OutputError,
    OutputRequest,
    OutputWriter,
    check_requests,
    safe_file_name,
    write_file,
)


def _result(target: str, ident: str) -> ScanResult:
    return ScanResult(target=target, target_id=ident, target_type="image", runtime="podman",
                      scanner="packages", scan_type="inventory", successful=True,
                      started_at="s", finished_at="f")


def _report(*results: ScanResult, results_dir: Path | None = None) -> Report:
    return Report(run_id="r", scanner="packages", scan_type="inventory", started_at="s",
                  finished_at="f", results_dir=results_dir, results=results)


def _registry() -> FormatRegistry:
    registry = FormatRegistry()
    registry.add(OutputFormat("names", "target names", ".txt",
                              write_run=lambda r: " ".join(x.target for x in r.results).encode()))
    registry.add(OutputFormat("sbom-ish", "one per target", ".sbom",
                              write_target=lambda res, rep: f"sbom of {res.target}".encode()))

    def broken(report: Report) -> bytes:
        raise FormatError("cannot write this one")
    registry.add(OutputFormat("broken", "always fails", ".x", write_run=broken))
    return registry


def _writer() -> OutputWriter:
    return OutputWriter(_registry(), lambda report: b"TABLE\n")


@pytest.mark.parametrize(("spec", "parsed"), [
    ("json", OutputRequest("json")),
    ("sarif=out/x.sarif", OutputRequest("sarif", Path("out/x.sarif"))),
    ("html=a=b.html", OutputRequest("html", Path("a=b.html"))),
])
def test_output_specs_parse(spec: str, parsed: OutputRequest) -> None:
    assert OutputRequest.parse(spec) == parsed


@pytest.mark.parametrize("spec", ["", "=x", "json="])
def test_malformed_output_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError, match="FORMAT or FORMAT=PATH"):
        OutputRequest.parse(spec)


def test_unknown_formats_and_two_stdout_documents_are_refused_before_the_scan() -> None:
    with pytest.raises(UsageError, match="unknown format; known: broken, json, names"):
        check_requests([OutputRequest("nope")], _registry())
    with pytest.raises(UsageError, match="both print on stdout"):
        check_requests([OutputRequest("json"), OutputRequest("names")], _registry())
    check_requests([OutputRequest("json"), OutputRequest("names", Path("x"))], _registry())


def test_run_formats_go_to_stdout_or_a_file(tmp_path: Path) -> None:
    report = _report(_result("a", "1" * 64), _result("b", "2" * 64))
    out, table, _names = _writer().write(report, [
        OutputRequest("json"), OutputRequest("table", tmp_path / "t.txt"),
        OutputRequest("names", tmp_path / "names.txt")])
    assert out.stdout is not None and not isinstance(out.stdout, bytes)  # streamed in parts
    printed = b"".join(out.stdout)
    assert json.loads(printed)["summary"]["targets"] == 2
    assert printed == (json.dumps(report.to_json(), indent=2) + "\n").encode()
    assert table.files == (tmp_path / "t.txt",) and (tmp_path / "t.txt").read_bytes() == \
        b"TABLE\n"
    assert (tmp_path / "names.txt").read_text() == "a b"


def test_a_big_json_report_is_printed_in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "JSON_PART_BYTES", 100)
    document = {"results": [{"name": f"p{n}", "version": "1.0"} for n in range(50)]}
    parts = list(outputs.json_parts(document))
    assert len(parts) > 10
    assert b"".join(parts) == (json.dumps(document, indent=2) + "\n").encode()


def test_a_per_target_format_with_one_target_is_one_document(tmp_path: Path) -> None:
    report = _report(_result("a", "1" * 64))
    (to_stdout,) = _writer().write(report, [OutputRequest("sbom-ish")])
    assert to_stdout.stdout == b"sbom of a"
    (to_file,) = _writer().write(report, [OutputRequest("sbom-ish", tmp_path / "one.sbom")])
    assert (tmp_path / "one.sbom").read_bytes() == b"sbom of a" and to_file.files


def test_a_per_target_format_with_several_targets_writes_a_file_each(tmp_path: Path) -> None:
    results_dir = tmp_path / "run"
    results_dir.mkdir()
    report = _report(_result("localhost/app:1", "1" * 64), _result("web", "2" * 64),
                     results_dir=results_dir)
    (into_dir,) = _writer().write(report, [OutputRequest("sbom-ish", tmp_path / "sboms")])
    assert sorted(p.name for p in into_dir.files) == ["app_1-111111111111.sbom",
                                                     "web-222222222222.sbom"]
    (default,) = _writer().write(report, [OutputRequest("sbom-ish")])
    assert default.stdout is None
    assert sorted(str(p.relative_to(results_dir)) for p in default.files) == [
        "app_1-111111111111/sbom-ish.sbom", "web-222222222222/sbom-ish.sbom"]


def test_a_format_that_fails_is_one_error_and_the_others_are_written(tmp_path: Path) -> None:
    report = _report(_result("a", "1" * 64))
    broken, names = _writer().write(report, [OutputRequest("broken", tmp_path / "x"),
                                             OutputRequest("names", tmp_path / "n")])
    assert broken.errors == ("-o broken: cannot write this one",) and not broken.files
    assert names.files == (tmp_path / "n",)


@pytest.mark.parametrize(("target", "ident", "name"), [
    ("../../etc/passwd", "a" * 64, "passwd-aaaaaaaaaaaa"),
    ("..", "b" * 64, None),
    ("img:tag\n\x1b[2J", "c" * 64, None),
    ("/abs/path", "../../x", None),
])
def test_file_names_from_hostile_targets_stay_in_their_folder(target: str, ident: str,
                                                               name: str | None) -> None:
    made = safe_file_name(_result(target, ident))
    assert "/" not in made and made not in {".", ".."} and made.isprintable()
    if name is not None:
        assert made == name


def test_a_symlink_planted_at_the_path_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    planted = tmp_path / "report.sarif"
    planted.symlink_to(victim)
    write_file(planted, b"doc")
    assert victim.read_text() == "keep"
    assert not planted.is_symlink() and planted.read_bytes() == b"doc"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_unwritable_place_is_one_output_error(tmp_path: Path) -> None:
    from atomicscan.outputs import OutputError

    with pytest.raises(OutputError, match="cannot write"):
        write_file(tmp_path / "missing-dir" / "x.json", b"{}")


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"ATOMICSCAN_CONFIG_DIR": str(tmp_path / "none"), "PATH": "/usr/bin:/bin",
           "ATOMICSCAN_IGNORE_FILE": os.devnull}
    return subprocess.run([sys.executable, "-m", "atomicscan", *args], capture_output=True,
                          text=True, env=env, check=False, timeout=60)


@pytest.mark.parametrize(("args", "says"), [
    (["-o", "nope", "img"], "unknown format"),
    (["-o", "json", "--json", "img"], "both print on stdout"),
    (["-o", "sarif", "-o", "html", "img"], "both print on stdout"),
    (["--fail-on", "severe", "img"], "--fail-on"),
    (["--severity", "urgent", "img"], "--severity"),
])
def test_output_and_gate_usage_errors_are_one_line_exit_2(tmp_path: Path, args: list[str],
                                                          says: str) -> None:
    run = _cli(*args, tmp_path=tmp_path)
    assert run.returncode == 2, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and says in run.stderr
    assert "Traceback" not in run.stderr


def test_a_malformed_ignore_file_names_its_line_exit_2(tmp_path: Path) -> None:
    ignores = tmp_path / "ignore.toml"
    ignores.write_text('[[ignore]]\nid = "CVE-1"\nreason = "ok"\n\n[[ignore]]\nid = "X"\n'
                       'reasn = "typo"\n')
    run = _cli("--ignore-file", str(ignores), "img", tmp_path=tmp_path)
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert f"{ignores}:7" in line and "reasn" in line


def test_help_and_list_show_every_format(tmp_path: Path) -> None:
    helped = _cli("--help", tmp_path=tmp_path)
    formats = " ".join(helped.stdout.split()).split("Formats: ")[1].split(".")[0].split(", ")
    assert {"html", "json", "sarif", "table"} <= set(formats)
    for text in ("--fail-on", "--ignore-file", "--severity", "-o, --output", "3 "):
        assert text in helped.stdout
    listed = json.loads(_cli("--list", "--json", tmp_path=tmp_path).stdout)
    assert {"html", "json", "sarif", "table"} <= {f["name"] for f in listed["formats"]}


def test_devices_and_fifos_are_written_into_never_replaced(tmp_path: Path) -> None:
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    write_file(null, b"x")
    assert stat.S_ISCHR(null.lstat().st_mode)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="no process reads that FIFO"):
        write_file(fifo, b"x")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    with pytest.raises(OutputError, match="No space left"):
        write_file(Path("/dev/full"), b"x")


def test_own_descriptors_are_written_as_opened(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = ("from pathlib import Path; from atomicscan.outputs import write_file; "
            "write_file(Path('/dev/stdout'), b'doc\\n'); write_file(Path('/dev/fd/1'), b'2\\n')")
    with out.open("wb") as handle:
        subprocess.run([sys.executable, "-c", code], stdout=handle, check=True)
    assert out.read_bytes() == b"doc\n2\n"
    assert Path("/dev/stdout").is_symlink()


def test_links_planted_in_a_sticky_folder_are_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("planting another user's link needs root")
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (shared / "x.sarif").symlink_to(victim)
    (shared / "dir").symlink_to(tmp_path)
    for link in ("x.sarif", "dir"):
        os.lchown(shared / link, 4242, 4242)
    for path in (shared / "x.sarif", shared / "dir" / "victim"):
        with pytest.raises(OutputError, match="world-writable"):
            write_file(path, b"x")
    assert victim.read_text() == "keep"
    os.lchown(shared / "x.sarif", 0, 0)  # the user's own link: replaced, not followed
    write_file(shared / "x.sarif", b"new")
    assert victim.read_text() == "keep" and (shared / "x.sarif").read_bytes() == b"new"


def test_an_existing_file_keeps_its_permissions(tmp_path: Path) -> None:
    private = tmp_path / "report.json"
    private.write_text("old")
    private.chmod(0o600)
    write_file(private, b"new")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_the_same_file_twice_is_refused_after_resolving(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "a.sarif")
    with pytest.raises(UsageError, match="both write"):
        check_requests([OutputRequest("json", tmp_path / "a.sarif"),
                        OutputRequest("names", tmp_path / "link")], _registry())
    check_requests([OutputRequest("json", Path("/dev/null")),
                    OutputRequest("names", Path("/dev/null"))], _registry())


def test_a_per_target_path_that_is_a_file_is_one_error(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.write_text("keep")
    report = _report(_result("a", "1" * 64), _result("b", "2" * 64), results_dir=tmp_path)
    (written,) = _writer().write(report, [OutputRequest("sbom-ish", existing)])
    assert written.files == ()
    assert len(written.errors) == 1 and "not a directory" in written.errors[0]


def test_loading_the_plugins_imports_no_heavy_format_library(tmp_path: Path) -> None:
    # Every scan loads the plugins: cyclonedx-python-lib and Jinja2 are imported only
    # when an SBOM or a page is written (a host scanning 50 images one by one pays 50 times).
    code = ("import sys; from atomicscan.plugins import Plugins; p = Plugins.load(); "
            "assert p.formats.get('cyclonedx-json') and p.formats.get('html'); "
            "print(sorted(m for m in ('cyclonedx', 'jinja2', 'packageurl', 'sqlalchemy') "
            "if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"ATOMICSCAN_CONFIG_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                         check=False, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
