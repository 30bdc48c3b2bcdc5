"""Fast-tier tests of the configlint scanner (scanners/configlint/configlint.py), no runtime."""

from __future__ import annotations

import ast
import base64
import errno
import importlib.util
import json
import os
import random
import socket
import stat
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCANNER_PATH = Path(__file__).resolve().parents[2] / "scanners" / "configlint" / "configlint.py"


def _load_scanner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("configlint_scanner", SCANNER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cl = _load_scanner()

# Built from parts so that no line of this file starts with a PEM private key header.
PEM_BEGIN = "-----BEGIN "
RSA_KEY = f"{PEM_BEGIN}RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n"
OPENSSH_KEY = f"{PEM_BEGIN}OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n"
CERTIFICATE = f"{PEM_BEGIN}CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"

IMAGE_CONFIG: dict[str, Any] = {
    "user": "1000", "env": ["PATH=/usr/bin:/bin"], "entrypoint": None, "cmd": ["/bin/sh"],
    "exposed_ports": [], "labels": {}, "healthcheck": {"test": ["CMD", "/bin/true"]},
    "volumes": [], "working_dir": "/", "names": ["localhost/app:1.0"],
}


# --- helpers ----------------------------------------------------------------------------------


def write(root: Path, relpath: str, text: str | bytes = "", mode: int | None = None) -> Path:
    path = root / relpath.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    if mode is not None:
        path.chmod(mode)
    return path


def lint(root: Path, config: dict[str, Any] | None = None, target_type: str = "image",
         args: dict[str, str] | None = None) -> dict[str, Any]:
    """Scan root like main() would, with config as its targets.json entry (None: --rootfs)."""
    meta = {"key": "k", "target": "t", "id": "k", "type": target_type, "config": config}
    settings = cl.load_settings(json.dumps(args) if args is not None else None)
    document: dict[str, Any] = cl.scan_target("k", str(root), "lint", meta, None, settings)
    # Whatever the scanner writes must be JSON that the host's reader takes as it is.
    return dict(json.loads(cl.json_dumps(document)))


def findings(document: dict[str, Any], *, ignored: bool = False) -> set[tuple[str, str | None]]:
    return {
        (r["ID"], r["Custom"]["path"]) for r in document["Results"]
        if r["Custom"]["ignored"] == ignored
    }


def ids(document: dict[str, Any]) -> set[str]:
    return {r["ID"] for r in document["Results"] if not r["Custom"]["ignored"]}


def config(**changes: Any) -> dict[str, Any]:
    return {**IMAGE_CONFIG, **changes}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty target rootfs."""
    target = tmp_path / "rootfs"
    target.mkdir()
    return target


# --- the JSON reader and writer (python3-minimal has no json module) ------------------------


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "bool", "null"] + (["list", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randint(-(10**20), 10**20)
    if kind == "float":
        return rng.uniform(-1e6, 1e6)
    if kind == "str":
        alphabet = 'ab"\\/\n\t\x00\x1f\x7fé€\U0001f600 '
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{i}\u2028": _random_value(rng, depth + 1) for i in range(rng.randint(0, 4))}


def test_json_reader_and_writer_agree_with_the_standard_library() -> None:
    rng = random.Random(7)
    for _ in range(500):
        value = _random_value(rng)
        for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=2)):
            assert cl.json_loads(text) == value
        assert json.loads(cl.json_dumps(value)) == value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@pytest.mark.parametrize("text", [
    "", "{", "[1,]", '{"a":1,}', "01", "1.", ".5", "+1", "nul", "[1 2]", '{"a" 1}', '"a',
    '"\x01"', '"\\x"', '"\\u12"', "[1]x", "{1: 2}", "'a'", "NaN",
])
def test_json_reader_refuses_malformed_text(text: str) -> None:
    with pytest.raises(cl.JsonError):
        cl.json_loads(text)
    with pytest.raises(ValueError):  # the standard library agrees
        json.loads(text, parse_constant=_refuse_constant)


def test_json_reader_limits_nesting_and_cleans_surrogates() -> None:
    assert cl.json_loads("[" * 64 + "]" * 64) is not None
    with pytest.raises(cl.JsonError, match="nested too deeply"):
        cl.json_loads("[" * 65 + "]" * 65)
    assert cl.json_loads('"\\ud83d\\ude00"') == "\U0001f600"
    assert cl.json_loads('"\\ud83d x"') == "\ufffd x"


def test_json_writer_keeps_undecodable_names_valid_utf8() -> None:
    name = os.fsdecode(b"bad\xffname")
    text = cl.json_dumps({"path": cl.display_path("/opt/" + name), "raw": name})
    text.encode("utf-8")  # no lone surrogate left
    parsed = json.loads(text)
    assert parsed["path"] == "/opt/bad\\xffname"
    assert parsed["raw"] == "bad\\udcffname"


def test_scanner_imports_only_what_python3_minimal_has() -> None:
    """Debian's python3-minimal (the image's python) lacks json, dataclasses, uuid, shlex..."""
    in_minimal = {"__future__", "collections", "datetime", "enum", "errno", "fnmatch", "math",
                  "os", "re", "stat", "sys", "traceback", "typing"}
    tree = ast.parse(SCANNER_PATH.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= in_minimal, imported - in_minimal


# --- configuration checks ---------------------------------------------------------------------


def test_clean_config_has_no_findings(root: Path) -> None:
    document = lint(root, config())
    assert document["Successful"] == "true"
    assert document["Results"] == []
    assert document["Custom"]["checks_skipped"] == []


@pytest.mark.parametrize(("user", "is_root"), [
    ("", True), ("0", True), ("root", True), ("0:0", True), ("root:1000", True),
    ("toor", True), ("1000", False), ("1000:0", False), ("app", False), ("nobody:nogroup", False),
])
def test_user_root(root: Path, user: str, is_root: bool) -> None:
    write(root, "etc/passwd", "root:x:0:0::/root:/bin/sh\ntoor:x:0:0::/root:/bin/sh\n"
                              "app:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    document = lint(root, config(user=user))
    assert ("CL-USER-ROOT" in ids(document)) is is_root
    if is_root:
        result = document["Results"][0]
        assert result["Custom"]["cis"] == "4.1"
        assert result["Custom"]["path"] is None
        assert result["Custom"]["category"] == "config"


def test_user_name_not_in_passwd_is_a_note(root: Path) -> None:
    document = lint(root, config(user="ghost"))
    assert ids(document) == set()
    assert any("'ghost'" in note for note in document["Custom"]["notes"])


@pytest.mark.parametrize("healthcheck", [None, {"test": ["NONE"]}, {"test": []}, {}])
def test_no_healthcheck(root: Path, healthcheck: Any) -> None:
    document = lint(root, config(healthcheck=healthcheck))
    assert ids(document) == {"CL-NO-HEALTHCHECK"}
    assert document["Results"][0]["Custom"]["cis"] == "4.6"


@pytest.mark.parametrize(("variable", "reported"), [
    ("DB_PASSWORD=hunter2", True),
    ("MYSQL_ROOT_PASSWORD=x", True),
    ("GITHUB_TOKEN=abc", True),
    ("api-key=abc", True),
    ("AWS_SECRET_ACCESS_KEY=abc", True),
    ("CLIENT_SECRET=abc", True),
    ("HARMLESS=AKIAABCDEFGHIJKLMNOP", True),
    ("HARMLESS=ghp_" + "a" * 36, True),
    ("DATABASE_URL=postgres://app:s3cret@db:5432/app", True),
    ("HARMLESS=" + PEM_BEGIN + "EC PRIVATE KEY-----", True),
    ("DB_PASSWORD=", False),
    ("DB_PASSWORD_FILE=/run/secrets/db", False),
    ("DB_PASSWORD=/run/secrets/db", False),
    ("TOKENIZERS_PARALLELISM=false", False),
    ("GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D", False),
    ("PATH=/usr/bin", False),
    ("PWD=/", False),
    ("DATABASE_URL=postgres://db:5432/app", False),
])
def test_env_secrets(root: Path, variable: str, reported: bool) -> None:
    document = lint(root, config(env=[variable]))
    assert ("CL-ENV-SECRET" in ids(document)) is reported
    if reported:
        name, _, value = variable.partition("=")
        result = document["Results"][0]
        assert result["Custom"]["variable"] == name
        assert result["Custom"]["cis"] == "4.10"
        # The value is never echoed anywhere in the document.
        assert value not in json.dumps(document)


@pytest.mark.parametrize(("ports", "reported"), [
    (["22/tcp"], True), (["22"], True), (["80/tcp", "22/tcp"], True),
    (["2222/tcp"], False), (["22/udp"], False), ([], False),
])
def test_ssh_port(root: Path, ports: list[str], reported: bool) -> None:
    document = lint(root, config(exposed_ports=ports))
    assert ("CL-SSH-PORT" in ids(document)) is reported


@pytest.mark.parametrize(("names", "target_type", "reported"), [
    (["localhost/app:latest"], "image", True),
    (["localhost/app"], "image", True),
    (["localhost:5000/app"], "image", True),
    (["localhost/app:latest", "localhost/app:1.0"], "image", False),
    (["localhost/app@sha256:" + "0" * 64], "image", False),
    (["localhost:5000/app:2"], "image", False),
    ([], "image", False),
    (["web", "localhost/web:1.0"], "container", False),
    (["web", "localhost/web:latest"], "container", True),
])
def test_latest_only(root: Path, names: list[str], target_type: str, reported: bool) -> None:
    document = lint(root, config(names=names), target_type=target_type)
    assert ("CL-LATEST-ONLY" in ids(document)) is reported


def test_rootfs_target_skips_config_checks_with_a_note(root: Path) -> None:
    document = lint(root, None, target_type="rootfs")
    assert document["Successful"] == "true"
    assert document["Results"] == []
    custom = document["Custom"]
    assert "configuration checks skipped" in custom["notes"]
    assert set(custom["checks_skipped"]) == {
        "CL-USER-ROOT", "CL-NO-HEALTHCHECK", "CL-ENV-SECRET", "CL-SSH-PORT", "CL-LATEST-ONLY"}


# --- rootfs checks ----------------------------------------------------------------------------


def test_setuid_and_setgid_outside_the_allow_list(root: Path) -> None:
    write(root, "usr/bin/passwd", "x", 0o4755)
    write(root, "usr/bin/chage", "x", 0o2755)
    write(root, "usr/sbin/unix_chkpwd", "x", 0o2755)
    write(root, "bin/su", "x", 0o4755)
    write(root, "usr/bin/ssh-agent", "x", 0o2755)  # setgid only is allowed
    write(root, "usr/bin/crontab", "x", 0o6755)  # ... setuid is not
    write(root, "usr/local/bin/suid", "x", 0o4755)
    write(root, "usr/local/bin/sgid", "x", 0o2711)
    write(root, "usr/local/bin/plain", "x", 0o755)
    (root / "var/mail").mkdir(parents=True)
    (root / "var/mail").chmod(0o2775)  # a setgid directory is not a finding
    document = lint(root, config())
    assert findings(document) == {
        ("CL-SETUID", "/usr/bin/crontab"),
        ("CL-SETUID", "/usr/local/bin/suid"),
        ("CL-SETUID", "/usr/local/bin/sgid"),
    }
    by_path = {r["Custom"]["path"]: r for r in document["Results"]}
    assert by_path["/usr/local/bin/sgid"]["Custom"]["mode"] == "2711"
    assert "setgid" in by_path["/usr/local/bin/sgid"]["Description"]
    assert by_path["/usr/local/bin/suid"]["Custom"]["cis"] == "4.8"
    assert by_path["/usr/local/bin/suid"]["Custom"]["category"] == "rootfs"


def test_world_writable(root: Path) -> None:
    write(root, "opt/ww", "x", 0o666)
    write(root, "opt/fine", "x", 0o644)
    for name, mode in (("wwdir", 0o777), ("tmp", 0o1777), ("shared", 0o775)):
        (root / name).mkdir()
        (root / name).chmod(mode)
    (root / "opt/link").symlink_to("ww")  # symlinks are 0777 and never a finding
    document = lint(root, config())
    assert findings(document) == {("CL-WORLD-WRITABLE", "/opt/ww"),
                                  ("CL-WORLD-WRITABLE", "/wwdir")}
    types = {r["Custom"]["path"]: r["Custom"]["type"] for r in document["Results"]}
    assert types == {"/opt/ww": "file", "/wwdir": "directory"}


def test_private_keys(root: Path) -> None:
    write(root, "root/.ssh/id_rsa", RSA_KEY, 0o600)
    write(root, "etc/ssh/ssh_host_ed25519_key", OPENSSH_KEY)
    write(root, "srv/bundle.pem", CERTIFICATE + "\r\n" + RSA_KEY)
    write(root, "srv/late.pem", "x" * 5000 + "\n" + RSA_KEY)  # beyond the first 4 KB
    write(root, "srv/code.py", f'HEADER = "{PEM_BEGIN}RSA PRIVATE KEY-----"\n')
    write(root, "srv/cert.pem", CERTIFICATE)
    write(root, "srv/huge.pem", RSA_KEY + "x" * (1024 * 1024))  # over the size cap
    document = lint(root, config())
    assert findings(document) == {
        ("CL-PRIVATE-KEY", "/root/.ssh/id_rsa"),
        ("CL-PRIVATE-KEY", "/etc/ssh/ssh_host_ed25519_key"),
        ("CL-PRIVATE-KEY", "/srv/bundle.pem"),
    }
    types = {r["Custom"]["path"]: r["Custom"]["key_type"] for r in document["Results"]}
    assert types["/etc/ssh/ssh_host_ed25519_key"] == "OPENSSH PRIVATE KEY"
    assert "bm90IGEga2V5" not in json.dumps(document)
    assert document["Custom"]["skipped"]["large_files_not_searched"] == 1


def test_credential_files(root: Path) -> None:
    auth = base64.b64encode(b"app:pw").decode()
    write(root, "home/app/.aws/credentials",
          "[default]\naws_access_key_id = AKIAABCDEFGHIJKLMNOP\naws_secret_access_key = x\n")
    write(root, "home/app/.netrc", "machine example.invalid login app password pw\n")
    write(root, "home/app/.docker/config.json", json.dumps({"auths": {"r": {"auth": auth}}}))
    write(root, "home/app/.git-credentials", "https://app:pw@git.example.invalid\n")
    write(root, "run/containers/0/auth.json", json.dumps({"auths": {"r": {"auth": auth}}}))
    write(root, "root/.docker/config.json", '{"auths": {"r": {"auth": "YTpi"}}')  # malformed
    # Same names, no credential in them:
    write(root, "home/other/.aws/credentials", "[default]\nregion = eu-west-1\n")
    write(root, "home/other/.netrc", "machine example.invalid login app\n")
    write(root, "home/other/.docker/config.json", json.dumps({"credsStore": "pass",
                                                              "auths": {"r": {}}}))
    write(root, "home/other/.git-credentials", "")
    write(root, "home/other/credentials", "aws_secret_access_key = x\n")  # not below .aws
    document = lint(root, config())
    assert findings(document) == {
        ("CL-CREDENTIAL-FILE", "/home/app/.aws/credentials"),
        ("CL-CREDENTIAL-FILE", "/home/app/.netrc"),
        ("CL-CREDENTIAL-FILE", "/home/app/.docker/config.json"),
        ("CL-CREDENTIAL-FILE", "/home/app/.git-credentials"),
        ("CL-CREDENTIAL-FILE", "/run/containers/0/auth.json"),
        ("CL-CREDENTIAL-FILE", "/root/.docker/config.json"),
    }
    assert auth not in json.dumps(document)


def test_empty_passwords(root: Path) -> None:
    write(root, "etc/shadow", "root:*:19000:0:99999:7:::\nnopass::19000:0:99999:7:::\n"
                              "locked:!:19000::::::\nold:!!:1::::::\nhashed:$y$j9T$abc:1::::::\n"
                              "\n# comment\n", 0o640)
    write(root, "etc/passwd", "root:x:0:0::/root:/bin/sh\nlegacy::1001:1001::/:/bin/sh\n")
    document = lint(root, config())
    assert findings(document) == {("CL-EMPTY-PASSWORD", "/etc/shadow"),
                                  ("CL-EMPTY-PASSWORD", "/etc/passwd")}
    accounts = {r["Custom"]["account"] for r in document["Results"]}
    assert accounts == {"nopass", "legacy"}


def test_package_caches(root: Path) -> None:
    write(root, "var/cache/apt/archives/sudo_1.9_amd64.deb", "deb")
    write(root, "var/cache/apt/archives/lock")
    write(root, "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease", "x")
    write(root, "var/cache/yum/x86_64/7/base/repomd.xml", "x")
    write(root, "var/cache/dnf/fedora.solv", "x")
    write(root, "var/cache/apk/zlib-1.3-r0.apk", "x")
    write(root, "root/.cache/pip/http/a/b/c", "x")
    document = lint(root, config())
    assert findings(document) == {
        ("CL-PKG-CACHE", "/var/cache/apt/archives"),
        ("CL-PKG-CACHE", "/var/lib/apt/lists"),
        ("CL-PKG-CACHE", "/var/cache/yum"),
        ("CL-PKG-CACHE", "/var/cache/dnf"),
        ("CL-PKG-CACHE", "/var/cache/apk"),
        ("CL-PKG-CACHE", "/root/.cache/pip"),
    }
    apt = next(r for r in document["Results"] if r["Custom"]["path"] == "/var/cache/apt/archives")
    assert apt["Custom"]["files"] == 1
    assert apt["Custom"]["bytes"] == 3


def test_empty_package_cache_directories_are_fine(root: Path) -> None:
    write(root, "var/cache/apt/archives/lock")
    (root / "var/cache/apt/archives/partial").mkdir()
    write(root, "var/lib/apt/lists/lock")
    (root / "var/lib/apt/lists/partial").mkdir()
    write(root, "var/cache/apt/archives/readme.txt", "not a .deb")
    (root / "var/cache/yum").mkdir(parents=True)
    document = lint(root, config())
    assert ids(document) == set()


DPKG_STATUS = """\
Package: sudo
Status: install ok installed
Version: 1.9.13p3-1

