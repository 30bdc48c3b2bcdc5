"""The ignore file: loading it (and its errors, one line each) and applying it to a report."""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from atomicscan.errors import AtomicscanError, ExitCode
from atomicscan.results import Finding, Report, ScanResult
from atomicscan.suppress import (
    DEFAULT_IGNORE_FILE,
    IGNORE_FILE_ENV,
    MAX_ENTRIES,
    MAX_FILE_BYTES,
    IgnoreFileError,
    IgnoreList,
    apply,
    default_ignore_file,
    load_ignore_file,
    load_ignores,
    parse_ignore_text,
    unused,
)

TODAY = date(2025, 3, 15)
IMAGE_ID = "sha256:" + "ab12cd34ef56" * 5 + "abcd"
OPENSSL = "pkg:deb/debian/openssl@3.0.15-1~deb12u1?arch=amd64&distro=debian-12"


def result(findings: tuple[Finding, ...], *, target: str = "debian:12",
           target_id: str = IMAGE_ID, successful: bool = True) -> ScanResult:
    return ScanResult(target=target, target_id=target_id, target_type="image",
                      runtime="podman", scanner="s", scan_type="t", successful=successful,
                      started_at="a", finished_at="b", findings=findings)


def report(*results: ScanResult) -> Report:
    return Report(run_id="r", scanner="s", scan_type="t", started_at="a", finished_at="b",
                  results_dir=None, results=results)


def finding(fid: str = "CVE-1", **details: Any) -> Finding:
    return Finding(id=fid, title="t", severity="high", details=details)


def ignores(text: str, today: date = TODAY) -> IgnoreList:
    return parse_ignore_text(Path("ign.toml"), text, today=today)


def error(text: str) -> IgnoreFileError:
    with pytest.raises(IgnoreFileError) as caught:
        ignores(text)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith("ign.toml")
    return caught.value


def suppressed(text: str, *results: ScanResult) -> list[str | None]:
    applied = apply(report(*results), ignores(text))
    return [f.suppressed for r in applied.results for f in r.findings]


# --- matching ------------------------------------------------------------------------------


def test_id_alone_suppresses_everywhere_and_keeps_findings() -> None:
    text = '[[ignore]]\nid = "CVE-1"\nreason = "accepted"\n'
    original = report(result((finding(), finding("CVE-2"))), result((finding(),), target="x"))
    applied = apply(original, ignores(text))
    assert [[f.suppressed for f in r.findings] for r in applied.results] == [
        ["accepted", None], ["accepted"]]
    assert [len(r.findings) for r in applied.results] == [2, 1]
    assert applied.results[0].findings[1] is original.results[0].findings[1]
    assert applied.to_json()["results"][0]["findings"][0]["suppressed"] == {
        "reason": "accepted"}


def test_id_is_exact() -> None:
    text = '[[ignore]]\nid = "CVE-1"\nreason = "r"\n'
    assert suppressed(text, result((finding("cve-1"), finding("CVE-10")))) == [None, None]


@pytest.mark.parametrize(("wanted", "hit"), [
    ("debian:12", True),
    ("debian:13", False),
    (IMAGE_ID, True),
    (IMAGE_ID.removeprefix("sha256:"), True),
    ("ab12cd34ef56", True),
    ("sha256:ab12cd34ef56ab", True),
    ("ab12cd34ef5", False),        # 11 characters: too short to be an ID prefix
    ("ab12cd34ef57", False),
    ("AB12CD34EF56", False),
])
def test_target_by_name_id_or_prefix(wanted: str, hit: bool) -> None:
    text = f'[[ignore]]\nid = "CVE-1"\ntarget = "{wanted}"\nreason = "r"\n'
    assert suppressed(text, result((finding(),))) == (["r"] if hit else [None])


