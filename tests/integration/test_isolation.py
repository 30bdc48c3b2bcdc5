"""The scanner container is locked down, and what it writes to /scanout is not trusted."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import (
    ALPINE,
    DEBIAN,
    Atomicscan,
    Engine,
    HostSnapshot,
    assert_locked_down,
    assert_no_leftovers,
    snapshot,
    tree_digest,
)

PROBE = r"""
for d in /scanin/*; do
  k=$(basename "$d"); mkdir -p "/scanout/$k"
  if touch "$d/pwned" 2>/dev/null; then t=yes; else t=no; fi
  if rm -f "$d/etc/debian_version" 2>/dev/null; then r=yes; else r=no; fi
  if touch /pwned-root 2>/dev/null; then root=yes; else root=no; fi
  cap=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
  nets=$(ls /sys/class/net | tr '\n' ' ')
  printf '{"Successful":"true","Custom":{"uid":"%s","capeff":"%s","touch":"%s","rm":"%s",' \
    "$(id -u)" "$cap" "$t" "$r" > "/scanout/$k/json"
  printf '"rootfs_write":"%s","nets":"%s","nnp":"%s"}}' "$root" "$nets" \
    "$(sed -n 's/^NoNewPrivs:[[:space:]]*//p' /proc/self/status)" >> "/scanout/$k/json"
done
"""


def test_scanner_runs_locked_down_and_cannot_write_the_target(
    atomicscan: Atomicscan, engine: Engine, containers: list[str], unique: str
) -> None:
    container = f"atomicscan-test-ro-{unique}"
    containers.append(container)
    engine("create", "--name", container, DEBIAN, "true")
    with engine.container_root(container) as roots:
        before_container = tree_digest(roots)
    with engine.image_root(DEBIAN) as roots:
        before_image = tree_digest(roots)
    host_before = snapshot(atomicscan.state_dir)
    atomicscan.add_scanner("probe", PROBE)

    run = atomicscan("--scanner", "probe", "--json", DEBIAN, container)

    assert run.returncode == 0, run.stderr
    for result in run.json()["results"]:
        assert_locked_down(result["custom"])
    with engine.container_root(container) as roots:
        assert tree_digest(roots) == before_container
    with engine.image_root(DEBIAN) as roots:
        assert tree_digest(roots) == before_image
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_symlink_output_to_a_host_file_is_refused(
    atomicscan: Atomicscan, host_before: HostSnapshot, tmp_path: Path, unique: str
) -> None:
    secret_text = f"host-secret-{unique}"
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"Successful": "true", "Custom": {"s": secret_text}}))
    atomicscan.add_scanner("linker", (
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        f'ln -s {secret} "/scanout/$k/json"; ln -s {secret} "/scanout/$k/extra"; '
        f'ln -s {tmp_path} "/scanout/$k/dir"; done'))

    run = atomicscan("--scanner", "linker", "--json", ALPINE)

    assert run.returncode == 1
    (result,) = run.json()["results"]
    assert result["successful"] is False
    assert "symlink" in result["error"]
    assert secret_text not in run.stdout + run.stderr
    for path in atomicscan.results_dir.rglob("*"):
        assert not path.is_symlink()
        if path.is_file():
            assert secret_text not in path.read_text(errors="replace")
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_invalid_json_output_fails_the_scan(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    atomicscan.add_scanner("garbler", (
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        "printf '{\"Successful\": tru' > \"/scanout/$k/json\"; done"))

    run = atomicscan("--scanner", "garbler", "--json", ALPINE)

    assert run.returncode == 1
    (result,) = run.json()["results"]
    assert "not valid JSON" in result["error"]
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_huge_output_fails_the_scan(atomicscan: Atomicscan, host_before: HostSnapshot) -> None:
    atomicscan.add_scanner("flooder", (
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        'head -c 40000000 /dev/zero > "/scanout/$k/json"; done'))

    run = atomicscan("--scanner", "flooder", "--json", ALPINE)

    assert run.returncode == 1
    (result,) = run.json()["results"]
    assert "limit" in result["error"]
    kept = sum(p.stat().st_size for p in atomicscan.results_dir.rglob("*") if p.is_file())
    assert kept < 1_000_000, "the refused output must not be copied into the results"
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_missing_output_and_crash_fail_with_the_exit_status(
    atomicscan: Atomicscan, host_before: HostSnapshot
) -> None:
    atomicscan.add_scanner("crasher", "echo 'scanner blew up' >&2; exit 3")

    run = atomicscan("--scanner", "crasher", "--json", ALPINE)

    assert run.returncode == 1
    (result,) = run.json()["results"]
    assert result["successful"] is False
    assert "status 3" in result["error"]
    assert "scanner blew up" in result["error"]
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("atomicscan: error: image") and "status 3" in line
    assert_no_leftovers(host_before, atomicscan.state_dir)


def test_scanner_gets_each_targets_config_read_only(
    atomicscan: Atomicscan, engine: Engine, containers: list[str], unique: str
) -> None:
    container = f"atomicscan-test-cfg-{unique}"
    containers.append(container)
    engine("create", "--name", container, "--user", "1234", "--env", "COLOR=blue",
           "--label", "team=scan", DEBIAN, "sleep", "1")
    atomicscan.add_scanner("metareader", (
        'for d in /scanin/*; do k=$(basename "$d"); mkdir -p "/scanout/$k"; '
        'cp /scanmeta/targets.json "/scanout/$k/targets.json"; '
        'if touch /scanmeta/x 2>/dev/null; then w=yes; else w=no; fi; '
        'printf \'{"Successful":"true","Custom":{"meta_write":"%s"}}\' "$w" > "/scanout/$k/json"; '
        "done"))

    run = atomicscan("--scanner", "metareader", "--json", DEBIAN, container)

    assert run.returncode == 0, run.stderr
    report = run.json()
    first = report["results"][0]
    assert first["custom"]["meta_write"] == "no"
    entries = json.loads((Path(first["raw_dir"]) / "targets.json").read_text())
    by_type = {entry["type"]: entry for entry in entries}
    image, box = by_type["image"]["config"], by_type["container"]["config"]
    assert image["cmd"] == ["/bin/bash"] and image["user"] == ""
    assert any(name.endswith("atomicscan-test/debian:bookworm") for name in image["names"])
    assert box["user"] == "1234"
    assert "COLOR=blue" in box["env"]
    assert box["labels"]["team"] == "scan"
    assert box["cmd"] == ["sleep", "1"]
