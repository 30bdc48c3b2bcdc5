"""The html format (fast tier): escaping, CSP, numbers, links, determinism and size.

Every page is parsed by html5lib in strict mode, an independent HTML5 parser that raises on
any parse error, and read back through its tree rather than by searching the text.
"""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import html5lib
import pytest

from atomicscan import FormatError, FormatRegistry
from atomicscan.builtin import format_html, formats
from atomicscan.builtin.format_html import SEVERITIES, render_html, write_html
from atomicscan.results import Finding, Package, Report, ScanResult

NS = "{http://www.w3.org/1999/xhtml}"
HOSTILE = "<script>alert(1)</script>"


def _result(**changes: object) -> ScanResult:
    base = ScanResult(target="localhost/app:1", target_id="a" * 64, target_type="image",
                      runtime="podman", scanner="configlint", scan_type="lint",
                      successful=True, started_at="2026-01-01T00:00:00Z",
                      finished_at="2026-01-01T00:00:01Z")
    return base.replace(**changes)


def _report(*results: ScanResult, results_dir: Path | None = None) -> Report:
    return Report(run_id="20260101000000-abcdef12", scanner="configlint", scan_type="lint",
                  started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:02Z",
                  results_dir=results_dir, results=results)


def _mixed(tmp_path: Path) -> Report:
    openscap_html = tmp_path / "results" / "t1" / "report.html"
    return _report(
        _result(findings=(
            Finding("CL-1", HOSTILE, "high", description='"><img src=x onerror=alert(2)>',
                    details={"path": "/etc/<b>x</b>", "reasons": ["a", "<i>"]}),
            Finding("CL-2", "plain", "medium"),
            Finding("CL-3", "kept", "low", suppressed="accepted <em>risk</em>"),
            Finding("CL-4", "odd severity", "bogus-\"level"),
        )),
        _result(target="localhost/deb:12", scanner="packages", scan_type="inventory",
                os={"pretty_name": "Debian GNU/Linux 12 (bookworm)", "id": "debian"},
                packages=(Package("zlib1g", "1:1.2", "amd64", "deb", "pkg:deb/debian/zlib1g"),
                          Package("bash", "5.2", "amd64", "deb", "pkg:deb/debian/bash"))),
        _result(target='localhost/evil:"><script>alert(3)</script>', scanner="openscap",
                scan_type="cve", files={"report_html": str(openscap_html),
                                        "results_xml": "relative/results.xml"},
                counts={"pass": 3, "fail": 2},
                findings=(Finding("CVE-2026-1", "bad", "critical"),)),
        _result(target="localhost/missing:1", successful=False,
                error="no such image: <script>alert(4)</script>"),
        results_dir=tmp_path / "results")


def _parse(page: str) -> ET.Element:
    """Strict HTML5 parse: any parse error raises."""
    parser = html5lib.HTMLParser(strict=True)
    root: ET.Element = parser.parse(page)
    return root


def _text(element: ET.Element) -> str:
    return "".join(element.itertext()).strip()


def _all(root: ET.Element, tag: str) -> list[ET.Element]:
    return list(root.iter(NS + tag))


def test_hostile_text_is_escaped_everywhere(tmp_path: Path) -> None:
    page = render_html(_mixed(tmp_path))
    root = _parse(page)

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert" not in page
    assert "<img" not in page
    scripts = _all(root, "script")
    assert len(scripts) == 1 and "alert" not in (scripts[0].text or "")
    # The hostile texts are text nodes, and the hostile target only an attribute value.
    cells = [_text(td) for td in _all(root, "td")]
    assert any(cell.startswith(HOSTILE) for cell in cells)
    assert 'localhost/evil:"><script>alert(3)</script>' in [
        article.get("data-target") for article in _all(root, "article")]
    error = next(dd for dd in _all(root, "dd") if dd.get("data-field") == "error")
    assert _text(error) == "no such image: <script>alert(4)</script>"
    assert not any(key.startswith("on") for el in root.iter() for key in el.attrib)


