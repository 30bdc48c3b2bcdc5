#!/usr/bin/env python3
"""Docker and containerd next to podman: the same measurements on the three runtimes, side by
side in one run.

(a) Presenting the rootfs of the Debian test image (one layer) and of its purged variant
    (two layers, the upper one full of whiteouts) to a scanner, on each runtime:
    MOUNT  = atomicscan's own code: ``Runtime.resolve(ref)``, ``Runtime.mount_rootfs`` (podman:
             ``podman image mount``; docker: ``docker image inspect`` + ``docker info``, then
             a read-only overlay of the layer directories, or a read-only bind of the only
             one; containerd: a ``ctr snapshots view`` of the image's unpacked layers,
             mounted read-only) and ``mounts.readonly_bind``, then the unmounts;
    EXPORT = ``X create`` + ``X export CID | tar -x`` + ``X rm`` + removing the tree. containerd
             has no export of a container's files: there, EXPORT is what a user of ``ctr``
             does to get an image's files out, ``ctr images mount IMAGE DIR`` + ``cp -a
             DIR/. TREE`` + ``ctr images unmount --rm DIR`` + removing the tree.
(b) ``atomicscan --runtime R --scanner packages --json IMAGE`` for R = podman, docker and
    containerd, end to end, a new process each time; all three must report the same
    packages (every field of every package, and the OS), or the benchmark fails.
(c) Fixed costs of each runtime's CLI that those numbers contain.

docker is a PRIVATE dockerd started for the run (tests/dockerd.py, name
``atomicscan-bench-docker``: its own data root, socket and exec root, no host network
changes); the images are copied into it from root's podman storage with ``podman save |
docker load`` before anything is timed. containerd is a PRIVATE containerd too
(tests/containerd.py, name ``atomicscan-bench-containerd``: its own root, state and socket,
stopped by its PID), the images imported into its ``k8s.io`` namespace with ``podman save``
+ ``ctr images import``; CONTAINERD_ADDRESS and CONTAINERD_NAMESPACE point every child at
it. The alternatives of each comparison are interleaved within every repetition, their order
rotating from one repetition to the next, after one untimed warm-up run of each. Medians,
minima and maxima of N repetitions are printed, with ratios of the medians.

Run it as root from the repository:

    sudo .venv/bin/python bench/bench_runtimes.py [--repeat N] [--markdown]

Everything it sets up (mounts, containers, ``ctr images mount`` snapshots, temporary trees,
the private dockerd and containerd and their data roots) is taken down before it exits, also
on Ctrl-C or SIGTERM; ``--keep-docker-data`` keeps dockerd's data root (and the images loaded
into it) for a faster next run.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
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
    log,
    memory_total,
    mount_points_under,
    render_table,
    rotated,
    secs,
    stat_row,
    stopwatch,
)

REPO = Path(__file__).resolve().parent.parent
# Not resolved: a venv's python is a symlink, and its scripts sit beside the link.
VENV_BIN = Path(sys.executable).parent

#: The private dockerd of this benchmark. The test suite's own is "atomicscan-test-docker";
#: this script never touches that one, nor any other dockerd on the host.
DOCKERD_NAME = "atomicscan-bench-docker"
#: The private containerd of this benchmark; the test suite's have other names.
CONTAINERD_NAME = "atomicscan-bench-containerd"
#: Where the images are in the private containerd: Kubernetes' namespace, as on a node.
CONTAINERD_NAMESPACE = "k8s.io"
RUNTIMES = ("podman", "docker", "containerd")
#: The two runtimes compared with podman, the reference.
OTHERS = ("docker", "containerd")
METHODS = ("MOUNT", "EXPORT")


@dataclass(frozen=True)
class TestImage:
    label: str
    ref: str
    #: Whether /usr/share/zoneinfo is there: the purged variant deletes it by whiteouts.
    has_zoneinfo: bool


IMAGES = (
    TestImage("debian", "localhost/atomicscan-test/debian:bookworm", has_zoneinfo=True),
    TestImage("debian-purged", "localhost/atomicscan-test/debian-purged:latest",
              has_zoneinfo=False),
)
SCANNER_IMAGE = "localhost/atomicscan/packages:latest"

#: How long a child gets to clean up after SIGTERM before it is killed.
CHILD_GRACE_SECONDS = 30.0


# --------------------------------------------------------------------------- processes


def _stop(child: subprocess.Popen[Any]) -> None:
    """Ask a child to finish (atomicscan cleans up on SIGTERM); kill it if it won't."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(CHILD_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def run(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
        capture: bool = False, check: bool = True) -> Done:
    """Run ``argv`` and time it; stdout is kept only with ``capture``.

    Without ``env`` the child gets this process's environment, which carries CONTAINERS_CONF
    for podman and the private DOCKER_HOST for docker (both set in ``main``).
    """
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
    done = Done(command, child.returncode, out or "", err or "", time.perf_counter() - started)
    if check and done.returncode != 0:
        raise BenchError(f"`{' '.join(command)}` exited {done.returncode}: "
                         f"{done.stderr.strip()[-800:]}")
    return done


