"""Scale benchmark (issue 17): `atomicscan --images` over hundreds to a thousand images.

It loads N distinct small images (bench/scale_images.py: 20 dpkg packages each, one layer,
one label) into podman's storage, N growing step by step, and at each step times
``atomicscan --images --no-cache --scanner packages`` and then the cached rescan, with the
peak RSS of the atomicscan process itself (its own ``ru_maxrss``, threads included; the
runtime's child processes are not counted). ``--images`` has no filter: each run scans the
whole storage, the generated images plus whatever the host already holds, and the tables
give that count. Then it loops syft (``syft dir:ROOTFS``, each image mounted beforehand, so
only syft's cataloguing is timed) over some of the images as the yardstick, and repeats the
first two measures on a private dockerd at one size.

Whatever happens (an error, Ctrl-C, SIGTERM), it removes every image carrying its label,
the containers and mounts it made, its private dockerd and the temporary directory; the
last line of its output says so.

    sudo .venv/bin/python bench/bench_scale.py --sizes 100,250,500,1000 --docker-size 250
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import benchlib
import scale_images

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SCANNER = "packages"
SCANNER_IMAGE = "localhost/atomicscan/packages:latest"
DOCKERD_NAME = "atomicscan-bench-scale-docker"
#: ``--batch-size`` given to atomicscan, 0 for its default (set once from the arguments).
BATCH_SIZE = [0]

#: Runs atomicscan's CLI in this process and writes its own peak RSS (KiB) to a file.
RSS_WRAPPER = """
import atexit, resource, sys
out = sys.argv.pop(1)
def _peak():
    with open(out, "w") as f:
        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
atexit.register(_peak)
sys.argv[0] = "atomicscan"
from atomicscan.cli import main
main()
"""


@dataclass
class ScanRun:
    seconds: float
    targets: int
    failed: int
    cached: int
    peak_rss_kib: int

    @property
    def per_target_ms(self) -> float:
        return 1000 * self.seconds / max(1, self.targets)


@dataclass
class Step:
    runtime: str
    generated: int
    fresh: ScanRun
    cached: ScanRun
    load_avg: str


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env:
        fixup = Path("/etc/atomicscan/containers.conf")
        env["CONTAINERS_CONF"] = str(fixup if fixup.exists()
                                     else REPO / "atomicscan/data/containers.conf")
    return env


def scan(runtime: str, workdir: Path, env: Mapping[str, str], *, no_cache: bool) -> ScanRun:
    """One ``atomicscan --images`` run, timed, with the process's own peak RSS."""
    rss_file = workdir / "rss"
    rss_file.unlink(missing_ok=True)
    argv = [str(VENV_BIN / "python"), "-c", RSS_WRAPPER, str(rss_file),
            "--images", "--runtime", runtime, "--scanner", SCANNER, "--json",
            "--output-dir", str(workdir / "results")]
    if no_cache:
        argv.append("--no-cache")
    if BATCH_SIZE[0]:
        argv += ["--batch-size", str(BATCH_SIZE[0])]
    for attempt in (1, 2):
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, env=dict(env),
                              check=False, timeout=3600)
        seconds = time.monotonic() - started
        if done.stdout.strip() or attempt == 2:
            break
        # Other users of the storage can remove an image while podman lists them.
        benchlib.log(f"{runtime}: no report, trying once more: {done.stderr[-300:]}")
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"atomicscan printed no report (exit {done.returncode}): "
                           f"{done.stderr[-2000:]}") from None
    results = report.get("results") or []
    return ScanRun(seconds=seconds, targets=len(results),
                   failed=sum(1 for r in results if not r.get("successful")),
                   cached=sum(1 for r in results if r.get("cached")),
                   peak_rss_kib=int(rss_file.read_text(encoding="utf-8") or 0))


def load_images(binary: str, env: Mapping[str, str], workdir: Path, tag: str,
                start: int, stop: int) -> None:
    archive = workdir / f"images-{start}-{stop}.tar"
    scale_images.write_archive(archive, tag, stop, start=start)
    subprocess.run([binary, "load", "--input", str(archive)], check=True, env=dict(env),
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=3600)
    archive.unlink()


def measure(runtime: str, binary: str, sizes: Sequence[int], workdir: Path, tag: str,
            env: Mapping[str, str]) -> list[Step]:
    steps: list[Step] = []
    loaded = 0
    for size in sizes:
        benchlib.log(f"{runtime}: loading images {loaded}..{size - 1}")
        load_images(binary, env, workdir, tag, loaded, size)
        loaded = size
        benchlib.log(f"{runtime}: scanning with {size} generated images in storage")
        shutil.rmtree(workdir / "results", ignore_errors=True)
        fresh = scan(runtime, workdir, env, no_cache=True)
        cached = scan(runtime, workdir, env, no_cache=False)
        steps.append(Step(runtime, size, fresh, cached, load_average()))
        benchlib.log(f"{runtime}: {fresh.targets} targets in {fresh.seconds:.1f}s, cached "
                     f"{cached.seconds:.2f}s, peak RSS {fresh.peak_rss_kib // 1024} MiB")
    return steps