def test_csp_allows_only_the_pages_own_style_and_script_by_hash(tmp_path: Path) -> None:
    root = _parse(render_html(_mixed(tmp_path)))
    (meta,) = [m for m in _all(root, "meta") if m.get("http-equiv") == "Content-Security-Policy"]
    policy = dict(part.strip().split(" ", 1) for part in meta.get("content", "").split(";"))

    def digest(element: ET.Element) -> str:
        raw = hashlib.sha256((element.text or "").encode()).digest()
        return f"'sha256-{base64.b64encode(raw).decode()}'"

    (style,) = _all(root, "style")
    (script,) = _all(root, "script")
    assert policy == {"default-src": "'none'", "style-src": digest(style),
                      "script-src": digest(script), "base-uri": "'none'",
                      "form-action": "'none'"}
    head = root.find(NS + "head")
    assert head is not None and list(head)[1] is meta, "the policy must precede the style"


def test_nothing_is_loaded_from_anywhere(tmp_path: Path) -> None:
    root = _parse(render_html(_mixed(tmp_path)))
    for element in root.iter():
        assert "src" not in element.attrib, element.tag
        href = element.get("href")
        assert href is None or href.startswith("file:///"), href
    (style,) = _all(root, "style")
    assert "url(" not in (style.text or "") and "@import" not in (style.text or "")
    assert not _all(root, "link") and not _all(root, "iframe")


def _fields(element: ET.Element) -> dict[str, str]:
    return {dd.get("data-field", ""): _text(dd) for dd in _all(element, "dd")
            if dd.get("data-field")}


def _chart(element: ET.Element) -> dict[str, str]:
    svg = next(element.iter("{http://www.w3.org/2000/svg}svg"))
    return {text.get("data-severity", ""): _text(text)
            for text in svg.iter("{http://www.w3.org/2000/svg}text") if text.get("data-severity")}


def test_summary_numbers_are_the_reports(tmp_path: Path) -> None:
    report = _mixed(tmp_path)
    root = _parse(render_html(report))
    header = root.find(f".//{NS}header")
    assert header is not None
    assert _fields(header) == {"targets": "4", "failed": "1", "findings": "5", "suppressed": "1"}
    assert _chart(header) == {"critical": "1", "high": "1", "medium": "1", "low": "1",
                              "unknown": "1"}

    cards = _all(root, "article")
    assert [c.get("data-target") for c in cards] == [r.target for r in report.results]
    lint, inventory, openscap, failed = (_fields(card) for card in cards)
    assert lint == {"status": "scanned", "findings": "4", "suppressed": "1"}
    assert inventory == {"status": "scanned", "os": "Debian GNU/Linux 12 (bookworm)",
                         "packages": "2", "findings": "0"}
    assert openscap["findings"] == "1"
    assert failed["status"] == "failed"
    assert _chart(cards[0]) == {"critical": "0", "high": "1", "medium": "1", "low": "1",
                                "unknown": "1"}
    widths = [int(rect.get("width", "-1")) for rect in
              cards[0].iter("{http://www.w3.org/2000/svg}rect") if "track" not in
              rect.get("class", "")]
    assert widths == [0, 150, 150, 150, 150]


def test_findings_table_is_sorted_by_severity_and_filterable(tmp_path: Path) -> None:
    root = _parse(render_html(_mixed(tmp_path)))
    rows = _all(root.find(f".//{NS}tbody") or ET.Element("x"), "tr")
    assert [(r.get("data-severity"), r.get("data-scanner"), r.get("data-suppressed"))
            for r in rows] == [("critical", "openscap", "0"), ("high", "configlint", "0"),
                               ("medium", "configlint", "0"), ("low", "configlint", "1"),
                               ("unknown", "configlint", "0")]
    assert "suppressed" in (rows[3].get("class") or "")
    assert "accepted <em>risk</em>" in _text(rows[3])
    filters = next(div for div in _all(root, "div") if div.get("id") == "filters")
    assert "hidden" in filters.attrib, "with JavaScript off the filters must not show"
    severities = [i.get("value") for i in _all(filters, "input") if i.get("name") == "severity"]
    assert severities == list(SEVERITIES)
    assert [o.get("value") for o in _all(filters, "option")] == [
        "", "configlint", "openscap", "packages"]