@pytest.mark.parametrize(("wanted", "have", "hit"), [
    ("openssl", "openssl", True),
    ("openssl", OPENSSL, True),
    ("openss", OPENSSL, False),
    ("libssl3", OPENSSL, False),
    (OPENSSL, OPENSSL, True),
    ("pkg:deb/debian/openssl", OPENSSL, True),
    ("pkg:deb/debian/openssl@3.0.15-1~deb12u1", OPENSSL, True),
    ("pkg:deb/debian/openssl@3.0.14", OPENSSL, False),
    ("pkg:deb/debian/openssl?distro=debian-12", OPENSSL, True),
    ("pkg:deb/debian/openssl?distro=debian-11", OPENSSL, False),
    ("pkg:DEB/debian/openssl", OPENSSL, True),
    ("pkg:rpm/debian/openssl", OPENSSL, False),
    ("pkg:deb/ubuntu/openssl", OPENSSL, False),
    ("pkg:deb/debian/openssl", "openssl", False),   # a name cannot prove the distro
    ("openssl", None, False),
    ("pkg:npm/%40angular/core", "pkg:npm/%40angular/core@17.0.0", True),
    ("core", "pkg:npm/%40angular/core@17.0.0", True),
])
def test_package_by_name_or_purl(wanted: str, have: str | None, hit: bool) -> None:
    text = f'[[ignore]]\nid = "CVE-1"\npackage = "{wanted}"\nreason = "r"\n'
    details = {} if have is None else {"package": have}
    assert suppressed(text, result((finding(**details),))) == (["r"] if hit else [None])


@pytest.mark.parametrize(("wanted", "have", "hit"), [
    ("/etc/shadow", "/etc/shadow", True),
    ("etc/shadow", "/etc/shadow", True),
    ("/etc/shadow", "etc//shadow", True),
    ("/etc/./shadow", "/etc/x/../shadow", True),
    ("/etc/shadow", "/etc/shadow-", False),
    ("/etc/*", "/etc/shadow", True),
    ("/etc/*", "/etc/ssh/sshd_config", False),
    ("/etc/**", "/etc/ssh/sshd_config", True),
    ("/usr/**/site-packages/*.dist-info", "/usr/lib/python3/site-packages/a.dist-info", True),
    ("/usr/**/bin", "/usr/bin", True),
    ("/etc/sh?dow", "/etc/shadow", True),
    ("/etc/[s]hadow", "/etc/shadow", False),       # brackets are literal
    ("/etc/shadow", None, False),
])
def test_path_exact_or_glob(wanted: str, have: str | None, hit: bool) -> None:
    text = f'[[ignore]]\nid = "CVE-1"\npath = "{wanted}"\nreason = "r"\n'
    details = {} if have is None else {"path": have}
    assert suppressed(text, result((finding(**details),))) == (["r"] if hit else [None])


def test_every_narrowing_key_must_match() -> None:
    text = ('[[ignore]]\nid = "CVE-1"\ntarget = "debian:12"\npackage = "openssl"\n'
            'path = "/usr/lib/*"\nreason = "r"\n')
    both = finding(package=OPENSSL, path="/usr/lib/libssl.so")
    assert suppressed(text, result((both,)), result((both,), target="other",
                                                    target_id="sha256:ff")) == ["r", None]
    wrong_path = finding(package=OPENSSL, path="/lib/libssl.so")
    assert suppressed(text, result((wrong_path,))) == [None]


def test_first_matching_entry_gives_the_reason() -> None:
    text = ('[[ignore]]\nid = "CVE-1"\npackage = "openssl"\nreason = "narrow"\n'
            '[[ignore]]\nid = "CVE-1"\nreason = "broad"\n')
    assert suppressed(text, result((finding(package="openssl"), finding()))) == [
        "narrow", "broad"]


def test_an_earlier_suppression_is_replaced_by_the_entry() -> None:
    text = '[[ignore]]\nid = "CVE-1"\nreason = "new"\n'
    old = Finding(id="CVE-1", title="t", suppressed="old")
    assert suppressed(text, result((old,))) == ["new"]


def test_failed_results_are_marked_too() -> None:
    text = '[[ignore]]\nid = "CVE-1"\nreason = "r"\n'
    assert suppressed(text, result((finding(),), successful=False)) == ["r"]


def test_unused_entries() -> None:
    text = ('[[ignore]]\nid = "CVE-1"\nreason = "used"\n'
            '[[ignore]]\nid = "CVE-9"\nreason = "unused"\n'
            '[[ignore]]\nid = "CVE-1"\ntarget = "other"\nreason = "narrow, unused"\n')
    left = unused(report(result((finding(),))), ignores(text))
    assert [(e.id, e.line) for e in left] == [("CVE-9", 4), ("CVE-1", 7)]


def test_empty_file_and_comments_only() -> None:
    assert ignores("") == IgnoreList(source=Path("ign.toml"))
    assert ignores("# nothing yet\n\n").entries == ()


# --- expiry --------------------------------------------------------------------------------