def export_into(binary: str, container: str, directory: Path) -> None:
    """``X export CID | tar -x -C DIR``, failing if either side fails."""
    with subprocess.Popen([binary, "export", container], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as exporter:
        assert exporter.stdout is not None
        with subprocess.Popen(["tar", "-x", "-f", "-", "-C", str(directory)],
                              stdin=exporter.stdout, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) as untar:
            exporter.stdout.close()  # only tar holds the read end now
            try:
                _, untar_err = untar.communicate()
                export_err = exporter.stderr.read() if exporter.stderr else b""
                exporter.wait()
            except BaseException:
                _stop(untar)
                _stop(exporter)
                raise
    if exporter.returncode != 0:
        raise BenchError(f"{binary} export {container} exited {exporter.returncode}: "
                         f"{export_err.decode(errors='replace').strip()}")
    if untar.returncode != 0:
        raise BenchError(f"tar -x exited {untar.returncode}: "
                         f"{untar_err.decode(errors='replace').strip()}")


# --------------------------------------------------------------------------- clean-up


class Janitor(MountKeeper):
    """Remembers what the benchmark set up until it is taken down again.

    Mounts made through atomicscan's context managers undo themselves on every exit path;
    what is left for ``close`` is a mount interrupted between its journal entry and its
    context (undone the way atomicscan's own cleanup would), containers, and last the work
    directory, which is removed only once nothing is mounted below it.
    """

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, run)
        self.containers: list[tuple[str, str]] = []
        #: Journal records of mounts begun but not yet handed over to their context.
        self.pending: list[tuple[Any, dict[str, Any]]] = []
        #: ``ctr images mount`` points; ctr names the view snapshot after the path.
        self.ctr_mounts: list[Path] = []
        self.closed = False

    def journal_for(self, runtime: Any) -> Callable[[dict[str, Any]], None]:
        return lambda record: self.pending.append((runtime, dict(record)))

    def container_name(self) -> str:
        return f"atomicscan-bench-{os.getpid()}-{self.next_serial()}"

    def create_container(self, binary: str, image: str) -> str:
        name = self.container_name()
        # Remembered first: a create cut short by Ctrl-C may still have happened.
        self.containers.append((binary, name))
        # No network: the private dockerd has no bridge, and nothing here needs one.
        run([binary, "create", "--name", name, "--network", "none", image, "true"])
        return name

    def remove_container(self, binary: str, name: str) -> None:
        run([binary, "rm", name])
        self.containers.remove((binary, name))

    def ctr_mount(self, image: str) -> Path:
        """``ctr images mount IMAGE DIR``: a read-only view snapshot, mounted at DIR."""
        point = self.scratch("ctr-mount")
        # Remembered first: a mount cut short by Ctrl-C may still have happened.
        self.ctr_mounts.append(point)
        run(["ctr", "images", "mount", image, point])
        return point

    def ctr_unmount(self, point: Path) -> None:
        run(["ctr", "images", "unmount", "--rm", point])
        self.ctr_mounts.remove(point)
        point.rmdir()

    def _release_ctr_mounts(self) -> list[str]:
        problems = []
        for point in reversed(self.ctr_mounts):
            done = run(["ctr", "images", "unmount", "--rm", point], capture=True, check=False)
            if done.returncode != 0:
                snapshots = run(["ctr", "snapshots", "ls"], capture=True, check=False).stdout
                if any(line.split()[:1] == [str(point)] for line in snapshots.splitlines()):
                    problems.append(f"ctr images unmount --rm {point}: {done.stderr.strip()}")
        self.ctr_mounts.clear()
        return problems

    def close(self) -> list[str]:
        """Take everything down; return what could not be."""
        self.closed = True
        problems: list[str] = []
        for runtime, record in reversed(self.pending):
            try:
                runtime.undo(record)
            except Exception as exc:
                problems.append(f"undoing {record}: {exc}")
        self.pending.clear()
        for binary, name in reversed(self.containers):
            if binary == "podman":
                run([binary, "rm", "--force", "--ignore", name], check=False)
            else:
                run([binary, "rm", "--force", name], check=False)
            if run([binary, "container", "exists" if binary == "podman" else "inspect", name],
                   check=False).returncode == 0:
                problems.append(f"{binary} container {name}")
        self.containers.clear()
        problems.extend(self._release_ctr_mounts())
        problems.extend(self.release_workdir())
        return problems


# --------------------------------------------------------------------------- statistics


def ratio(numerator: Samples, denominator: Samples) -> str:
    if not numerator.values or not denominator.values:
        return "n/a"
    return f"{numerator.median / denominator.median:.2f}x"


# --------------------------------------------------------------------------- the trees


Tree = dict[str, str]


def tree_of(root: Path) -> Tree:
    """Every path below ``root`` with its kind (d, f, l, other); symlinks are not followed."""
    tree: Tree = {}
    for directory, dirnames, filenames in os.walk(root):
        base = Path(directory)
        for name in (*dirnames, *filenames):
            path = base / name
            relative = str(path.relative_to(root))
            if path.is_symlink():
                tree[relative] = "l"
            elif path.is_dir():
                tree[relative] = "d"
            elif path.is_file():
                tree[relative] = "f"
            else:
                tree[relative] = "other"
    return tree


def check_tree(image: TestImage, what: str, tree: Tree) -> None:
    """The one fact that tells a correct overlay from a naive one: the purged tzdata."""
    if "etc/debian_version" not in tree:
        raise BenchError(f"{what} of {image.ref} shows no etc/debian_version")
    if ("usr/share/zoneinfo" in tree) != image.has_zoneinfo:
        raise BenchError(f"{what} of {image.ref} {'lacks' if image.has_zoneinfo else 'shows'} "
                         "usr/share/zoneinfo (a whiteout was not honoured)")


