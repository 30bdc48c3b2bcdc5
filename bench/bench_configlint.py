"""configlint on the Debian image and on a synthetic rootfs of 200,000 small files.

Reports, for each: atomicscan end to end (wall time, peak RSS of atomicscan itself) and the
scanner program alone on the host over the same tree (wall time, peak RSS: the memory the
walk needs, which must not grow with the number of files).

    sudo .venv/bin/python bench/bench_configlint.py [--repeat N] [--files N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ATOMICSCAN = [sys.executable, "-m", "atomicscan"]
SCANNER = REPO / "scanners" / "configlint" / "configlint.py"
DEBIAN = "localhost/atomicscan-test/debian:bookworm"


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env and Path("/etc/atomicscan/containers.conf").is_file():
        env["CONTAINERS_CONF"] = "/etc/atomicscan/containers.conf"
    env.update(extra)
    return env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command, via GNU time."""
    start = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], env=env, capture_output=True,
                          text=True, check=False)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{done.stderr[-2000:]}")
    return elapsed, int(done.stderr.strip().splitlines()[-1])


def make_tree(root: Path, files: int) -> None:
    """A rootfs-like tree: 200 directories of small files, plus an etc/ for the checks."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text('ID=synthetic\nVERSION_ID="1"\n')
    per_dir = max(1, files // 200)
    for index in range(files):
        directory = root / "usr" / "share" / f"d{index // per_dir:03d}"
        if index % per_dir == 0:
            directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index}").write_bytes(b"x" * (index % 64))


@contextlib.contextmanager
def mounted(image: str) -> Iterator[Path]:
    env = env_with()
    path = subprocess.run(["podman", "image", "mount", image], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()
    try:
        yield Path(path)
    finally:
        subprocess.run(["podman", "image", "umount", image], env=env, capture_output=True,
                       check=False)


def scanner_alone(rootfs: Path, work: Path) -> tuple[float, int]:
    scanin, scanout, meta = work / "in", work / "out", work / "meta"
    for directory in (scanin, scanout, meta):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
    # A bind, not a symlink: the scanner never follows a symlink, its own target included.
    (scanin / "k1").mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(rootfs), str(scanin / "k1")], check=True)
    (meta / "targets.json").write_text(json.dumps(
        [{"key": "k1", "target": "bench", "id": "k1", "type": "rootfs", "config": None}]))
    try:
        return timed([sys.executable, str(SCANNER)], env_with(
            ATOMICSCAN_SCANIN=str(scanin), ATOMICSCAN_SCANOUT=str(scanout),
            ATOMICSCAN_SCANMETA=str(meta)))
    finally:
        subprocess.run(["umount", str(scanin / "k1")], check=False)


def summary(samples: list[tuple[float, int]]) -> str:
    seconds = [s for s, _ in samples]
    peak = max(m for _, m in samples)
    return (f"{statistics.median(seconds):.2f} s (min {min(seconds):.2f}, max "
            f"{max(seconds):.2f}), peak RSS {peak / 1024:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-configlint-", dir="/var/tmp") as scratch:
        work = Path(scratch)
        tree = work / "tree"
        print(f"building {args.files} files ...", file=sys.stderr)
        make_tree(tree, args.files)
        state = {"ATOMICSCAN_STATE_DIR": str(work / "state"),
                 "ATOMICSCAN_RESULTS_DIR": str(work / "results")}
        rows: dict[str, list[tuple[float, int]]] = {k: [] for k in (
            "debian: atomicscan end to end", "debian: scanner alone",
            f"{args.files} files: atomicscan end to end", f"{args.files} files: scanner alone")}
        with mounted(DEBIAN) as debian_root:
            for _ in range(args.repeat):
                rows["debian: atomicscan end to end"].append(timed(
                    [*ATOMICSCAN, "--runtime", "podman", "--scanner", "configlint", "--json",
                     "--no-cache", DEBIAN], env_with(**state)))
                rows["debian: scanner alone"].append(scanner_alone(debian_root, work))
                rows[f"{args.files} files: atomicscan end to end"].append(timed(
                    [*ATOMICSCAN, "--runtime", "podman", "--scanner", "configlint", "--json",
                     "--rootfs", str(tree)], env_with(**state)))
                rows[f"{args.files} files: scanner alone"].append(scanner_alone(tree, work))
        print(f"| what | time, peak memory (N={args.repeat}) |\n|---|---|")
        for name, samples in rows.items():
            print(f"| {name} | {summary(samples)} |")


if __name__ == "__main__":
    main()
