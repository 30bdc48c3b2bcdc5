"""Attacks on the report outputs (issue 12): where ``-o`` writes as root, what a hostile
scanner's findings do to SARIF, HTML and the table, and an ignore file's glob against a
path the image chose. Each attack fails its own output with one line, never the run."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import ALPINE, DEBIAN, Atomicscan
from schemas import sarif_schema

#: Findings no writer should trust: markup, controls, `..`, schemes, bad lines and severities.
HOSTILE_FINDINGS = [
    {"ID": "<script>alert(1)</script>", "Title": "\u001b[31mred\u001b]0;pwn\u0007 [bold]x[/]",
     "Severity": "\u202ecritical", "Description": "</td><img src=x onerror=alert(1)>",
     "Custom": {"path": "../../../etc/passwd\njavascript:alert(1)", "line": True,
                "package": "pkg:deb/debian/x@1?distro=<b>", "nested": {"a": [1, {"b": None}]}}},
    {"ID": "", "Title": "", "Severity": "high",
     "Custom": {"path": "javascript:alert(document.domain)", "line": 99999999999999}},
    {"ID": "\u00ff\u0000", "Title": "\u0085\u009b2J", "Severity": "LOW", "Custom": {"line": -3}},
    {"ID": "rule/with/slashes#and?query", "Title": "t" * 20000, "Severity": "unknown"},
]
HOSTILE = ("mkdir -p /scanout/$k; printf '%s' '"
           + json.dumps({"Successful": "true", "Vulnerabilities": HOSTILE_FINDINGS},
                        ensure_ascii=True).replace("'", "'\\''")
           + "' > /scanout/$k/json")
PER_TARGET = "for d in /scanin/*; do k=$(basename \"$d\"); {body}; done"


@pytest.fixture
def runtime() -> str:
    """podman only: these attacks are on atomicscan's writers, not on a runtime."""
    return "podman"


def _one_error_line(stderr: str, *needles: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("atomicscan: error:")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], stderr
    return errors[0]


def _sarif_valid(path: Path) -> dict[str, Any]:
    def no_constant(name: str) -> Any:
        raise AssertionError(f"{name} in SARIF")

    document: dict[str, Any] = json.loads(path.read_bytes().decode("utf-8"),
                                          parse_constant=no_constant)
    validator = jsonschema.Draft4Validator(sarif_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, errors[:5]
    return document


def test_per_target_path_that_is_a_file_fails_that_output_with_one_line(
    atomicscan: Atomicscan, tmp_path: Path
) -> None:
    existing = tmp_path / "existing"
    existing.write_text("keep me")

    run = atomicscan("--scanner", "packages", "-o", f"spdx-json={existing}",
                     "-o", f"sarif={tmp_path / 'run.sarif'}", DEBIAN, ALPINE)

    assert run.returncode == 1, run.stderr
    _one_error_line(run.stderr, "-o spdx-json", "not a directory")
    assert existing.read_text() == "keep me"
    _sarif_valid(tmp_path / "run.sarif")  # the other output is whole


def test_devices_and_fifos_are_written_into_never_replaced(
    atomicscan: Atomicscan, tmp_path: Path
) -> None:
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    full = tmp_path / "full"
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    for path, why in ((null, None), (full, "No space left"), (fifo, "no process reads")):
        run = atomicscan("--scanner", "packages", "-o", f"sarif={path}", DEBIAN)
        if why is None:
            assert run.returncode == 0, run.stderr
            assert "Traceback" not in run.stderr
        else:
            assert run.returncode == 1, run.stderr
            _one_error_line(run.stderr, "-o sarif", why)
    assert stat.S_ISCHR(null.lstat().st_mode) and stat.S_ISCHR(full.lstat().st_mode)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_dev_stdout_gets_the_document_and_stays_a_link(atomicscan: Atomicscan) -> None:
    before = Path("/dev/stdout").lstat()

    run = atomicscan("--scanner", "packages", "-o", "cyclonedx-json=/dev/stdout",
                     "-o", "table=/dev/stderr", DEBIAN)

    assert run.returncode == 0, run.stderr
    # The table follows on stdout too: no -o left stdout to it.
    document, _ = json.JSONDecoder().raw_decode(run.stdout)
    assert document["specVersion"] == "1.6"
    assert DEBIAN in run.stderr
    after = Path("/dev/stdout").lstat()
    assert stat.S_ISLNK(after.st_mode) and after.st_ino == before.st_ino


def test_a_link_planted_in_a_sticky_folder_is_not_followed(
    atomicscan: Atomicscan, tmp_path: Path
) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    victim = tmp_path / "victim"
    victim.write_text("root's file")
    planted = shared / "report.sarif"
    planted.symlink_to(victim)
    os.lchown(planted, 4242, 4242)
    folder_link = shared / "reports"
    folder_link.symlink_to(tmp_path)
    os.lchown(folder_link, 4242, 4242)

    for where in (planted, folder_link / "victim"):
        run = atomicscan("--scanner", "packages", "-o", f"sarif={where}", DEBIAN)
        assert run.returncode == 1, run.stderr
        _one_error_line(run.stderr, "-o sarif", "world-writable")
    assert victim.read_text() == "root's file"
    assert planted.is_symlink() and folder_link.is_symlink()


def test_the_same_file_twice_is_a_usage_error(atomicscan: Atomicscan, tmp_path: Path) -> None:
    run = atomicscan("--scanner", "packages", "-o", f"sarif={tmp_path / 'x'}",
                     "-o", f"html={tmp_path / '.' / 'x'}", DEBIAN)

    assert run.returncode == 2, run.stderr
    _one_error_line(run.stderr, "both write")
    assert not (tmp_path / "x").exists()


def test_hostile_findings_give_valid_sarif_escaped_html_and_a_clean_table(
    atomicscan: Atomicscan, tmp_path: Path
) -> None:
    atomicscan.add_scanner("hostile", PER_TARGET.format(body=HOSTILE))

    run = atomicscan("--scanner", "hostile", "-o", f"sarif={tmp_path / 'r.sarif'}",
                     "-o", f"html={tmp_path / 'r.html'}", "-o", f"json={tmp_path / 'r.json'}",
                     "-o", "table", "--fail-on", "high", DEBIAN)

    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    for text in (run.stdout, run.stderr):
        assert not any(char in text for char in "\x1b\x07\x00\x85\x9b\u202e"), text
    assert "\\x1b[31mred" in run.stdout and "[bold]x[/]" in run.stdout
    sarif = _sarif_valid(tmp_path / "r.sarif")
    results = sarif["runs"][0]["results"]
    assert len(results) == len(HOSTILE_FINDINGS)
    rules = sarif["runs"][0]["tool"]["driver"]["rules"]
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in results)
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results]
    assert not any(":" in uri.split("/", 1)[0] for uri in uris), uris  # no scheme
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>alert" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'href="javascript' not in page
    json.loads((tmp_path / "r.json").read_text(), parse_constant=float)