Package: openssh-server
Status: deinstall ok config-files
Version: 1:9.2p1-2

Package: bash
Status: install ok installed
"""


def test_sudo_from_the_dpkg_database(root: Path) -> None:
    write(root, "var/lib/dpkg/status", DPKG_STATUS)
    document = lint(root, config())
    assert findings(document) == {("CL-SUDO", "/var/lib/dpkg/status")}
    result = document["Results"][0]
    assert result["Custom"]["packages"] == ["sudo (/var/lib/dpkg/status)"]
    assert result["Custom"]["cis"] == "4.3"


def test_sudo_and_sshd_by_their_files_in_a_merged_usr(root: Path) -> None:
    write(root, "usr/bin/sudo", "x", 0o755)
    write(root, "usr/sbin/sshd", "x", 0o755)
    (root / "bin").symlink_to("usr/bin")
    (root / "sbin").symlink_to("/usr/sbin")
    document = lint(root, config())
    assert findings(document) == {("CL-SUDO", "/usr/bin/sudo"),
                                  ("CL-SSH-SERVER", "/usr/sbin/sshd")}
    sshd = next(r for r in document["Results"] if r["ID"] == "CL-SSH-SERVER")
    assert sshd["Custom"]["files"] == ["/usr/sbin/sshd"]
    assert sshd["Custom"]["cis"] == "5.7"


def test_ssh_server_from_apk_and_distroless_databases(root: Path) -> None:
    write(root, "lib/apk/db/installed", "P:musl\nV:1.2\n\nP:openssh-server\nV:9.3\n\n")
    write(root, "var/lib/dpkg/status.d/sudo", "Package: sudo\nVersion: 1.9\n")
    document = lint(root, config())
    assert findings(document) == {("CL-SSH-SERVER", "/lib/apk/db/installed"),
                                  ("CL-SUDO", "/var/lib/dpkg/status.d/sudo")}


# --- what the walk never does -----------------------------------------------------------------


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path os.open is called with while the test runs."""
    paths: list[str] = []
    real_open = os.open

    def spy(path: Any, *args: Any, **kwargs: Any) -> int:
        paths.append(os.fsdecode(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(cl.os, "open", spy)
    return paths


def test_symlinks_out_of_the_target_are_never_followed(tmp_path: Path, root: Path,
                                                       opened: list[str]) -> None:
    outside = tmp_path / "host"
    write(outside, "shadow", "evil::1:0:99999:7:::\n")
    write(outside, "id_rsa", RSA_KEY)
    write(outside, "cache/sudo_1.9_amd64.deb", "deb")
    write(outside, "sudo", "x", 0o4755)
    (root / "etc").mkdir()
    (root / "etc/shadow").symlink_to("/etc/shadow")  # the host's: a loop inside the target
    (root / "etc/passwd").symlink_to(outside / "shadow")  # absolute: resolved in the target
    (root / "home/app").mkdir(parents=True)
    (root / "home/app/id_rsa").symlink_to(outside / "id_rsa")
    (root / "home/app/.netrc").symlink_to("../../../host/shadow")  # relative, climbing out
    (root / "var/cache/apt").mkdir(parents=True)
    (root / "var/cache/apt/archives").symlink_to(outside / "cache")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/sudo").symlink_to(outside / "sudo")
    (root / "hostroot").symlink_to("/")
    document = lint(root, config())
    assert document["Successful"] == "true"
    assert document["Results"] == []
    scanned = [path for path in opened if not path.startswith("/proc/")]
    assert all(path.startswith(str(root) + "/") for path in scanned), scanned
    assert document["Custom"]["skipped"]["symlinks_not_followed"] == 7
    assert any("/etc/shadow" in note and "symbolic links" in note
               for note in document["Custom"]["notes"])


def test_resolve_in_root_stays_inside(tmp_path: Path, root: Path) -> None:
    write(root, "etc/os-release", "ID=test\n")
    (root / "lib").symlink_to("../../../../usr/lib")
    (root / "usr/lib").mkdir(parents=True)
    (root / "etc/link").symlink_to("/etc/os-release")
    assert cl.resolve_in_root(str(root), "/etc/link") == str(root / "etc/os-release")
    assert cl.resolve_in_root(str(root), "/../../etc/os-release") == str(root / "etc/os-release")
    assert cl.resolve_in_root(str(root), "/lib") == str(root / "usr/lib")
    assert cl.resolve_in_root(str(root), "/etc/os-release/x") is None
    assert cl.resolve_in_root(str(root), "/missing/x") is None


def test_symlink_loops_at_every_file_read_are_notes_not_failures(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (root / "etc").mkdir()
    (root / "etc/passwd").symlink_to("/etc/passwd")  # itself: a loop
    with pytest.raises(OSError, match="symbolic links") as raised:
        cl.resolve_in_root(str(root), "etc/passwd")
    assert raised.value.errno == errno.ELOOP
    assert raised.value.filename == "/etc/passwd"
    for path in ("/etc/shadow", "/var/lib/dpkg/status", "/lib/apk/db/installed",
                 "/var/lib/rpm", "/usr/bin/sudo", "/usr/sbin/sshd"):
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).symlink_to(path)  # itself: a loop
    (root / "var/lib/dpkg/status.d").symlink_to("status.d")
    document = lint(root, config(user="app"))
    # As for any other file configlint can't read: the target is scanned, the notes say why.
    assert document["Successful"] == "true"
    notes = document["Custom"]["notes"]
    for path in ("/etc/passwd", "/etc/shadow", "/var/lib/dpkg/status",
                 "/var/lib/dpkg/status.d", "/lib/apk/db/installed"):
        assert any(path in note and "too many levels of symbolic links" in note
                   for note in notes), (path, notes)
    assert "Traceback" not in capsys.readouterr().err


def test_fifos_sockets_and_devices_are_skipped_not_opened(root: Path, opened: list[str]) -> None:
    (root / "etc").mkdir()
    os.mkfifo(root / "etc/shadow")  # reading it would block forever
    os.mkfifo(root / "opt.fifo")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "app.sock"))
        devices = 0
        if os.geteuid() == 0:
            os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            devices = 1
        (root / "dev").mkdir()
        write(root, "dev/ww", "x", 0o666)  # /dev, /proc, /sys of the target are not walked
        write(root, "proc/1/environ", "x", 0o666)
        document = lint(root, config())
    assert document["Results"] == []
    skipped = document["Custom"]["skipped"]
    assert (skipped["fifos"], skipped["sockets"], skipped["device_files"]) == (2, 1, devices)
    assert not any(path.endswith(("opt.fifo", "app.sock", "/null", "/ww")) for path in opened)
    assert "did not descend into /dev, /proc" in document["Custom"]["notes"]