def describe_difference(reference: Tree, other: Tree, limit: int = 8) -> str:
    if reference == other:
        return f"identical ({len(reference)} entries)"

    def show(paths: list[str]) -> str:
        text = ", ".join(paths[:limit])
        return text + (f", … ({len(paths)} in all)" if len(paths) > limit else "")

    only_reference = sorted(set(reference) - set(other))
    only_other = sorted(set(other) - set(reference))
    kind = sorted(p for p in set(reference) & set(other) if reference[p] != other[p])
    parts = []
    if only_reference:
        parts.append(f"only in the first: {show(only_reference)}")
    if only_other:
        parts.append(f"only in the second: {show(only_other)}")
    if kind:
        parts.append(f"different kind: {show([f'{p} ({reference[p]}/{other[p]})' for p in kind])}")
    return f"{len(reference)} vs {len(other)} entries; " + "; ".join(parts)


# --------------------------------------------------------------------------- (a) rootfs


@dataclass
class Presentation:
    """One way to present one image's rootfs on one runtime, over the repetitions."""

    resolve: Samples = field(default_factory=Samples)
    ready: Samples = field(default_factory=Samples)
    total: Samples = field(default_factory=Samples)
    #: The total less the resolve step (EXPORT has none: the runtime resolves inside create).
    unresolved: Samples = field(default_factory=Samples)


Inspect = Callable[[Path], None]


def present_by_mount(janitor: Janitor, runtime: Any, image: TestImage,
                     inspect: Inspect | None = None) -> tuple[float, float]:
    """atomicscan's resolve + mount_rootfs + readonly_bind, then the unmounts.

    Returns the seconds to resolve the reference and until the read-only tree was ready.
    """
    from atomicscan import mounts
    from atomicscan.errors import AtomicscanError

    elapsed = stopwatch()
    try:
        target = runtime.resolve(image.ref)
        resolved = elapsed()
        with contextlib.ExitStack() as stack:
            # The same places as a real run: <run dir>/work/<key> and <run dir>/scanin/<key>.
            source = stack.enter_context(runtime.mount_rootfs(
                target, janitor.journal_for(runtime),
                janitor.workdir / "work" / runtime.name / target.key))
            janitor.pending.clear()  # from here on the context undoes the mount itself
            rootfs = stack.enter_context(mounts.readonly_bind(
                source, janitor.workdir / "scanin" / runtime.name / target.key))
            ready = elapsed()
            if inspect is not None:
                inspect(rootfs)
    except AtomicscanError as exc:
        janitor.pending.clear()  # the runtime reported the mount failed: nothing to undo
        raise BenchError(f"{runtime.name} MOUNT of {image.ref}: {exc}") from exc
    return resolved, ready


def present_by_export(janitor: Janitor, binary: str, image: TestImage,
                      inspect: Inspect | None = None) -> tuple[float, float]:
    """X create + X export | tar -x + X rm + rm -r; returns (0, seconds until ready)."""
    if binary == "containerd":
        return present_by_copy(janitor, image, inspect)
    elapsed = stopwatch()
    tree = Path(tempfile.mkdtemp(prefix=f"export-{binary}-", dir=janitor.workdir))
    container = janitor.create_container(binary, image.ref)
    export_into(binary, container, tree)
    ready = elapsed()
    if inspect is not None:
        inspect(tree)
    janitor.remove_container(binary, container)
    shutil.rmtree(tree)
    return 0.0, ready


def present_by_copy(janitor: Janitor, image: TestImage,
                    inspect: Inspect | None = None) -> tuple[float, float]:
    """containerd's EXPORT: ctr images mount + cp -a + ctr images unmount --rm + rm -r.

    containerd can't export a container's files; this is how a ``ctr`` user gets a copy of
    an image's tree (``ctr images export`` writes the layer blobs, not a tree). Returns (0,
    seconds until the copy is ready), like :func:`present_by_export`.
    """
    elapsed = stopwatch()
    tree = Path(tempfile.mkdtemp(prefix="export-containerd-", dir=janitor.workdir))
    point = janitor.ctr_mount(image.ref)
    run(["cp", "-a", f"{point}/.", tree])
    ready = elapsed()
    if inspect is not None:
        inspect(tree)
    janitor.ctr_unmount(point)
    shutil.rmtree(tree)
    return 0.0, ready


@dataclass
class RootfsResult:
    #: (image label, runtime, method) -> timings
    timings: dict[tuple[str, str, str], Presentation]
    #: (image label, runtime, method) -> the tree seen in the warm-up run
    trees: dict[tuple[str, str, str], Tree]