def test_expiry_is_inclusive_and_expired_entries_are_listed() -> None:
    text = ('[[ignore]]\nid = "CVE-1"\nreason = "until today"\nexpires = 2025-03-15\n'
            '\n[[ignore]]\nid = "CVE-2"\nreason = "lapsed"\nexpires = 2025-03-14\n')
    loaded = ignores(text)
    assert [e.id for e in loaded.entries] == ["CVE-1"]
    assert [(e.id, e.reason, e.expires, e.line) for e in loaded.expired] == [
        ("CVE-2", "lapsed", date(2025, 3, 14), 6)]
    assert loaded.expired[0].describe() == "CVE-2 (line 6, expired 2025-03-14): lapsed"
    assert suppressed(text, result((finding("CVE-1"), finding("CVE-2")))) == [
        "until today", None]
    tomorrow = ignores(text, today=date(2025, 3, 16))
    assert [e.id for e in tomorrow.expired] == ["CVE-1", "CVE-2"]
    assert tomorrow.entries == ()


# --- malformed files: one line naming the file, the line and the problem -------------------


def test_error_is_a_usage_error() -> None:
    exc = error('[[ignore]]\nid = "CVE-1"\n')
    assert isinstance(exc, AtomicscanError)
    assert exc.exit_code == ExitCode.USAGE
    assert int(exc.exit_code) == 2


def test_syntax_error_names_line_and_column() -> None:
    exc = error('[[ignore]]\nid = "CVE-1"\nreason = \n')
    assert exc.line == 3
    assert str(exc) == "ign.toml:3: Invalid value (column 10)"


def test_syntax_error_at_end_of_document() -> None:
    exc = error('[[ignore]]\nid = "CVE-1"\nreason = "r"\nx = [1,\n')
    assert exc.line == 5


def test_duplicate_key_is_a_syntax_error() -> None:
    assert error('[[ignore]]\nid = "a"\nid = "b"\nreason = "r"\n').line == 3


@pytest.mark.parametrize(("text", "line", "words"), [
    ('[[ignore]]\nid = "a"\nreason = "r"\npakage = "x"\n', 4, "unknown key 'pakage'"),
    ('[[ignore]]\nid = "a"\nreason = "r"\n\n[[ignore]]\nid = "b"\nreasons = "r"\n', 7,
     "unknown key 'reasons'"),
    ('[[ignore]]\nid = "a"\nreason = "r"\n[[ignore]]\nid = "b"\n', 4, "has no reason"),
    ('[[ignore]]\nreason = "r"\n', 1, "has no id"),
    ('[[ignore]]\nid = "a"\nreason = "  \\n "\n', 3, "reason is empty"),
    ('[[ignore]]\nid = "a"\nreason = 5\n', 3, "reason must be a string, not an integer"),
    ('[[ignore]]\nid = ""\nreason = "r"\n', 2, "id is empty"),
    ('[[ignore]]\nid = " a"\nreason = "r"\n', 2, "leading, trailing"),
    ('[[ignore]]\nid = "a"\nreason = "r"\ntarget = ""\n', 4, "target is empty"),
    ('[[ignore]]\nid = "a"\nreason = "r"\nexpires = "2025-01-01"\n', 4,
     "expires must be a TOML date like 2025-06-30 (no quotes, no time), not a string"),
    ('[[ignore]]\nid = "a"\nreason = "r"\nexpires = 2025-01-01T10:00:00\n', 4,
     "not a date and time"),
    ('[[ignore]]\nid = "a"\nreason = "r"\nexpires = 10:00:00\n', 4, "not a time"),
    ('[[ignore]]\nid = "a"\nreason = "r"\nexpires = 2025-02-30\n', 4, "Invalid date"),
    ('[[ignore]]\nid = "a"\nreason = "r"\npackage = "pkg:deb"\n', 4, "not a valid purl"),
    ('[[ignore]]\nid = "a"\nreason = "r"\n[[ignore]]\nid = "a"\nreason = "again"\n', 4,
     "duplicate of the [[ignore]] entry at line 1"),
    ('[[ignore]]\nid = "a"\nreason = "r"\n\n[ignores]\nx = 1\n', 5, "unknown key 'ignores'"),
    ('title = "mine"\n[[ignore]]\nid = "a"\nreason = "r"\n', 1, "unknown key 'title'"),
    ('[ignore]\nid = "a"\nreason = "r"\n', 1, "ignore must be [[ignore]] tables"),
    ('[[ignore]]\nid = "a"\nreason = "r"\n[ignore.x]\n', 4, None),
    ('[[ignore]]\nid = "a"\nreason = "r"\n[[ignore.x]]\n[[ignore]]\nid = 5\n', 4,
     "unknown key 'x'"),
    ('[[ignore]]\nid = "a"\nreason = "r"\n[[ignore]]\nreason = "r"\n[[ignore.x]]\n'
     '[[ignore]]\nid = 5\n', 6, "unknown key 'x'"),
])
def test_semantic_errors_name_the_line(text: str, line: int, words: str | None) -> None:
    exc = error(text)
    assert exc.line == line, str(exc)
    assert str(exc).startswith(f"ign.toml:{line}: ")
    if words is not None:
        assert words in str(exc)


