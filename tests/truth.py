"""The truth about a rootfs's packages, read with each package manager's own tools."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

INSTALLED_STATES = {"installed", "half-configured", "unpacked", "half-installed",
                    "triggers-awaited", "triggers-pending"}


def dpkg_packages(root: Path) -> list[tuple[str, str, str]]:
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
         "-f=${Package}\t${Version}\t${Architecture}\t${db:Status-Status}\n"],
        capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines() if line]
    return sorted((name, version, arch) for name, version, arch, status in rows
                  if status in INSTALLED_STATES)


def rpm_packages(root: Path, *, bdb: bool) -> list[tuple[str, str, str]]:
    """rpm -qa on a private copy of the database (rpm can't open it on a read-only mount)."""
    source = root / "var/lib/rpm"
    with tempfile.TemporaryDirectory(prefix="truth-rpmdb-") as scratch:
        dbpath = Path(scratch) / "rpm"
        shutil.copytree(source, dbpath)
        argv = ["rpm", "--dbpath", str(dbpath), "-qa", "--qf",
                "%{NAME}\t%{EPOCH}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n"]
        if bdb:
            argv[1:1] = ["--define", "_db_backend bdb_ro"]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    packages = []
    for line in out.splitlines():
        name, epoch, version, arch = line.split("\t")
        full = version if epoch == "(none)" else f"{epoch}:{version}"
        packages.append((name, full, arch))
    return sorted(packages)


def apk_packages(root: Path) -> list[tuple[str, str, str]]:
    packages = []
    for stanza in (root / "lib/apk/db/installed").read_text().split("\n\n"):
        fields = {line[0]: line[2:] for line in stanza.splitlines() if line[1:2] == ":"}
        if "P" in fields:
            packages.append((fields["P"], fields["V"], fields["A"]))
    return sorted(packages)