def bench_rootfs(janitor: Janitor, runtimes: Mapping[str, Any], repeat: int) -> RootfsResult:
    alternatives = [(runtime, method) for runtime in RUNTIMES for method in METHODS]
    timings = {(image.label, runtime, method): Presentation()
               for image in IMAGES for runtime, method in alternatives}
    trees: dict[tuple[str, str, str], Tree] = {}

    def present(image: TestImage, runtime: str, method: str,
                inspect: Inspect | None = None) -> tuple[float, float]:
        if method == "MOUNT":
            return present_by_mount(janitor, runtimes[runtime], image, inspect)
        return present_by_export(janitor, runtime, image, inspect)

    for image in IMAGES:  # warm-up, and proof that all four show the same image
        for runtime, method in alternatives:
            key = (image.label, runtime, method)

            def keep(root: Path, key: tuple[str, str, str] = key) -> None:
                trees[key] = tree_of(root)

            present(image, runtime, method, keep)
            check_tree(image, f"{runtime} {method}", trees[key])
        log(f"(a) warm-up {image.label} done")

    for index in range(repeat):
        for image in IMAGES:
            for runtime, method in rotated(alternatives, index):
                record = timings[(image.label, runtime, method)]
                elapsed = stopwatch()
                resolved, ready = present(image, runtime, method)
                total = elapsed()
                record.total.add(total)
                record.ready.add(ready)
                record.unresolved.add(total - resolved)
                if method == "MOUNT":
                    record.resolve.add(resolved)
            last = {alt: timings[(image.label, *alt)].total.values[-1] for alt in alternatives}
            log(f"(a) repetition {index + 1}/{repeat} {image.label}: " + ", ".join(
                f"{runtime} {method} {secs(seconds)} s"
                for (runtime, method), seconds in last.items()))
    return RootfsResult(timings, trees)


# --------------------------------------------------------------------------- (b) scans


@dataclass
class ScanRuns:
    """One image, one runtime: atomicscan end to end over the repetitions."""

    total: Samples = field(default_factory=Samples)
    inside: Samples = field(default_factory=Samples)
    #: What each run reported: (OS, packages), canonical JSON.
    reports: list[str] = field(default_factory=list)
    packages: int = 0