def _deny(monkeypatch: pytest.MonkeyPatch, denied: set[str]) -> None:
    """Make these host paths unreadable, as they are to uid 65534 (tests may run as root)."""
    real_open, real_scandir = os.open, os.scandir

    def fake_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if os.fsdecode(path) in denied:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_open(path, *args, **kwargs)

    def fake_scandir(path: Any = ".") -> Any:
        if os.fsdecode(path) in denied:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(cl.os, "open", fake_open)
    monkeypatch.setattr(cl.os, "scandir", fake_scandir)


def test_unreadable_files_and_directories_are_counted_notes(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = write(root, "opt/secret.key", RSA_KEY, 0o000)
    write(root, "opt/suid", "x", 0o4700)
    (root / "root").mkdir(mode=0o700)
    write(root, "root/.ssh/id_rsa", RSA_KEY, 0o600)
    shadow = write(root, "etc/shadow", "nopass::1::::::\n", 0o000)
    _deny(monkeypatch, {str(secret), str(root / "root"), str(shadow)})
    document = lint(root, config())
    assert document["Successful"] == "true"
    # What the walk can see without reading still counts: the setuid bit.
    assert findings(document) == {("CL-SETUID", "/opt/suid")}
    custom = document["Custom"]
    assert custom["skipped"]["unreadable_files"] == 2  # secret.key and shadow
    assert custom["skipped"]["unreadable_directories"] == 1
    assert custom["checks_skipped"] == ["CL-EMPTY-PASSWORD"]
    notes = "\n".join(custom["notes"])
    assert "cannot read /etc/shadow as the scanner user" in notes
    assert "could not read 2 file(s)" in notes and "/opt/secret.key" in notes
    assert "could not list 1 directorie(s)" in notes and "/root" in notes


# --- ignore rules -----------------------------------------------------------------------------


def _bad_tree(root: Path) -> dict[str, Any]:
    write(root, "opt/ww", "x", 0o666)
    write(root, "srv/a/ww", "x", 0o666)
    write(root, "var/cache/apk/x.apk", "x")
    return config(user="", exposed_ports=["22/tcp"], names=["app:latest"],
                  env=["DB_PASSWORD=x", "API_TOKEN=y"])


@pytest.mark.parametrize("value", ["CL-SSH-PORT:CL-LATEST-ONLY", "CL-SSH-PORT+CL-LATEST-ONLY",
                                   "CL-SSH-PORT, CL-LATEST-ONLY"])
def test_ignore_argument(root: Path, value: str) -> None:
    document = lint(root, _bad_tree(root), args={"ignore": value})
    assert findings(document, ignored=True) == {("CL-SSH-PORT", None), ("CL-LATEST-ONLY", None)}
    ignored = [r for r in document["Results"] if r["Custom"]["ignored"]]
    assert {r["Custom"]["reason"] for r in ignored} == {"ignored by the ignore= scanner argument"}
    assert all("reason" not in r["Custom"] for r in document["Results"]
               if not r["Custom"]["ignored"])
    custom = document["Custom"]
    assert custom["ignored"] == 2
    assert custom["counts"] == {"critical": 0, "high": 2, "medium": 3, "low": 1}


def test_ignore_patterns_and_unknown_ids(root: Path) -> None:
    document = lint(root, _bad_tree(root), args={"ignore": "CL-PKG-*:CL-NOPE", "colour": "x"})
    assert findings(document, ignored=True) == {("CL-PKG-CACHE", "/var/cache/apk")}
    notes = document["Custom"]["notes"]
    assert any("'CL-NOPE' matches no check ID" in note for note in notes)
    assert "ignored unknown scanner argument 'colour'" in notes


def test_ignore_file(tmp_path: Path, root: Path) -> None:
    rules = tmp_path / "configlint.ignore"
    rules.write_text(
        "# accepted risks\n"
        "\n"
        "CL-NO-HEALTHCHECK\n"
        "CL-WORLD-WRITABLE /srv/*   # scratch area, ticket 42\n"
        "CL-ENV-SECRET API_*\n"
        "CL-SSH-PORT 2222/tcp\n"
        "CL-TYPO\n",
        encoding="utf-8")
    target_config = {**_bad_tree(root), "healthcheck": None}
    document = lint(root, target_config, args={"ignore_file": str(rules)})
    assert findings(document, ignored=True) == {
        ("CL-NO-HEALTHCHECK", None), ("CL-WORLD-WRITABLE", "/srv/a/ww"), ("CL-ENV-SECRET", None)}
    reasons = {r["Custom"]["path"] or r["Custom"].get("variable") or r["ID"]: r["Custom"]["reason"]
               for r in document["Results"] if r["Custom"]["ignored"]}
    assert reasons == {
        "CL-NO-HEALTHCHECK": "ignored by configlint.ignore line 3",
        "/srv/a/ww": "scratch area, ticket 42 (configlint.ignore line 4)",
        "API_TOKEN": "ignored by configlint.ignore line 5",
    }
    assert ("CL-WORLD-WRITABLE", "/opt/ww") in findings(document)
    assert ("CL-SSH-PORT", None) in findings(document)
    assert "configlint.ignore line 7: not a known check ID" in document["Custom"]["notes"]


def test_ignore_file_content_never_reaches_the_results(tmp_path: Path, root: Path) -> None:
    hashed = "$6$salt$SECRETHASH"
    lines = [f"user{index}:{hashed}{index}:19000:0:99999:7:::" for index in range(25)]
    rules = tmp_path / "shadow"
    rules.write_text("\n".join(["CL-NO-HEALTHCHECK", *lines, f"nobody {hashed} # {hashed}x"])
                     + "\n", encoding="utf-8")
    target_config = {**_bad_tree(root), "healthcheck": None}

    document = lint(root, target_config, args={"ignore_file": str(rules)})

    text = json.dumps(document)
    assert hashed not in text and "user1" not in text and "nobody" not in text
    notes = [n for n in document["Custom"]["notes"] if n.startswith("shadow")]
    assert notes == [*(f"shadow line {n}: not a known check ID" for n in range(2, 12)),
                     "shadow: 16 more lines are not known check IDs"]
    assert ("CL-NO-HEALTHCHECK", None) in findings(document, ignored=True)


def test_missing_ignore_file_fails_the_scan(tmp_path: Path, root: Path) -> None:
    document = lint(root, config(), args={"ignore_file": str(tmp_path / "missing")})
    assert document["Successful"] == "false"
    assert "ignore_file" in document["Error"]
    assert document["Results"] == []


# --- scale ------------------------------------------------------------------------------------


@pytest.fixture
def big_root(tmp_path: Path) -> Iterator[Path]:
    """A directory for a big tree: on tmpfs when there is one (50x faster to fill than disk)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        with tempfile.TemporaryDirectory(prefix="configlint-test-", dir=shm) as directory:
            yield Path(directory)
    else:
        yield tmp_path


def _many_files(root: Path, total: int, per_dir: int) -> None:
    """`total` empty world-writable files: one flat directory of half, the rest spread out."""
    old_umask = os.umask(0)
    try:
        flat = root / "flat"
        flat.mkdir(0o755)
        for i in range(total // 2):
            os.mknod(flat / f"f{i}", stat.S_IFREG | 0o666)
        for d in range((total - total // 2) // per_dir):
            sub = root / "tree" / f"d{d // 10}" / f"d{d}"
            for directory in (sub.parent.parent, sub.parent, sub):
                directory.mkdir(0o755, exist_ok=True)
            for i in range(per_dir):
                os.mknod(sub / f"f{i}", stat.S_IFREG | 0o666)
    finally:
        os.umask(old_umask)


def test_a_200000_file_tree_is_walked_in_bounded_memory(big_root: Path) -> None:
    total = 200_000
    root = big_root
    _many_files(root, total, per_dir=1000)
    tracemalloc.start()
    try:
        started = time.monotonic()
        meta = {"key": "k", "type": "image", "config": config()}
        document = cl.scan_target("k", str(root), "lint", meta, None, cl.load_settings(None))
        elapsed = time.monotonic() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    custom = document["Custom"]
    assert custom["files_scanned"] == total
    # Every file is world-writable: the findings stop at the cap, the rest are counted.
    listed = [r for r in document["Results"] if r["ID"] == "CL-WORLD-WRITABLE"]
    assert len(listed) == cl.MAX_FINDINGS_PER_CHECK
    assert custom["truncated"] == {"CL-WORLD-WRITABLE": total - cl.MAX_FINDINGS_PER_CHECK}
    assert custom["counts"]["medium"] == total  # unlisted findings still count
    assert any("199000 more CL-WORLD-WRITABLE" in note for note in custom["notes"])
    # A list of 200,000 paths alone would take about 20 MB.
    assert peak < 10 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    print(f"\n200,000 files: {elapsed:.1f} s under tracemalloc, peak {peak / 1e6:.1f} MB")


# --- the whole program ------------------------------------------------------------------------


@pytest.fixture
def scan_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    dirs = {name: tmp_path / name for name in ("scanin", "scanout", "scanmeta")}
    for path in dirs.values():
        path.mkdir()
    monkeypatch.setenv("ATOMICSCAN_SCANIN", str(dirs["scanin"]))
    monkeypatch.setenv("ATOMICSCAN_SCANOUT", str(dirs["scanout"]))
    monkeypatch.setenv("ATOMICSCAN_SCANMETA", str(dirs["scanmeta"]))
    monkeypatch.delenv("ATOMICSCAN_SCANNER_ARGS", raising=False)
    monkeypatch.setenv("ATOMICSCAN_SCAN_TYPE", "lint")
    yield dirs


def _read_output(scan_dirs: dict[str, Path], key: str) -> dict[str, Any]:
    return dict(json.loads((scan_dirs["scanout"] / key / "json").read_text(encoding="utf-8")))


def test_main_writes_one_document_per_target(scan_dirs: dict[str, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    image_key, rootfs_key = "a" * 64, "rootfs-0123456789ab"
    write(scan_dirs["scanin"] / image_key, "opt/ww", "x", 0o666)
    write(scan_dirs["scanin"] / rootfs_key, "etc/os-release", "ID=x\n")
    (scan_dirs["scanin"] / ".hidden").mkdir()
    (scan_dirs["scanmeta"] / "targets.json").write_text(json.dumps([
        {"key": image_key, "target": "app", "id": image_key, "type": "image",
         "config": config(env=["DB_PASSWORD=hunter2"])},
        {"key": rootfs_key, "target": "/srv/root", "id": rootfs_key, "type": "rootfs",
         "config": None},
    ]), encoding="utf-8")
    monkeypatch.setenv("ATOMICSCAN_SCANNER_ARGS", json.dumps({"ignore": "CL-WORLD-WRITABLE"}))
    assert cl.main() == 0
    assert sorted(p.name for p in scan_dirs["scanout"].iterdir()) == [image_key, rootfs_key]
    image = _read_output(scan_dirs, image_key)
    for field, value in (("Scanner", "configlint"), ("Successful", "true"),
                         ("Scan Type", "lint"), ("UUID", image_key)):
        assert image[field] == value
    assert image["Time"] <= image["Finished Time"]
    assert findings(image) == {("CL-ENV-SECRET", None)}
    assert findings(image, ignored=True) == {("CL-WORLD-WRITABLE", "/opt/ww")}
    assert "hunter2" not in (scan_dirs["scanout"] / image_key / "json").read_text()
    rootfs = _read_output(scan_dirs, rootfs_key)
    assert rootfs["Results"] == []
    assert "configuration checks skipped" in rootfs["Custom"]["notes"]


def test_main_without_targets_json_still_lints_the_rootfs(scan_dirs: dict[str, Path]) -> None:
    write(scan_dirs["scanin"] / "k", "opt/ww", "x", 0o666)
    assert cl.main() == 0
    document = _read_output(scan_dirs, "k")
    assert findings(document) == {("CL-WORLD-WRITABLE", "/opt/ww")}
    assert any(note.startswith("no target configuration") for note in document["Custom"]["notes"])


def test_main_refuses_another_scan_type(scan_dirs: dict[str, Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (scan_dirs["scanin"] / "k").mkdir()
    monkeypatch.setenv("ATOMICSCAN_SCAN_TYPE", "inventory")
    assert cl.main() == 0
    document = _read_output(scan_dirs, "k")
    assert document["Successful"] == "false"
    assert "unsupported scan type 'inventory'" in document["Error"]


def test_main_without_scanin_exits_2(scan_dirs: dict[str, Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMICSCAN_SCANIN", str(scan_dirs["scanin"] / "missing"))
    assert cl.main() == 2


def test_runs_as_a_standalone_program(scan_dirs: dict[str, Path]) -> None:
    import subprocess

    write(scan_dirs["scanin"] / "k", "usr/local/bin/x", "x", 0o4755)
    env = {key: value for key, value in os.environ.items() if key.startswith("ATOMICSCAN_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    completed = subprocess.run([sys.executable, "-I", str(SCANNER_PATH)], env=env,
                               capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    assert findings(_read_output(scan_dirs, "k")) == {("CL-SETUID", "/usr/local/bin/x")}


def test_every_check_is_documented() -> None:
    for check in cl.CHECK_LIST:
        assert check.id.startswith("CL-")
        assert check.severity in ("low", "medium", "high", "critical")
        assert check.category in ("config", "rootfs")
        assert check.remediation.endswith(".")
    # Cited only where the CIS Docker Benchmark v1.6.0 item clearly applies.
    cited = {check.id: check.cis for check in cl.CHECK_LIST if check.cis}
    assert cited == {"CL-USER-ROOT": "4.1", "CL-NO-HEALTHCHECK": "4.6", "CL-ENV-SECRET": "4.10",
                     "CL-SETUID": "4.8", "CL-SUDO": "4.3", "CL-SSH-SERVER": "5.7"}
