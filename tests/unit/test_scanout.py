"""Reading untrusted /scanout content (fast tier: plain files in a temp dir)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from atomicscan.safejson import MAX_DEPTH, JSONRefused, loads_strict, nesting_depth
from atomicscan.scanout import OutputLimits, read_target_output


def _target(tmp_path: Path, key: str = "k1") -> Path:
    out = tmp_path / "out" / key
    out.mkdir(parents=True)
    return out


def test_good_output_is_read_and_plain_files_copied(tmp_path: Path) -> None:
    out = _target(tmp_path)
    (out / "json").write_text(json.dumps({"Successful": "true"}))
    (out / "report.html").write_text("<html/>")
    (out / "sub").mkdir()
    (out / "sub" / "x.xml").write_text("<x/>")

    got = read_target_output(tmp_path / "out", "k1", tmp_path / "dest")

    assert got.error is None and got.document == {"Successful": "true"}
    assert (tmp_path / "dest" / "sub" / "x.xml").read_text() == "<x/>"
    assert (tmp_path / "dest" / "report.html").is_file()


def test_symlinked_json_is_refused_and_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text('{"Successful": "true", "s": "SECRET"}')
    out = _target(tmp_path)
    (out / "json").symlink_to(secret)
    (out / "copy").symlink_to(secret)

    got = read_target_output(tmp_path / "out", "k1", tmp_path / "dest")

    assert got.document is None and "symlink" in (got.error or "")
    assert not any(p.is_symlink() for p in (tmp_path / "dest").rglob("*"))
    assert any("symlink copy" in note for note in got.notes)


def test_symlinked_target_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "json").write_text("{}")
    (tmp_path / "out" / "k1").symlink_to(elsewhere)
    got = read_target_output(tmp_path / "out", "k1", None)
    assert got.document is None and "not a directory" in (got.error or "")


def test_oversized_json_is_refused_and_not_copied(tmp_path: Path) -> None:
    out = _target(tmp_path)
    (out / "json").write_bytes(b" " * 2048)
    got = read_target_output(tmp_path / "out", "k1", tmp_path / "dest",
                             OutputLimits(json_bytes=1024))
    assert "limit" in (got.error or "")
    assert not (tmp_path / "dest" / "json").exists()


def test_fifo_is_skipped_not_opened(tmp_path: Path) -> None:
    out = _target(tmp_path)
    os.mkfifo(out / "json")
    got = read_target_output(tmp_path / "out", "k1", tmp_path / "dest")
    assert "not a regular file" in (got.error or "")


def test_missing_and_non_object_output(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert "no output" in (read_target_output(tmp_path / "out", "k1", None).error or "")
    out = _target(tmp_path, "k2")
    (out / "json").write_text("[1, 2]")
    assert "not a JSON object" in (read_target_output(tmp_path / "out", "k2", None).error or "")


def _entries(root: Path) -> int:
    return sum(1 for _ in root.rglob("*")) if root.exists() else 0


def test_empty_directories_count_and_fail_the_target_alone(tmp_path: Path) -> None:
    out = _target(tmp_path)
    (out / "json").write_text('{"Successful": "true"}')
    for index in range(30):
        (out / f"d{index}").mkdir()
    other = _target(tmp_path, "k2")
    (other / "json").write_text('{"Successful": "true"}')
    limits = OutputLimits(max_entries=10)

    got = read_target_output(tmp_path / "out", "k1", tmp_path / "dest" / "k1", limits)
    fine = read_target_output(tmp_path / "out", "k2", tmp_path / "dest" / "k2", limits)

    assert got.document is None and got.notes == []
    assert got.error == ("scanner output /scanout/k1 refused: more than 10 entries "
                         "(files, directories, links and others)")
    assert not (tmp_path / "dest" / "k1").exists(), "a refused target's copy is not kept"
    assert fine.error is None and fine.document == {"Successful": "true"}


@pytest.mark.parametrize("kind", ["dir", "symlink", "fifo", "nested"])
def test_every_kind_of_entry_counts_even_without_a_copy(tmp_path: Path, kind: str) -> None:
    out = _target(tmp_path)
    (out / "json").write_text("{}")
    for index in range(10):
        path = out / f"e{index}"
        if kind == "dir":
            path.mkdir()
        elif kind == "symlink":
            path.symlink_to("/etc/passwd")
        elif kind == "fifo":
            os.mkfifo(path)
        elif index:  # a directory "n" and nine more inside it: eleven entries too
            (out / "n" / path.name).mkdir(parents=True)
    limits = OutputLimits(max_entries=10)
    assert "more than 10 entries" in (read_target_output(tmp_path / "out", "k1", None,
                                                         limits).error or "")
    assert read_target_output(tmp_path / "out", "k1", None,
                              OutputLimits(max_entries=11)).error is None


def test_a_flood_of_odd_entries_gives_capped_notes(tmp_path: Path) -> None:
    out = _target(tmp_path)
    (out / "json").write_text('{"Successful": "true"}')
    for index in range(100):
        (out / f"link{index:03}").symlink_to("/etc/shadow")
        os.mkfifo(out / f"fifo{index:03}")

    got = read_target_output(tmp_path / "out", "k1", tmp_path / "dest",
                             OutputLimits(max_notes=20))

    assert got.error is None and got.document == {"Successful": "true"}
    assert len(got.notes) == 21
    assert got.notes[-1] == "180 more entries skipped in scanner output (at most 20 are listed)"
    assert _entries(tmp_path / "dest") == 1, "only json is copied"


def test_entries_at_the_limit_and_deep_directories(tmp_path: Path) -> None:
    out = _target(tmp_path)
    (out / "json").write_text("{}")
    deep = out.joinpath(*"abcdefghij")
    deep.mkdir(parents=True)
    (deep / "x").write_text("x")

    got = read_target_output(tmp_path / "out", "k1", tmp_path / "dest",
                             OutputLimits(max_entries=11, max_depth=3))

    assert got.error is None
    assert got.notes == ["skipped a/b/c/d/: deeper than 3 levels"]
    assert (tmp_path / "dest" / "a" / "b" / "c").is_dir()
    assert not (tmp_path / "dest" / "a" / "b" / "c" / "d").exists()


def test_hostile_names_are_escaped_in_notes(tmp_path: Path) -> None:
    out = _target(tmp_path)
    (out / "json").write_text("{}")
    os.mkfifo(os.fsencode(out) + b"/\x1b[2J\xff" + b"x" * 240)
    got = read_target_output(tmp_path / "out", "k1", tmp_path / "dest")
    (note,) = got.notes
    assert note.startswith("skipped \\x1b[2J\\xff") and note.endswith("...: not a regular file")
    assert "\x1b" not in note and len(note) < 300


@pytest.mark.parametrize(("content", "why"), [
    (b"[" * 100_000 + b"]" * 100_000, "nested 100000 levels deep (at most 64)"),
    (b'{"n": ' + b"9" * 5000 + b"}", "a number of 5000 characters (at most 100)"),
    (b'{"n": NaN}', "NaN is not a JSON number"),
    (b'{"n": [Infinity]}', "Infinity is not a JSON number"),
    (b'{"n": -Infinity}', "-Infinity is not a JSON number"),
    (b'{"n": 1e999}', "the number 1e999 is out of range"),
    (b'{"n": "\xff"}', "not UTF-8 (byte 7)"),
    (b'{"n": tru', "Expecting value: line 1 column 7"),
])
def test_hostile_json_fails_its_target_in_one_line(tmp_path: Path, content: bytes,
                                                   why: str) -> None:
    out = _target(tmp_path)
    (out / "json").write_bytes(content)
    got = read_target_output(tmp_path / "out", "k1", tmp_path / "dest")
    assert got.document is None
    assert got.error == f"scanner output /scanout/k1/json is not valid JSON: {why}"


def test_strict_loader_keeps_ordinary_documents() -> None:
    text = '{"a": [1, -2.5e3, "[[{{", "\\"[", null, true], "b": {"c": 12345678901234567890}}'
    assert loads_strict(text) == json.loads(text)
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_strict(nested.encode()) == json.loads(nested)
    with pytest.raises(JSONRefused, match="nested 65 levels"):
        loads_strict("[" + nested + "]")
    assert loads_strict("[[1]]", max_depth=2) == [[1]]


@pytest.mark.parametrize(("text", "depth"), [
    ("{}", 1), ('["]]]"]', 1), ('["\\"[["]', 1), ('["\\\\", ["x"]]', 2),
    ('"unterminated [[[[', 0), ("[" * 10 + "\n", 10), ('["a\n' + "[" * 50, 1),
])
def test_nesting_depth_skips_strings_as_json_reads_them(text: str, depth: int) -> None:
    assert nesting_depth(text) == depth


def test_nesting_depth_is_linear_on_escaped_quotes() -> None:
    # Each unterminated quote used to be rescanned to the end: quadratic.
    assert nesting_depth('"' + '\\"' * 2_000_000 + "[") == 0


def test_findings_use_the_common_severity_scale() -> None:
    from atomicscan.scan import _findings

    found = _findings({"Vulnerabilities": [
        {"Title": "a", "Severity": "Important", "Custom": {"cve_ids": ["CVE-1"]}},
        {"Title": "b", "Severity": "moderate"},
        {"Title": "c", "Severity": "info"},
        {"Title": "d"},
    ], "Results": [{"ID": "rule", "Title": "r", "Severity": "high"}]})
    assert [f.severity for f in found] == ["high", "medium", "low", "unknown", "high"]
    assert found[0].details == {"cve_ids": ["CVE-1"], "vendor_severity": "Important"}
    assert found[4].id == "rule"


def test_lone_surrogate_escapes_are_refused_and_pairs_kept() -> None:
    from atomicscan.safejson import JSONRefused, loads_strict

    assert loads_strict('{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    for text in ('{"a": "\\ud800"}', '{"\\udfff": 1}', '["x", ["\\ud800x"]]'):
        with pytest.raises(JSONRefused, match="surrogate"):
            loads_strict(text)