def _when(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def scan_once(janitor: Janitor, atomicscan: Path, runtime: str, image: TestImage,
              runs: ScanRuns) -> float:
    home = janitor.scratch(f"atomicscan-{runtime}")
    env = {**os.environ,
           "ATOMICSCAN_RESULTS_DIR": str(home / "results"),
           "ATOMICSCAN_STATE_DIR": str(home / "state")}
    try:
        done = run([atomicscan, "--runtime", runtime, "--scanner", "packages", "--json",
                    image.ref], env=env, capture=True)
    finally:
        if not mount_points_under(home):
            shutil.rmtree(home)
    try:
        results = json.loads(done.stdout)["results"]
    except (ValueError, KeyError) as exc:
        raise BenchError(f"atomicscan --runtime {runtime} gave no JSON report: {exc}") from exc
    if len(results) != 1 or not results[0].get("successful") or results[0].get("runtime") \
            != runtime:
        raise BenchError(f"atomicscan --runtime {runtime} {image.ref} failed: "
                         f"{json.dumps(results)[:800]}")
    result = results[0]
    packages = sorted(result.get("packages") or [], key=lambda p: json.dumps(p, sort_keys=True))
    runs.reports.append(json.dumps({"os": result.get("os"), "packages": packages},
                                   sort_keys=True))
    runs.packages = len(packages)
    with contextlib.suppress(KeyError, TypeError, ValueError):
        runs.inside.add((_when(result["finished_at"]) - _when(result["started_at"]))
                        .total_seconds())
    return done.seconds


def bench_scans(janitor: Janitor, atomicscan: Path, repeat: int
                ) -> dict[tuple[str, str], ScanRuns]:
    scans = {(image.label, runtime): ScanRuns() for image in IMAGES for runtime in RUNTIMES}
    for image in IMAGES:
        for runtime in RUNTIMES:
            scan_once(janitor, atomicscan, runtime, image, scans[(image.label, runtime)])
        log(f"(b) warm-up {image.label} done")
    for runs in scans.values():  # the warm-up report is kept for the package check only
        runs.inside.values.clear()
    for index in range(repeat):
        for image in IMAGES:
            for runtime in rotated(RUNTIMES, index):
                runs = scans[(image.label, runtime)]
                runs.total.add(scan_once(janitor, atomicscan, runtime, image, runs))
            log(f"(b) repetition {index + 1}/{repeat} {image.label}: " + ", ".join(
                f"{runtime} {secs(scans[(image.label, runtime)].total.values[-1])} s"
                for runtime in RUNTIMES))
    for image in IMAGES:
        verdict = compare_reports({runtime: scans[(image.label, runtime)]
                                   for runtime in RUNTIMES})
        if not verdict.startswith("identical"):
            raise BenchError(f"(b) {image.label}: the runtimes' package lists differ: {verdict}")
    return scans


def compare_reports(runs: Mapping[str, ScanRuns]) -> str:
    """Whether every run on every runtime reported the same OS and packages, in words."""
    every = [report for each in runs.values() for report in each.reports]
    reference = next(iter(runs.values()))
    if every and all(report == every[0] for report in every):
        return (f"identical ({reference.packages} packages, all fields, and the OS; "
                f"every run on {', '.join(runs)})")
    unstable = [runtime for runtime, each in runs.items() if len(set(each.reports)) > 1]
    if unstable:
        return f"DIFFERENT: the report changed between runs on {', '.join(unstable)}"
    counts = ", ".join(f"{runtime} {each.packages}" for runtime, each in runs.items())
    return f"DIFFERENT: packages {counts} (each stable across its runs)"


# --------------------------------------------------------------------------- (c) fixed costs


def same_command(*argv: str) -> Callable[[], list[str]]:
    """A probe that runs the same ``argv`` each time it is called."""
    return lambda: list(argv)


def bench_fixed_costs(janitor: Janitor, repeat: int) -> dict[str, Samples]:
    """Per-call costs of each runtime that (a) and (b) contain."""
    locked_down = ["--read-only", "--network", "none", "--cap-drop", "all", "--security-opt",
                   "no-new-privileges", "--user", "65534:65534"]
    # docker's --read-only leaves no scratch and keeps a log file unless told not to;
    # atomicscan adds exactly these for docker.
    docker_extra = ["--log-driver", "none", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
                    "--tmpfs", "/run"]
    probes: dict[str, Callable[[], list[str]]] = {}
    for binary in ("podman", "docker"):
        extra = docker_extra if binary == "docker" else []
        probes[f"{binary}: `{binary} version`"] = same_command(binary, "version")
        probes[f"{binary}: `{binary} ps --all`"] = same_command(binary, "ps", "--all")
        probes[f"{binary}: `{binary} images --all`"] = same_command(binary, "images", "--all")
        probes[f"{binary}: `{binary} image inspect` (the Debian image)"] = same_command(
            binary, "image", "inspect", IMAGES[0].ref)

        def run_true(b: str = binary, extra: list[str] = extra) -> list[str]:
            name = janitor.container_name()
            janitor.containers.append((b, name))
            return [b, "run", "--rm", "--pull", "never", "--name", name, *locked_down, *extra,
                    SCANNER_IMAGE, "true"]

        probes[f"{binary}: locked-down `{binary} run --rm` of the scanner image (`true`)"] = (
            run_true)
    # What atomicscan's containerd runtime asks ctr per run (its scanners run in podman).
    probes["containerd: `ctr version`"] = same_command("ctr", "version")
    probes["containerd: `ctr namespaces ls -q`"] = same_command("ctr", "namespaces", "ls", "-q")
    probes["containerd: `ctr images ls` (k8s.io)"] = same_command("ctr", "images", "ls")
    probes["containerd: `ctr containers ls` (k8s.io)"] = same_command("ctr", "containers", "ls")
    samples = {name: Samples() for name in probes}

    def once(name: str) -> float:
        argv = probes[name]()
        seconds = run(argv).seconds
        if "--rm" in argv:  # gone with --rm; forget it
            janitor.containers.remove((argv[0], argv[argv.index("--name") + 1]))
        return seconds

    for name in probes:
        once(name)
    for index in range(repeat):
        for name in rotated(list(probes), index):
            samples[name].add(once(name))
    log("(c) fixed costs done")
    return samples


# --------------------------------------------------------------------------- machine


def podman_facts() -> dict[str, str]:
    runtime = first_line(run, ["podman", "info", "--format",
                               "{{.Store.GraphDriverName}} storage, {{.Host.OCIRuntime.Name}} "
                               "{{.Host.OCIRuntime.Version}}"])
    return {"podman": f"{first_line(run, ['podman', '--version'])} ({runtime})"}


def docker_facts() -> dict[str, str]:
    try:
        info = json.loads(run(["docker", "info", "--format", "{{json .}}"], capture=True).stdout)
    except (BenchError, ValueError) as exc:
        return {"docker": f"unavailable ({exc})"}
    status = {str(pair[0]): str(pair[1]) for pair in info.get("DriverStatus") or []
              if isinstance(pair, list) and len(pair) == 2}
    runc = (info.get("RuncCommit") or {}).get("ID") or "?"
    containerd = (info.get("ContainerdCommit") or {}).get("ID") or "?"
    client = first_line(run, ["docker", "version", "--format", "{{.Client.Version}}"])
    return {
        "docker": (f"client {client}"
                   f", server {info.get('ServerVersion')} ({info.get('Driver')} storage on "
                   f"{status.get('Backing Filesystem', '?')}, {info.get('DefaultRuntime')} "
                   f"runtime, runc {runc}, containerd {containerd[:12]}, "
                   f"{info.get('CgroupDriver')} cgroup driver)"),
    }


def containerd_facts() -> dict[str, str]:
    server = first_line(run, ["ctr", "version"])
    for line in run(["ctr", "version"], capture=True, check=False).stdout.splitlines():
        if line.strip().startswith("Version:"):
            server = line.partition(":")[2].strip()  # the last one is the server's
    snapshotter = os.environ.get("CONTAINERD_SNAPSHOTTER") or "overlayfs"
    return {"containerd": f"{server} (private, {snapshotter} snapshotter, namespace "
                          f"{CONTAINERD_NAMESPACE}); scanners run in podman"}


def ctr_image_size(ref: str) -> str | None:
    """The SIZE column of ``ctr images ls`` (the compressed content, not the tree)."""
    for line in run(["ctr", "images", "ls"], capture=True, check=False).stdout.splitlines():
        fields = line.split()
        if fields[:1] == [ref] and len(fields) >= 5:
            return f"{fields[3]} {fields[4]}"
    return None


def other_dockerds() -> int:
    """How many dockerd processes run besides ours (counted, never touched)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode(errors="replace")).name == "dockerd" \
                and DOCKERD_NAME.encode() not in b" ".join(argv):
            count += 1
    return count


def image_facts() -> str:
    parts = []
    for image in (*IMAGES, TestImage("packages scanner", SCANNER_IMAGE, has_zoneinfo=False)):
        described = []
        for binary in ("podman", "docker"):
            done = run([binary, "image", "inspect", "--format",
                        "{{.Size}} {{len .RootFS.Layers}}", image.ref], capture=True,
                       check=False)
            size, _, layers = done.stdout.strip().partition(" ")
            if size.isdigit():
                described.append(f"{binary} {int(size) / 1e6:.1f} MB")
        content = ctr_image_size(image.ref)
        if content is not None:
            described.append(f"containerd {content} of content")
        parts.append(f"{image.label} {', '.join(described)}, {layers or '?'} layer(s)")
    return "; ".join(parts)


def machine_facts(atomicscan: Path, workdir: Path) -> dict[str, str]:
    cpu, memory = cpu_model(), memory_total()
    tmp_fs = first_line(run, ["findmnt", "--noheadings", "--output", "FSTYPE", "--target",
                              str(workdir)])
    return {
        "date (UTC)": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": str(os.cpu_count()),
        "CPU": cpu,
        "memory": memory,
        "kernel": platform.release(),
        **podman_facts(),
        **docker_facts(),
        **containerd_facts(),
        "atomicscan": first_line(run, [atomicscan, "--version"]),
        "python": platform.python_version(),
        "temp dir": f"{workdir.parent} ({tmp_fs})",
        "images (size as each runtime reports it)": image_facts(),
        "other dockerd processes running": str(other_dockerds()),
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


# --------------------------------------------------------------------------- output


def report_rootfs(rootfs: RootfsResult, heading: str, markdown: bool) -> list[str]:
    out = [f"\n{heading}(a) Presenting the rootfs to a scanner: MOUNT versus EXPORT"]
    rows = []
    for image in IMAGES:
        for runtime in RUNTIMES:
            for method in METHODS:
                record = rootfs.timings[(image.label, runtime, method)]
                name = f"{image.label}: {runtime} {method}"
                rows.append(stat_row(f"{name} (total)", record.total))
                if method == "MOUNT":
                    rows.append(stat_row(f"{name}: … of which resolve", record.resolve))
                    rows.append(stat_row(f"{name}: … without resolve", record.unresolved))
                rows.append(stat_row(f"{name}: … until the tree is ready", record.ready))
    out.append(render_table(["what", "median", "min", "max"], rows, markdown))

    out.append("\nRatios of medians:\n")
    rows = []
    bases: dict[str, Callable[[Presentation], Samples]] = {
        "total": lambda p: p.total,
        "total without MOUNT's resolve": lambda p: p.unresolved,
        "until the tree is ready": lambda p: p.ready,
    }
    for image in IMAGES:
        for basis, pick in bases.items():
            def t(runtime: str, method: str, label: str = image.label,
                  pick: Callable[[Presentation], Samples] = pick) -> Samples:
                return pick(rootfs.timings[(label, runtime, method)])

            rows.append([image.label, basis,
                         *(ratio(t(runtime, "EXPORT"), t(runtime, "MOUNT"))
                           for runtime in RUNTIMES),
                         *(ratio(t(other, method), t("podman", method))
                           for other in OTHERS for method in METHODS)])
    out.append(render_table(
        ["image", "basis", *(f"{runtime} EXPORT/MOUNT" for runtime in RUNTIMES),
         *(f"{method} {other}/podman" for other in OTHERS for method in METHODS)],
        rows, markdown))

    out.append("\nThe trees seen in the warm-up runs (paths and their kinds, below the root):\n")
    rows = []
    for image in IMAGES:
        reference = rootfs.trees[(image.label, "podman", "MOUNT")]
        zoneinfo = "present" if image.has_zoneinfo else "absent"
        for first, second in ((("podman", "MOUNT"), ("docker", "MOUNT")),
                              (("podman", "MOUNT"), ("containerd", "MOUNT")),
                              (("podman", "MOUNT"), ("podman", "EXPORT")),
                              (("docker", "MOUNT"), ("docker", "EXPORT")),
                              (("containerd", "MOUNT"), ("containerd", "EXPORT")),
                              (("podman", "EXPORT"), ("docker", "EXPORT")),
                              (("podman", "EXPORT"), ("containerd", "EXPORT"))):
            a = rootfs.trees[(image.label, *first)]
            b = rootfs.trees[(image.label, *second)]
            rows.append([image.label, f"{' '.join(first)} vs {' '.join(second)}",
                         describe_difference(a, b)])
        rows.append([image.label, f"usr/share/zoneinfo in all {len(RUNTIMES) * len(METHODS)}",
                     f"{zoneinfo} (as expected; {len(reference)} entries in podman MOUNT)"])
    out.append(render_table(["image", "compared", "result"], rows, markdown))
    return out


def report_scans(scans: Mapping[tuple[str, str], ScanRuns], heading: str,
                 markdown: bool) -> list[str]:
    out = [f"\n{heading}(b) atomicscan --scanner packages --json, docker and containerd "
           "next to podman"]
    rows = []
    for image in IMAGES:
        for runtime in RUNTIMES:
            runs = scans[(image.label, runtime)]
            rows.append(stat_row(f"{image.label}: atomicscan --runtime {runtime}", runs.total))
            rows.append(stat_row(f"{image.label}: … of which the scanner container run "
                                 "(result's started_at→finished_at)", runs.inside))
    out.append(render_table(["what", "median", "min", "max"], rows, markdown))
    rows = []
    for image in IMAGES:
        podman = scans[(image.label, "podman")]
        others = [scans[(image.label, other)] for other in OTHERS]
        rows.append([image.label,
                     *(ratio(other.total, podman.total) for other in others),
                     *(ratio(other.inside, podman.inside) for other in others),
                     compare_reports({runtime: scans[(image.label, runtime)]
                                      for runtime in RUNTIMES})])
    out.append(f"\n{' and '.join(f'{other}/podman' for other in OTHERS)}, ratio of medians, "
               "and the reports compared:\n")
    out.append(render_table(["image", *(f"end to end {other}/podman" for other in OTHERS),
                             *(f"scanner container run {other}/podman" for other in OTHERS),
                             "package lists"], rows, markdown))
    return out


def report(facts: Mapping[str, str], repeat: int, rootfs: RootfsResult | None,
           scans: Mapping[tuple[str, str], ScanRuns] | None,
           fixed: Mapping[str, Samples] | None, leftovers: Sequence[str],
           markdown: bool) -> str:
    heading = "### " if markdown else "== "
    out = [f"{heading}Machine",
           render_table(["what", "value"], [[k, v] for k, v in facts.items()], markdown),
           f"\nTimes in seconds, wall clock: median, min and max of {repeat} repetitions "
           "(alternatives interleaved in rotating order, one untimed warm-up each)."]
    if rootfs is not None:
        out += report_rootfs(rootfs, heading, markdown)
    if scans is not None:
        out += report_scans(scans, heading, markdown)
    if fixed:
        out.append(f"\n{heading}(c) Fixed costs of each runtime's CLI")
        out.append(render_table(["what", "median", "min", "max"],
                                [stat_row(name, s) for name, s in fixed.items()], markdown))
    out.append("\nLeft behind: " + ("; ".join(leftovers) if leftovers else "nothing") + ".")
    return "\n".join(out)


# --------------------------------------------------------------------------- private dockerd


def load_test_helpers() -> tuple[ModuleType, ModuleType, ModuleType]:
    """tests/dockerd.py, tests/containerd.py and tests/helpers.py, the same code the real
    test tier uses."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import containerd
    import dockerd
    import helpers

    return dockerd, containerd, helpers


@contextlib.contextmanager
def bench_dockerd(dockerd: ModuleType, podman_env: dict[str, str], keep_data: bool,
                  leftovers: list[str]) -> Iterator[str]:
    """The private dockerd with the images loaded; afterwards its data root goes too."""
    paths = dockerd.Paths(DOCKERD_NAME)
    elapsed = stopwatch()
    try:
        with dockerd.private_dockerd(DOCKERD_NAME) as host:
            os.environ["DOCKER_HOST"] = host  # for docker children and DockerRuntime
            log(f"private dockerd up at {host} after {secs(elapsed())} s")
            for image in (*(i.ref for i in IMAGES), SCANNER_IMAGE):
                dockerd.load_from_podman(image, podman_env, host=host)
            log(f"images loaded after {secs(elapsed())} s")
            yield host
            running = run(["docker", "ps", "--all", "--quiet"], capture=True,
                          check=False).stdout.split()
            if running:
                leftovers.append(f"containers in the private dockerd at its end: {running}")
    finally:
        os.environ.pop("DOCKER_HOST", None)
        for root in (paths.data_root, paths.run_dir):
            still = mount_points_under(root)
            if still:
                leftovers.extend(f"still mounted: {point}" for point in still)
            elif not keep_data or root == paths.run_dir:
                shutil.rmtree(root, ignore_errors=True)
                if root.exists():
                    leftovers.append(f"could not remove {root}")
        if paths.pidfile.exists():
            leftovers.append(f"{paths.pidfile} is still there")


@contextlib.contextmanager
def bench_containerd(containerd: ModuleType, podman_env: dict[str, str],
                     leftovers: list[str]) -> Iterator[str]:
    """The private containerd with the test images in k8s.io; afterwards its root goes too.

    ``private_containerd`` stops the daemon by its PID. ctr and atomicscan's containerd
    runtime both read CONTAINERD_ADDRESS and CONTAINERD_NAMESPACE, set here for every child.
    """
    paths = containerd.Paths(CONTAINERD_NAME)
    elapsed = stopwatch()
    saved = {key: os.environ.get(key) for key in ("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE",
                                                  "CONTAINERD_SNAPSHOTTER")}
    try:
        with contextlib.ExitStack() as stack:
            try:  # only the set-up's failures are the private containerd's
                address = stack.enter_context(containerd.private_containerd(CONTAINERD_NAME))
                os.environ["CONTAINERD_ADDRESS"] = address
                os.environ["CONTAINERD_NAMESPACE"] = CONTAINERD_NAMESPACE
                os.environ.pop("CONTAINERD_SNAPSHOTTER", None)  # the default, overlayfs
                log(f"private containerd up at {address} after {secs(elapsed())} s")
                for image in IMAGES:
                    containerd.import_from_podman(image.ref, podman_env, address,
                                                  namespace=CONTAINERD_NAMESPACE)
            except (RuntimeError, subprocess.SubprocessError) as exc:
                raise BenchError(f"private containerd: {exc}") from exc
            log(f"images imported into containerd after {secs(elapsed())} s")
            yield address
            # ctr images mount names its snapshot after the mount point, atomicscan its own.
            ours = [line.split()[0] for line in run(["ctr", "snapshots", "ls"], capture=True,
                                                    check=False).stdout.splitlines()[1:]
                    if line.split() and line.split()[0].startswith(("atomicscan-", "/"))]
            if ours:
                leftovers.append(f"snapshots left in the private containerd: {ours}")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for root in (paths.root, paths.run_dir):
            still = mount_points_under(root)
            if still:
                leftovers.extend(f"still mounted: {point}" for point in still)
            else:
                shutil.rmtree(root, ignore_errors=True)
                if root.exists():
                    leftovers.append(f"could not remove {root}")
        if paths.pidfile.exists():
            leftovers.append(f"{paths.pidfile} is still there")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time rootfs presentation and atomicscan's package inventory on docker "
                    "next to podman, side by side in one run (run as root).")
    parser.add_argument("--repeat", type=int, default=5, metavar="N",
                        help="timed repetitions of each alternative (default: 5)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--skip-rootfs", action="store_true", help="leave out (a)")
    parser.add_argument("--skip-scans", action="store_true", help="leave out (b)")
    parser.add_argument("--skip-fixed", action="store_true", help="leave out (c)")
    parser.add_argument("--keep-docker-data", action="store_true",
                        help=f"keep /var/lib/{DOCKERD_NAME} (the loaded images) for the next "
                             "run; by default it is removed")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def find_atomicscan() -> Path:
    beside = VENV_BIN / "atomicscan"
    if beside.exists():
        return beside
    found = shutil.which("atomicscan")
    if found is None:
        raise BenchError(f"atomicscan not found beside {sys.executable} or on PATH")
    return Path(found)