def test_packages_are_listed_per_target_in_name_order(tmp_path: Path) -> None:
    root = _parse(render_html(_mixed(tmp_path)))
    (packages,) = [d for d in _all(root, "details") if "packages" in d.get("class", "")]
    assert packages.get("data-target") == "localhost/deb:12"
    names = [_text(next(iter(_all(tr, "td")))) for tr in _all(packages, "tr")[1:]]
    assert names == ["bash", "zlib1g"]


def test_scanner_reports_are_absolute_file_links(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = _parse(render_html(_mixed(tmp_path)))
    links = {a.get("href"): a for a in _all(root, "a")}
    html_report = (tmp_path / "results" / "t1" / "report.html").as_uri()
    assert set(links) == {html_report, (tmp_path / "relative" / "results.xml").as_uri()}
    assert links[html_report].get("class") == "scanner-report"
    hostile = _report(_result(files={"x": "javascript:alert(1)//"}))
    (link,) = _all(_parse(render_html(hostile)), "a")
    assert (link.get("href") or "").startswith("file:///")


def test_the_same_report_gives_the_same_bytes(tmp_path: Path) -> None:
    first = write_html(_mixed(tmp_path))
    format_html.html_environment.cache_clear()
    assert write_html(_mixed(tmp_path)) == first


def test_control_characters_and_lone_surrogates_do_not_break_the_page() -> None:
    report = _report(_result(findings=(Finding("X\x00", "bell\x07 \ud800 ok", "low"),)))
    page = write_html(report)
    root = _parse(page.decode("utf-8"))
    assert any("ok" in _text(td) for td in _all(root, "td"))


def test_ten_thousand_findings_stay_a_reasonable_page() -> None:
    findings = tuple(
        Finding(f"RULE-{n}", f"finding number {n}", SEVERITIES[n % 5],
                description="why " * 2000 if n % 100 == 0 else "short description",
                details={"path": f"/usr/lib/file{n}", "package": f"pkg{n}"})
        for n in range(10_000))
    page = write_html(_report(_result(findings=findings)))
    # Counted in the text: a Python HTML parser takes seconds on 5 MB (the structure is
    # checked by html5lib on the smaller pages above).
    assert page.count(b"<tr data-severity=") == 10_000
    assert len(page) < 10_000 * 700, f"{len(page)} bytes"
    assert page.count(b"why " * 1001) == 0, "long descriptions are cut"
    assert page.count("… (4000 more characters)".encode()) == 100


def test_the_plugin_adds_a_run_format() -> None:
    registry = FormatRegistry()
    formats.atomicscan_add_formats(registry)
    html = registry.get("html")
    assert html is not None and html.scope == "run" and html.extension == ".html"
    assert html.write_run is not None
    page = html.write_run(_report(_result()))
    assert page.startswith(b"<!DOCTYPE html>\n")
    assert re.search(rb'<meta charset="utf-8">', page)


def test_a_missing_template_is_a_format_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(format_html, "TEMPLATE", "no-such-template.html.j2")
    with pytest.raises(FormatError, match="html: the page could not be written"):
        write_html(_report(_result()))


def test_a_report_file_name_without_bytes_is_shown_not_raised() -> None:
    page = write_html(_report(_result(files={"\ud800": "/results/\ud800.html"})))

    assert b"file:///results/%EF%BF%BD.html" in page
