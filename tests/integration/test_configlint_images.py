"""configlint on images built with every problem, and on a clean one, on every runtime."""

from __future__ import annotations

from pathlib import Path

from helpers import LINT_BAD, LINT_CLEAN, Atomicscan, HostSnapshot, assert_no_leftovers

CONFIG = {("CL-USER-ROOT", None), ("CL-NO-HEALTHCHECK", None), ("CL-ENV-SECRET", None),
          ("CL-SSH-PORT", None), ("CL-LATEST-ONLY", None)}
ROOTFS = {
    ("CL-SETUID", "/usr/bin/sudo"), ("CL-SETUID", "/usr/lib/openssh/ssh-keysign"),
    ("CL-SETUID", "/usr/local/bin/sgid-tool"), ("CL-SETUID", "/usr/local/bin/suid-tool"),
    ("CL-WORLD-WRITABLE", "/opt/ww"), ("CL-WORLD-WRITABLE", "/opt/wwdir"),
    ("CL-PKG-CACHE", "/var/cache/apk"), ("CL-PKG-CACHE", "/var/cache/apt/archives"),
    ("CL-PKG-CACHE", "/var/cache/dnf"), ("CL-PKG-CACHE", "/var/cache/yum"),
    ("CL-PKG-CACHE", "/var/lib/apt/lists"),
    ("CL-SSH-SERVER", "/usr/sbin/sshd"), ("CL-SUDO", "/usr/bin/sudo"),
}
#: Only readable with CAP_DAC_READ_SEARCH, which podman hands to the scanner's user and
#: docker 20.10 can't (no ambient capabilities): see docs/scanner-contract.md.
NEEDS_DAC_READ_SEARCH = {
    ("CL-PRIVATE-KEY", "/root/.ssh/id_rsa"), ("CL-PKG-CACHE", "/root/.cache/pip"),
    ("CL-CREDENTIAL-FILE", "/home/app/.aws/credentials"),
    ("CL-CREDENTIAL-FILE", "/home/app/.docker/config.json"),
    ("CL-CREDENTIAL-FILE", "/home/app/.git-credentials"),
    ("CL-CREDENTIAL-FILE", "/home/app/.netrc"),
    ("CL-EMPTY-PASSWORD", "/etc/shadow"),
}


def _found(result: dict[str, object]) -> set[tuple[str, str | None]]:
    findings = result["findings"]
    assert isinstance(findings, list)
    return {(f["id"], f["details"].get("path")) for f in findings
            if not f["details"].get("ignored")}


def test_bad_image_yields_exactly_the_expected_findings(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    run = atomicscan("--scanner", "configlint", "--json", LINT_BAD)

    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    expected = CONFIG | ROOTFS
    if atomicscan.runtime in {"podman", "containerd"}:
        # containerd's targets are scanned by podman here (docs/containerd.md).
        expected |= NEEDS_DAC_READ_SEARCH
    assert _found(result) == expected
    secret = next(f for f in result["findings"] if f["id"] == "CL-ENV-SECRET")
    assert "DB_PASSWORD" in secret["title"] + secret["description"]
    assert "hunter2" not in run.stdout, "a secret's value must never be echoed"
    assert all(f["severity"] in {"low", "medium", "high", "critical"}
               for f in result["findings"])
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_clean_image_yields_none(atomicscan: Atomicscan) -> None:
    run = atomicscan("--scanner", "configlint", "--json", LINT_CLEAN)
    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    assert _found(result) == set()


def test_ignored_findings_are_reported_as_ignored(atomicscan: Atomicscan,
                                                   tmp_path: Path) -> None:
    ignore_file = tmp_path / "ignore"
    ignore_file.write_text("CL-WORLD-WRITABLE /opt/ww  # a scratch file, on purpose\n")
    run = atomicscan("--scanner", "configlint", "--scanner-args",
                     f"ignore=CL-SSH-PORT:CL-LATEST-ONLY,ignore_file={ignore_file}",
                     "--json", LINT_BAD)
    assert run.returncode == 0, run.stderr
    (result,) = run.json()["results"]
    ignored = {(f["id"], f["details"].get("path")) for f in result["findings"]
               if f["details"].get("ignored")}
    assert ignored == {("CL-SSH-PORT", None), ("CL-LATEST-ONLY", None),
                       ("CL-WORLD-WRITABLE", "/opt/ww")}
    assert ("CL-WORLD-WRITABLE", "/opt/wwdir") in _found(result)