def require_images() -> None:
    missing = [ref for ref in (*(i.ref for i in IMAGES), SCANNER_IMAGE)
               if run(["podman", "image", "exists", ref], check=False).returncode != 0]
    if missing:
        raise BenchError(f"missing image(s) {', '.join(missing)} in root's podman storage; "
                         "run tests/testbed/build-images first")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench_runtimes: run as root (it mounts image root filesystems and starts a "
              "dockerd)", file=sys.stderr)
        return 2
    if any(shutil.which(tool) is None for tool in ("docker", "dockerd", "containerd", "ctr")):
        print("bench_runtimes: docker, dockerd, containerd and ctr are needed (scripts/setup "
              "installs them)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.path.insert(0, str(REPO))  # atomicscan from this checkout, as the venv has it
    dockerd, containerd, helpers = load_test_helpers()
    podman_env = helpers.podman_env()
    # Every podman call from here on, ours and atomicscan's, sees the project's configuration.
    os.environ.update({k: v for k, v in podman_env.items() if k == "CONTAINERS_CONF"})

    # Not "atomicscan*": the real test tier counts new /tmp/atomicscan* entries as leaks.
    workdir = Path(tempfile.mkdtemp(prefix="bench-runtimes-"))
    janitor = Janitor(workdir)
    leftovers: list[str] = []
    rootfs = scans = fixed = None
    try:
        atomicscan = find_atomicscan()
        require_images()
        with bench_dockerd(dockerd, podman_env, args.keep_docker_data, leftovers), \
                bench_containerd(containerd, podman_env, leftovers):
            from atomicscan.builtin.containerd import ContainerdRuntime
            from atomicscan.builtin.docker import DockerRuntime
            from atomicscan.builtin.podman import PodmanRuntime
            from atomicscan.errors import AtomicscanError

            # Made here: each reads its environment (DOCKER_HOST, CONTAINERD_*) when made.
            runtimes = {"podman": PodmanRuntime(), "docker": DockerRuntime(),
                        "containerd": ContainerdRuntime()}
            try:
                for runtime in runtimes.values():
                    runtime.check()
            except AtomicscanError as exc:
                raise BenchError(str(exc)) from exc
            facts = machine_facts(atomicscan, workdir)
            try:
                if not args.skip_rootfs:
                    rootfs = bench_rootfs(janitor, runtimes, args.repeat)
                if not args.skip_scans:
                    scans = bench_scans(janitor, atomicscan, args.repeat)
                if not args.skip_fixed:
                    try:
                        fixed = bench_fixed_costs(janitor, args.repeat)
                    except BenchError as exc:
                        # A probe, not a result: keep (a) and (b) (another user's image
                        # removal can fail a concurrent `podman images --all`).
                        log(f"(c) left out: {exc}")
                        facts["(c) fixed costs"] = f"left out, a probe failed: {exc}"
            finally:
                # While both daemons are still up: docker containers and ctr's mount
                # snapshots are removed through them.
                leftovers.extend(janitor.close())
            facts["load average at end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except (KeyboardInterrupt, Terminated):
        log("interrupted; cleaning up")
        return 130
    finally:
        if not janitor.closed:  # dockerd never came up, or stopped before close ran
            leftovers.extend(janitor.close())
        for problem in leftovers:
            log(f"left behind: {problem}")
    print(report(facts, args.repeat, rootfs, scans, fixed, leftovers, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