def test_an_ignore_glob_against_a_path_the_image_chose_finishes(
    atomicscan: Atomicscan, tmp_path: Path
) -> None:
    long_path = "/" + "a/" * 3000 + "b"
    finding = {"ID": "X-1", "Title": "deep", "Severity": "critical",
               "Custom": {"path": long_path}}
    body = ("mkdir -p /scanout/$k; printf '%s' '"
            + json.dumps({"Successful": "true", "Vulnerabilities": [finding]})
            + "' > /scanout/$k/json")
    atomicscan.add_scanner("deep", PER_TARGET.format(body=body))
    ignore = tmp_path / "ignore.toml"
    ignore.write_text('[[ignore]]\nid = "X-1"\nreason = "r"\n'
                      'path = "/**/**/**/**/**/**/**/**/**/**/**/**/c"\n'
                      '[[ignore]]\nid = "X-1"\nreason = "deep paths are fine"\n'
                      'path = "/**/a/*a*a*a*a*a*/**/b"\n')

    run = atomicscan("--scanner", "deep", "--ignore-file", str(ignore), "--fail-on", "low",
                     "--json", DEBIAN)

    assert run.returncode == 3, run.stderr  # the second entry wants "aaaaa": no match
    (result,) = run.json()["results"]
    assert "suppressed" not in result["findings"][0]
    ignore.write_text('[[ignore]]\nid = "X-1"\nreason = "deep paths are fine"\n'
                      'path = "/**/**/**/**/**/**/**/**/**/**/**/**/b"\n')
    run = atomicscan("--scanner", "deep", "--ignore-file", str(ignore), "--fail-on", "low",
                     "--json", DEBIAN)
    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert result["findings"][0]["suppressed"] == {"reason": "deep paths are fine"}


@pytest.mark.parametrize("content", [b"\xff\xfe[[ignore]]", b"[[ignore]]\n" * 200_000, None])
def test_unusable_ignore_files_are_one_line_and_exit_2(
    atomicscan: Atomicscan, tmp_path: Path, content: bytes | None
) -> None:
    ignore = tmp_path / "ignore.toml"
    if content is None:
        os.mkfifo(ignore)  # nobody writes it: reading must not block
    else:
        ignore.write_bytes(content)

    run = atomicscan("--scanner", "packages", "--ignore-file", str(ignore), DEBIAN)

    assert run.returncode == 2, run.stderr
    _one_error_line(run.stderr, str(ignore))
