"""Reading untrusted /scanout content (fast tier: plain files in a temp dir)."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