def test_line_numbers_skip_multiline_strings_and_comments() -> None:
    text = ('# [[ignore]] in a comment\n'
            '[[ignore]]\nid = "a"\nreason = """\n[[ignore]]\npakage = "x"\n"""\n'
            "[[ignore]] # second\nid = 'b'\nreason = '''it's\n[[ignore]]'''\n"
            'pakage = "x"\n')
    exc = error(text)
    assert exc.line == 12
    assert "pakage" in str(exc)


def test_reason_whitespace_is_folded_to_one_line() -> None:
    loaded = ignores('[[ignore]]\nid = "a"\nreason = """\n  accepted:\n\tno   listener\n"""\n')
    assert loaded.entries[0].reason == "accepted: no listener"


# --- hostile contents ----------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    '[[ignore]]\nid = "a"\nreason = "\\u001b[31mred"\n',
    '[[ignore]]\nid = "a"\nreason = "\\u202eevil"\n',
    '[[ignore]]\nid = "a\\u0000"\nreason = "r"\n',
    '[[ignore]]\nid = "a"\nreason = "r"\npath = "/etc/\\u0007"\n',
])
def test_control_characters_are_refused(text: str) -> None:
    exc = error(text)
    assert "control character" in str(exc)
    assert exc.line is not None and exc.line > 1


@pytest.mark.parametrize(("text", "line"), [
    ("[[ignore]]\nid = \"a\u0001\"\n", 2),
    ("[[ignore]]\nid = \"a\"\nreason = \"r\x1b[2J\"\n", 3),
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", 1),
    ("\n\nx = " + "9" * 5000 + "\n", 3),
    ("[[ignore]]\nid = 'a'\n\u202e = 1\n", 3),
])
def test_hostile_syntax_gives_one_clean_line(text: str, line: int) -> None:
    exc = error(text)
    assert exc.line == line
    assert not re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e]", str(exc))


def test_keys_and_values_are_shortened_in_messages() -> None:
    exc = error('[[ignore]]\nid = "a"\nreason = "r"\n' + "k" * 5000 + ' = 1\n')
    assert exc.line == 4
    assert len(str(exc)) < 200


def test_too_long_values() -> None:
    exc = error('[[ignore]]\nid = "a"\nreason = "' + "r" * 1001 + '"\n')
    assert "longer than 1000" in str(exc)


def test_entry_count_is_capped() -> None:
    text = "".join(f'[[ignore]]\nid = "{n}"\nreason = "r"\n' for n in range(MAX_ENTRIES + 1))
    exc = error(text)
    assert exc.line == MAX_ENTRIES * 3 + 1
    assert "more than" in str(exc)


def test_non_table_entries() -> None:
    exc = error('ignore = ["CVE-1"]\n')
    assert "must be tables" in str(exc)


# --- files ---------------------------------------------------------------------------------


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "ignore.toml"
    path.write_text('[[ignore]]\nid = "CVE-1"\nreason = "r"\n', encoding="utf-8")
    assert [e.id for e in load_ignore_file(path, today=TODAY).entries] == ["CVE-1"]
    assert load_ignore_file(path, today=TODAY).source == path


def test_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ignore.toml"
    path.write_bytes(b'\xef\xbb\xbf[[ignore]]\nid = "a"\nreason = "r"\n')
    assert len(load_ignore_file(path, today=TODAY).entries) == 1


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(IgnoreFileError, match=r"nope\.toml: no such file$"):
        load_ignore_file(path, today=TODAY)
    with pytest.raises(IgnoreFileError):
        load_ignores(path, today=TODAY, environ={})


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    with pytest.raises(IgnoreFileError, match="larger than 1024 KiB"):
        load_ignore_file(path, today=TODAY)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[[ignore]]\nid = "a"\nreason = "caf\xe9"\n')
    with pytest.raises(IgnoreFileError) as caught:
        load_ignore_file(path, today=TODAY)
    assert caught.value.line == 3
    assert "not UTF-8" in str(caught.value)