def syft_loop(env: Mapping[str, str], tag: str, count: int, workdir: Path) -> tuple[int, float]:
    """``syft dir:ROOTFS`` over ``count`` generated images, each mounted read-only first;
    the mounts are outside the timed part."""
    syft = VENV_BIN / "syft"
    names = [scale_images.image_name(tag, index) for index in range(count)]
    podman = ["podman"]
    mounted = json.loads(subprocess.run([*podman, "image", "mount", "--format", "json", "--",
                                         *names], capture_output=True, text=True, check=True,
                                        env=dict(env)).stdout or "[]")
    syft_env = dict(env, SYFT_CHECK_FOR_APP_UPDATE="false", TMPDIR=str(workdir),
                    SYFT_CACHE_DIR=str(workdir / "syft-cache"))
    try:
        started = time.monotonic()
        for row in mounted:
            subprocess.run([str(syft), f"dir:{row['mountpoint']}", "-o", "syft-json", "-q"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                           env=syft_env, timeout=600)
        return len(mounted), time.monotonic() - started
    finally:
        subprocess.run([*podman, "image", "unmount", "--", *names], check=False,
                       env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def docker_steps(size: int, workdir: Path, tag: str, penv: Mapping[str, str]) -> list[Step]:
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import dockerd  # the test suite's private dockerd helper

    paths = dockerd.Paths(DOCKERD_NAME)
    try:
        with dockerd.private_dockerd(DOCKERD_NAME) as host:
            env = dict(penv, DOCKER_HOST=host)
            dockerd.load_from_podman(SCANNER_IMAGE, dict(penv), host=host)
            try:
                return measure("docker", "docker", [size], workdir, tag, env)
            finally:
                ids = scale_images.labelled_images("docker", tag, env=env)
                scale_images.remove_images("docker", ids, env=env)
    finally:
        shutil.rmtree(paths.data_root, ignore_errors=True)


def table(steps: Sequence[Step], markdown: bool) -> str:
    headers = ["runtime", "generated images", "images scanned", "time", "per image",
               "peak RSS", "cached rescan", "cached peak RSS", "failed", "load avg"]
    rows = [[s.runtime, str(s.generated), str(s.fresh.targets), f"{s.fresh.seconds:.1f} s",
             f"{s.fresh.per_target_ms:.0f} ms", f"{s.fresh.peak_rss_kib / 1024:.0f} MB",
             f"{s.cached.seconds:.2f} s", f"{s.cached.peak_rss_kib / 1024:.0f} MB",
             f"{s.fresh.failed}/{s.cached.failed}", s.load_avg] for s in steps]
    return benchlib.render_table(headers, rows, markdown)


def cleanup(tag: str, workdir: Path, env: Mapping[str, str]) -> str:
    ids = scale_images.labelled_images("podman", tag, env=env)
    scale_images.remove_images("podman", ids, env=env)
    left = scale_images.labelled_images("podman", tag, env=env)
    mounts = benchlib.mount_points_under(workdir)
    for point in mounts:
        subprocess.run(["umount", "--lazy", str(point)], check=False)
    shutil.rmtree(workdir, ignore_errors=True)
    return (f"cleanup: removed {len(ids)} podman images ({len(left)} left), "
            f"{len(mounts)} mounts, {workdir}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,250,500,1000",
                        help="generated images at each podman step, ascending")
    parser.add_argument("--docker-size", type=int, default=250, help="0 to skip docker")
    parser.add_argument("--syft-count", type=int, default=100, help="0 to skip syft")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="pass --batch-size N to atomicscan (0: its default)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    BATCH_SIZE[0] = args.batch_size
    sizes = sorted({int(size) for size in args.sizes.split(",") if size.strip()})
    if os.geteuid() != 0:
        print("bench_scale: run as root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, benchlib._on_sigterm)
    tag = f"{os.getpid()}{secrets.token_hex(3)}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    # Runs are recorded as usual (that is part of their cost), in a history of our own.
    env = dict(podman_env(), ATOMICSCAN_DB=f"sqlite:///{workdir / 'history.db'}")
    steps: list[Step] = []
    syft: tuple[int, float] | None = None
    summary = ""
    try:
        steps += measure("podman", "podman", sizes, workdir, tag, env)
        if args.syft_count:
            benchlib.log(f"syft over {args.syft_count} images")
            syft = syft_loop(env, tag, min(args.syft_count, sizes[-1]), workdir)
        if args.docker_size:
            steps += docker_steps(args.docker_size, workdir, tag, env)
    finally:
        # What was measured is printed even when a later step failed.
        summary = cleanup(tag, workdir, env)
        print(table(steps, args.markdown))
        if syft is not None:
            count, seconds = syft
            print(f"\nsyft dir: over {count} mounted images: {seconds:.1f} s, "
                  f"{1000 * seconds / max(1, count):.0f} ms per image")
        print(f"\n{summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
