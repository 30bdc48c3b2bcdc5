"""Realistic reports for the history's tests, recorded through the real Store.

One scenario (:func:`record_scenario`) is shared by the query, command-line and browser
tests: two hosts, images and a container, package inventories and configlint findings over
five days, so every question has a known answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from atomicscan.history.store import Store
from atomicscan.results import Finding, Package, Report, ScanResult

T0 = datetime(2026, 11, 1, tzinfo=UTC)

IMAGE_1 = "1" * 64
IMAGE_2 = "2" * 64
UBI = "9" * 64
CONTAINER = "c0ffee" + "0" * 58

HOSTS = {"web01": "aaaa0000aaaa0000aaaa0000aaaa0000", "db01": "bbbb0000bbbb0000bbbb0000bbbb0000"}


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deb(name: str, version: str, arch: str = "amd64") -> Package:
    return Package(name=name, version=version, architecture=arch, type="deb",
                   purl=f"pkg:deb/debian/{name}@{version}?arch={arch}&distro=debian-12",
                   source=name)


def rpm(name: str, version: str, arch: str = "x86_64") -> Package:
    return Package(name=name, version=version, architecture=arch, type="rpm",
                   purl=f"pkg:rpm/redhat/{name}@{version}?arch={arch}", source=None)


def lint(finding_id: str, severity: str, path: str, title: str = "") -> Finding:
    return Finding(id=finding_id, title=title or f"{finding_id} in {path}", severity=severity,
                   details={"path": path})


def result(target: str, target_id: str, when: datetime, *, scanner: str = "packages",
           target_type: str = "image", runtime: str | None = "podman",
           packages: Sequence[Package] | None = None, findings: Sequence[Finding] = (),
           names: Sequence[str] = (), successful: bool = True,
           image_id: str | None = None) -> ScanResult:
    meta: dict[str, object] = {"names": list(names) or [target]}
    if image_id is not None:
        meta.update(image_id=image_id, state="running", labels={"app": "web"})
    inventory = scanner == "packages" and successful
    return ScanResult(
        target=target, target_id=target_id, target_type=target_type, runtime=runtime,
        scanner=scanner, scan_type="inventory" if scanner == "packages" else "lint",
        successful=successful, started_at=stamp(when), finished_at=stamp(when),
        error=None if successful else "scanner exited 1",
        findings=tuple(findings),
        os={"id": "debian", "version_id": "12",
            "pretty_name": "Debian GNU/Linux 12 (bookworm)"} if inventory else None,
        packages=tuple(packages or ()) if inventory else None,
        target_meta=meta, scanner_image_id="5" * 64)


def report(run_id: str, when: datetime, results: Sequence[ScanResult], *, host: str = "web01",
           scanner: str = "packages") -> Report:
    return Report(run_id=run_id, scanner=scanner,
                  scan_type="inventory" if scanner == "packages" else "lint",
                  started_at=stamp(when), finished_at=stamp(when + timedelta(seconds=30)),
                  results_dir=Path(f"/var/lib/atomicscan/{scanner}/{run_id}"),
                  results=tuple(results), host={"hostname": host, "machine_id": HOSTS[host]},
                  scanner_args={}, version="0.1.0")


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


OLD_WEB = (deb("openssl", "3.0.11-1~deb12u1"), deb("zlib1g", "1:1.2.13.dfsg-1"),
           deb("libfoo", "1.0-1"), deb("tzdata", "2024a-0+deb12u1", "all"))
NEW_WEB = (deb("openssl", "3.0.15-1~deb12u1"), deb("zlib1g", "1:1.2.13.dfsg-1"),
           deb("newpkg", "2.0-1"), deb("tzdata", "2023c-5+deb12u1", "all"))


def scenario_reports() -> list[Report]:
    """Six runs over five days, on two hosts (see the module's docstring)."""
    return [
        report("r1-packages", day(1), [
            result("web:1", IMAGE_1, day(1), packages=OLD_WEB, names=["web:1", "web:latest"]),
            result("c1", CONTAINER, day(1), target_type="container", image_id=IMAGE_1,
                   packages=(deb("openssl", "3.0.11-1~deb12u1"), deb("curl", "7.88.1-10"))),
            result("ubi:9", UBI, day(1), packages=(rpm("openssl", "1:3.0.7-25.el9"),)),
        ]),
        report("r2-lint", day(2), [
            result("web:1", IMAGE_1, day(2), scanner="configlint", findings=(
                lint("CVE-2024-0001", "High", "/usr/lib/libssl.so.3"),
                lint("LINT-1", "low", "/etc/passwd"))),
        ], scanner="configlint"),
        report("r5-db-packages", day(2), [
            result("web:1", IMAGE_1, day(2), packages=OLD_WEB),
        ], host="db01"),
        report("r3-packages", day(3), [
            result("web:1", IMAGE_2, day(3), packages=NEW_WEB),
            result("c1", CONTAINER, day(3), target_type="container", image_id=IMAGE_1,
                   successful=False),
        ]),
        report("r4-lint", day(4), [
            result("web:1", IMAGE_2, day(4), scanner="configlint", findings=(
                lint("LINT-1", "low", "/etc/passwd"),
                lint("LINT-2", "medium", "/etc/shadow"),
                Finding(id="LINT-3", title="accepted", severity="critical",
                        details={"path": "/root"}, suppressed="accepted risk"))),
        ], scanner="configlint"),
        report("r6-db-lint", day(5), [
            result("web:1", IMAGE_1, day(5), scanner="configlint", findings=(
                lint("CVE-2024-0001", "high", "/usr/lib/libssl.so.3"),)),
        ], host="db01", scanner="configlint"),
    ]


@dataclass(frozen=True)
class Recorded:
    store: Store
    url: str
    reports: tuple[Report, ...]


def open_store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'history.db'}")


def record_scenario(tmp_path: Path) -> Recorded:
    store = open_store(tmp_path)
    reports = scenario_reports()
    for one in reports:
        assert store.record(one, recorded_at=day(6))
    return Recorded(store=store, url=store.url, reports=tuple(reports))