def test_directory_and_fifo_are_refused(tmp_path: Path) -> None:
    with pytest.raises(IgnoreFileError, match="not a regular file"):
        load_ignore_file(tmp_path, today=TODAY)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(IgnoreFileError, match="not a regular file"):
        load_ignore_file(fifo, today=TODAY)


def test_dev_null_is_an_empty_list() -> None:
    assert load_ignore_file(Path(os.devnull), today=TODAY).entries == ()


def test_hostile_file_name_stays_one_line(tmp_path: Path) -> None:
    path = tmp_path / "a\nb\x1b[31m.toml"
    path.write_text('[[ignore]]\nid = "a"\n', encoding="utf-8")
    with pytest.raises(IgnoreFileError) as caught:
        load_ignore_file(path, today=TODAY)
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)
    assert str(caught.value).endswith(":1: [[ignore]] entry has no reason")


def test_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_ignore_file({}) == DEFAULT_IGNORE_FILE == Path("/etc/atomicscan/ignore.toml")
    assert default_ignore_file({IGNORE_FILE_ENV: ""}) == DEFAULT_IGNORE_FILE
    assert default_ignore_file({IGNORE_FILE_ENV: "/x.toml"}) == Path("/x.toml")
    monkeypatch.setenv(IGNORE_FILE_ENV, str(tmp_path / "env.toml"))
    assert default_ignore_file() == tmp_path / "env.toml"


def test_load_ignores_chooses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = tmp_path / "given.toml"
    given.write_text('[[ignore]]\nid = "given"\nreason = "r"\n', encoding="utf-8")
    from_env = tmp_path / "env.toml"
    from_env.write_text('[[ignore]]\nid = "env"\nreason = "r"\n', encoding="utf-8")
    env = {IGNORE_FILE_ENV: str(from_env)}
    assert load_ignores(given, today=TODAY, environ=env).entries[0].id == "given"
    assert load_ignores(None, today=TODAY, environ=env).entries[0].id == "env"
    with pytest.raises(IgnoreFileError, match="no such file"):
        load_ignores(None, today=TODAY, environ={IGNORE_FILE_ENV: str(tmp_path / "gone")})
    monkeypatch.setattr("atomicscan.suppress.DEFAULT_IGNORE_FILE", tmp_path / "absent.toml")
    assert load_ignores(None, today=TODAY, environ={}) == IgnoreList()
    broken = tmp_path / "broken.toml"
    broken.write_text("[[ignore]\n", encoding="utf-8")
    monkeypatch.setattr("atomicscan.suppress.DEFAULT_IGNORE_FILE", broken)
    with pytest.raises(IgnoreFileError, match=r"broken\.toml:1: "):
        load_ignores(None, today=TODAY, environ={})


def test_entry_json() -> None:
    loaded = ignores('[[ignore]]\nid = "a"\nreason = "r"\npath = "etc/x"\n'
                     'expires = 2026-01-01\n')
    assert loaded.entries[0].to_json() == {"id": "a", "reason": "r", "line": 1,
                                           "path": "/etc/x", "expires": "2026-01-01"}


def _glob_text(pattern: str) -> str:
    return f'[[ignore]]\nid = "X"\nreason = "r"\npath = "{pattern}"\n'


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("/**/**/**/**/**/**/**/**/**/**/**/**/c", "/" + "a/" * 5000 + "b", False),
    ("/**/**/**/**/**/**/**/**/**/**/**/**/b", "/" + "a/" * 5000 + "b", True),
    ("/*a*a*a*a*a*a*a*a*a*a*/x", "/" + "a" * 5000 + "/y", False),
    ("/**/a/**/b", "/a/" * 3000 + "c", False),
    ("/usr/**/*.so*", "/usr/lib/x86_64/libc.so.6", True),
    ("/usr/**/*.so*", "/usr/libc.so", True),
    ("/etc/*", "/etc/ssh/sshd_config", False),
])
def test_path_globs_match_in_time_linear_in_a_hostile_path(
    pattern: str, path: str, matches: bool
) -> None:
    ignores = parse_ignore_text(Path("i.toml"), _glob_text(pattern), today=TODAY)
    (entry,) = ignores.entries
    finding = Finding(id="X", title="t", details={"path": path})

    assert entry.matches(ScanResult(target="t", target_id="i", target_type="image",
                                    runtime=None, scanner="s", scan_type="x",
                                    successful=True, started_at="", finished_at=""),
                         finding) is matches
