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
(d) Rootless next to rootful (issue 16): ``atomicscan --scanner packages --json --no-cache``
    (i) of the Debian image and (ii) of every test image, run by root (this checkout's
    atomicscan) and by a throwaway user (tests/rootless_user.py: rootless podman, atomicscan
    as scripts/install installs it, the test images and the scanner copied into its storage,
    XDG_RUNTIME_DIR /run/user/UID as a login session has it). For (ii) the user runs
    ``--images`` (its storage holds exactly those six images) and root is given the same six
    names. Both sides must report the same OS and packages for every image, or it fails.
    ``--only rootless`` runs (d) alone, without dockerd or containerd.

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

    sudo .venv/bin/python bench/bench_runtimes.py [--repeat N] [--markdown] [--only PART]

Everything it sets up (mounts, containers, ``ctr images mount`` snapshots, temporary trees,
the private dockerd and containerd and their data roots, the throwaway user with its
processes, files and /run/user/UID) is taken down before it exits, also
on Ctrl-C or SIGTERM; ``--keep-docker-data`` keeps dockerd's data root (and the images loaded
into it) for a faster next run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import pwd
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
#: The parts, in the order they run: (a), (b) and (c) need the private daemons, (d) not.
PARTS = ("rootfs", "scans", "fixed", "rootless")
DAEMON_PARTS = frozenset(PARTS[:3])


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
        capture: bool = False, check: bool = True, cwd: Path | None = None) -> Done:
    """Run ``argv`` and time it; stdout is kept only with ``capture``.

    Without ``env`` the child gets this process's environment, which carries CONTAINERS_CONF
    for podman and the private DOCKER_HOST for docker (both set in ``main``).
    """
    command = [str(part) for part in argv]
    started = time.perf_counter()
    with subprocess.Popen(command, env=dict(env) if env is not None else None, text=True,
                          stdin=subprocess.DEVNULL, cwd=cwd,
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


# --------------------------------------------------------------------------- (d) rootless


#: The test images of (d), all copied into the throwaway user's storage with the scanner.
ROOTLESS_IMAGES = (
    ("debian", "localhost/atomicscan-test/debian:bookworm"),
    ("rpm-sqlite", "localhost/atomicscan-test/rpm-sqlite:latest"),
    ("rpm-bdb", "localhost/atomicscan-test/rpm-bdb:latest"),
    ("alpine-like", "localhost/atomicscan-test/alpine-like:latest"),
    ("debian-purged", "localhost/atomicscan-test/debian-purged:latest"),
)
#: Root running this checkout's atomicscan, and the throwaway user running its install.
SIDES = ("rootful", "rootless")
#: The same command line on both sides. Every result must say podman: root's run finds no
#: dockerd or containerd at their default sockets here. On a host without delegated cgroup
#: controllers (this one) a user's scan runs only with --allow-rlimits-only; root's run
#: ignores it.
ROOTLESS_SCAN = ("--scanner", "packages", "--json", "--no-cache", "--allow-rlimits-only")


@dataclass
class SideRuns:
    """One side (rootful or rootless) of one comparison, over the repetitions."""

    total: Samples = field(default_factory=Samples)
    #: The scanner containers' span: earliest started_at to latest finished_at.
    inside: Samples = field(default_factory=Samples)
    #: image name -> what each run reported for it: (OS, packages), canonical JSON.
    reports: dict[str, list[str]] = field(default_factory=dict)
    #: image name -> how many packages it has.
    packages: dict[str, int] = field(default_factory=dict)


@dataclass
class RootlessResult:
    debian: dict[str, SideRuns]
    images: dict[str, SideRuns]
    #: The names the user's --images covered, and root was given explicitly.
    image_names: list[str]
    #: How the sides were set up, for the report.
    facts: dict[str, str]


class Sides:
    """How each side runs atomicscan: root with this checkout's, in private directories kept
    for the whole part (as the user's XDG directories are), the user with its install."""

    def __init__(self, janitor: Janitor, atomicscan: Path, user: Any) -> None:
        home = janitor.scratch("rootful")
        # Without the private daemons of (a)-(c): root, like the user, scans with podman.
        inherited = {key: value for key, value in os.environ.items()
                     if key != "DOCKER_HOST" and not key.startswith("CONTAINERD_")}
        self.root_env = {**inherited,
                         "ATOMICSCAN_RESULTS_DIR": str(home / "results"),
                         "ATOMICSCAN_STATE_DIR": str(home / "state"),
                         # Not /var/lib/atomicscan/history.db: a history of its own, like
                         # the user's $XDG_DATA_HOME/atomicscan/history.db.
                         "ATOMICSCAN_DB": f"sqlite:///{home / 'history.db'}"}
        self.atomicscan = atomicscan
        self.user = user

    def scan(self, side: str, args: Sequence[str], runs: SideRuns) -> dict[str, Any]:
        """One atomicscan run on ``side``, timed end to end; returns its results by target."""
        if side == "rootful":
            done = run([self.atomicscan, *ROOTLESS_SCAN, *args], env=self.root_env,
                       capture=True)
        else:
            # setpriv + env -i, then exec: the same process, a few ms of exec on top.
            done = run(self.user.argv(str(self.user.command), *ROOTLESS_SCAN, *args),
                       capture=True, cwd=self.user.home)
        try:
            results = json.loads(done.stdout)["results"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BenchError(f"(d) {side} atomicscan {' '.join(args)} gave no JSON report: "
                             f"{exc}") from exc
        failed = [r for r in results if not r.get("successful") or r.get("runtime") != "podman"]
        if not results or failed:
            raise BenchError(f"(d) {side} atomicscan {' '.join(args)} failed: "
                             f"{json.dumps(failed or results)[:800]}")
        by_target: dict[str, Any] = {}
        for result in results:
            packages = sorted(result.get("packages") or [],
                              key=lambda p: json.dumps(p, sort_keys=True))
            by_target[result["target"]] = result
            runs.reports.setdefault(result["target"], []).append(
                json.dumps({"os": result.get("os"), "packages": packages}, sort_keys=True))
            runs.packages[result["target"]] = len(packages)
        with contextlib.suppress(KeyError, TypeError, ValueError):
            runs.inside.add((max(_when(r["finished_at"]) for r in results)
                             - min(_when(r["started_at"]) for r in results)).total_seconds())
        runs.total.add(done.seconds)
        return by_target


def code_files(package: Path) -> dict[str, str]:
    """Each Python file of an atomicscan package with its digest, to tell whether both sides
    ran the same code (the checkout may change while the benchmark runs; the install is a
    copy made when the user was)."""
    return {str(path.relative_to(package)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(package.rglob("*.py"))}


def code_digest(files: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]


def code_difference(first: Mapping[str, str], second: Mapping[str, str]) -> str:
    differ = sorted(name for name in set(first) | set(second)
                    if first.get(name) != second.get(name))
    return "identical" if not differ else f"differ in {', '.join(differ[:6])}" + (
        f" and {len(differ) - 6} more" if len(differ) > 6 else "")


def installed_package(user: Any) -> Path | None:
    """The atomicscan package of the user's install (scripts/install's virtualenv)."""
    found = sorted(user.command.parent.parent.glob("**/site-packages/atomicscan/__init__.py"))
    return found[0].parent if found else None


def user_image_names(user: Any) -> list[str]:
    """The named images in the user's storage: what its ``--images`` scans."""
    listed = user.podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return sorted(name for name in listed if name != "<none>:<none>")


def compare_sides(runs: Mapping[str, SideRuns], names: Sequence[str]) -> dict[str, str]:
    """Per image: whether every run on both sides reported the same OS and packages."""
    verdicts = {}
    for name in names:
        every = {side: each.reports.get(name, []) for side, each in runs.items()}
        flat = [report for reports in every.values() for report in reports]
        if flat and all(every.values()) and all(report == flat[0] for report in flat):
            verdicts[name] = (f"identical ({runs['rootful'].packages[name]} packages, all "
                              f"fields, and the OS; {len(flat)} runs)")
        elif not all(every.values()):
            verdicts[name] = ("DIFFERENT: not scanned on "
                              f"{', '.join(side for side, r in every.items() if not r)}")
        else:
            counts = ", ".join(f"{side} {each.packages.get(name)}"
                               for side, each in runs.items())
            verdicts[name] = f"DIFFERENT: packages {counts}"
    return verdicts


def bench_rootless(janitor: Janitor, atomicscan: Path, user: Any,
                   repeat: int) -> RootlessResult:
    """(i) the Debian image, (ii) every test image, rootless next to rootful."""
    sides = Sides(janitor, atomicscan, user)
    checkout_before = code_files(REPO / "atomicscan")
    names = user_image_names(user)
    expected = sorted({ref for _, ref in ROOTLESS_IMAGES} | {SCANNER_IMAGE})
    if names != expected:
        raise BenchError(f"(d) the user's storage holds {names}, not exactly {expected}")
    debian = ROOTLESS_IMAGES[0][1]
    # What each side's command line names: the user scans its storage, root the same names.
    debian_args = {side: [debian] for side in SIDES}
    images_args = {"rootful": names, "rootless": ["--images"]}
    single = {side: SideRuns() for side in SIDES}
    many = {side: SideRuns() for side in SIDES}
    loads: list[float] = []

    for side in SIDES:  # warm-up: its reports are kept for the package check only
        sides.scan(side, debian_args[side], single[side])
        covered = sorted(sides.scan(side, images_args[side], many[side]))
        if covered != names:
            raise BenchError(f"(d) {side} {' '.join(images_args[side])} scanned {covered}, "
                             f"not {names}")
    for runs in (*single.values(), *many.values()):
        runs.total.values.clear()
        runs.inside.values.clear()
    log("(d) warm-up done")
    for index in range(repeat):
        for side in rotated(SIDES, index):
            sides.scan(side, debian_args[side], single[side])
        for side in rotated(SIDES, index):
            sides.scan(side, images_args[side], many[side])
        loads.append(os.getloadavg()[0])
        log(f"(d) repetition {index + 1}/{repeat}: debian " + ", ".join(
            f"{side} {secs(single[side].total.values[-1])} s" for side in SIDES)
            + f"; {len(names)} images " + ", ".join(
            f"{side} {secs(many[side].total.values[-1])} s" for side in SIDES))
    for what, compared, covered in (("debian", single, [debian]), ("images", many, names)):
        for name, verdict in compare_sides(compared, covered).items():
            if not verdict.startswith("identical"):
                raise BenchError(f"(d) {what}: {name}: rootless and rootful differ: {verdict}")
    facts = rootless_facts(user)
    package = installed_package(user)
    installed = code_files(package) if package else {}
    checkout_after = code_files(REPO / "atomicscan")
    facts["code (digest of the package's .py files)"] = (
        f"checkout {code_digest(checkout_before)} at the start, {code_digest(checkout_after)} "
        f"at the end; the user's install {code_digest(installed)}; checkout at the end and "
        f"install {code_difference(checkout_after, installed)}")
    facts["load average (1 min) after each repetition"] = " ".join(f"{v:.2f}" for v in loads)
    return RootlessResult(single, many, names, facts)


def rootless_facts(user: Any) -> dict[str, str]:
    info = user.podman("info", "--format",
                       "{{.Host.Security.Rootless}} {{.Store.GraphDriverName}} "
                       "{{.Host.OCIRuntime.Name}} {{.Host.CgroupsVersion}} "
                       "{{.Host.CgroupManager}}", check=False).stdout.split()
    rootless, driver, oci, cgroups, manager = (*info, "?", "?", "?", "?", "?")[:5]
    cgroupfs = first_line(run, ["stat", "-f", "-c", "%T", "/sys/fs/cgroup"])
    version = user.atomicscan("--version").stdout.strip() or "?"
    return {
        "rootless side": (f"throwaway user {user.name} (uid {user.uid}), {version} as "
                          "scripts/install installs it; XDG_RUNTIME_DIR "
                          f"{user.runtime_dir}; podman rootless="
                          f"{rootless}, {driver} storage, {oci}, cgroups {cgroups} "
                          f"({manager} manager); /sys/fs/cgroup is {cgroupfs}"),
        "rootful side": ("root, this checkout's atomicscan; results, state and history in "
                         "a private directory kept for the whole part"),
    }


@contextlib.contextmanager
def bench_user(rootless_user: ModuleType, leftovers: list[str]) -> Iterator[Any]:
    """tests/rootless_user.py's throwaway user, with the test images and the scanner in its
    podman storage and /run/user/UID as its runtime directory; its context manager kills
    its processes and removes it afterwards."""
    images = [*(ref for _, ref in ROOTLESS_IMAGES), SCANNER_IMAGE]
    elapsed = stopwatch()
    user = None
    try:
        with contextlib.ExitStack() as stack:
            try:  # only the set-up's failures are the throwaway user's
                user = stack.enter_context(rootless_user.throwaway_user(images))
            except (AssertionError, OSError, subprocess.SubprocessError) as exc:
                raise BenchError(f"throwaway user: {exc}") from exc
            log(f"throwaway user {user.name} with {len(images)} images after "
                f"{secs(elapsed())} s")
            yield user
    finally:
        if user is not None:
            with contextlib.suppress(KeyError):
                pwd.getpwnam(user.name)
                leftovers.append(f"user {user.name}")
            for place in (user.home.parent, user.runtime_dir):
                if place.exists():
                    leftovers.append(f"could not remove {place}")


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


def other_podmans() -> int:
    """How many podman processes (other sessions', conmon excluded) run (counted only)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if argv and Path(argv[0].decode(errors="replace")).name == "podman":
                    count += 1
    return count


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


def image_facts(daemons: bool, rootless: bool) -> str:
    shown = [*IMAGES, TestImage("packages scanner", SCANNER_IMAGE, has_zoneinfo=False)]
    if rootless:
        known = {image.ref for image in shown}
        shown[-1:-1] = [TestImage(label, ref, has_zoneinfo=False)
                        for label, ref in ROOTLESS_IMAGES if ref not in known]
    parts = []
    for image in shown:
        described = []
        for binary in ("podman", "docker") if daemons else ("podman",):
            done = run([binary, "image", "inspect", "--format",
                        "{{.Size}} {{len .RootFS.Layers}}", image.ref], capture=True,
                       check=False)
            size, _, layers = done.stdout.strip().partition(" ")
            if size.isdigit():
                described.append(f"{binary} {int(size) / 1e6:.1f} MB")
        content = ctr_image_size(image.ref) if daemons else None
        if content is not None:
            described.append(f"containerd {content} of content")
        parts.append(f"{image.label} {', '.join(described)}, {layers or '?'} layer(s)")
    return "; ".join(parts)


def machine_facts(atomicscan: Path, workdir: Path, daemons: bool,
                  rootless: bool) -> dict[str, str]:
    """What the run ran on; docker and containerd only when their daemons were started."""
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
        **(docker_facts() if daemons else {}),
        **(containerd_facts() if daemons else {}),
        "atomicscan": first_line(run, [atomicscan, "--version"]),
        "python": platform.python_version(),
        "temp dir": f"{workdir.parent} ({tmp_fs})",
        "cgroups": first_line(run, ["stat", "-f", "-c", "%T", "/sys/fs/cgroup"]),
        "images (size as each runtime reports it)": image_facts(daemons, rootless),
        "other dockerd processes running": str(other_dockerds()),
        "other podman processes running": str(other_podmans()),
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


def report_rootless(result: RootlessResult, heading: str, markdown: bool) -> list[str]:
    scan = " ".join(ROOTLESS_SCAN)
    debian = ROOTLESS_IMAGES[0][1]
    out = [f"\n{heading}(d) Rootless next to rootful: atomicscan {scan}"]
    out.append(render_table(["what", "value"], list(map(list, result.facts.items())),
                            markdown))
    count = len(result.image_names)
    out.append(f"\n(ii) covers the {count} images of the user's storage (`--images`; the "
               f"{count - 1} test images and the scanner image); root, whose storage holds "
               f"more, is given the same {count} names: {', '.join(result.image_names)}.\n")
    rows = []
    for label, runs, rootful_args, rootless_args in (
            ("(i) debian", result.debian, debian, debian),
            (f"(ii) {count} images", result.images, f"the {count} names", "--images")):
        for side, args in (("rootful", rootful_args), ("rootless", rootless_args)):
            rows.append(stat_row(f"{label}: {side} ({args})", runs[side].total))
        for side in SIDES:
            rows.append(stat_row(f"{label}: {side}: … of which the scanner containers "
                                 "(first started_at→last finished_at)", runs[side].inside))
    out.append(render_table(["what", "median", "min", "max"], rows, markdown))
    out.append("\nrootless/rootful, ratio of medians, and the reports compared:\n")
    rows = []
    for label, runs, names in (("(i) debian", result.debian, [debian]),
                               (f"(ii) {count} images", result.images, result.image_names)):
        verdicts = compare_sides(runs, names)
        same = all(v.startswith("identical") for v in verdicts.values())
        rows.append([label, ratio(runs["rootless"].total, runs["rootful"].total),
                     ratio(runs["rootless"].inside, runs["rootful"].inside),
                     (f"identical for all {len(names)} images "
                      f"({sum(runs['rootful'].packages[n] for n in names)} packages)"
                      if same and len(names) > 1 else
                      "; ".join(f"{n}: {v}" for n, v in verdicts.items()))])
    out.append(render_table(["what", "end to end", "scanner containers", "package lists"],
                            rows, markdown))
    return out


def report(facts: Mapping[str, str], repeat: int, rootfs: RootfsResult | None,
           scans: Mapping[tuple[str, str], ScanRuns] | None,
           fixed: Mapping[str, Samples] | None, rootless: RootlessResult | None,
           leftovers: Sequence[str], markdown: bool) -> str:
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
    if rootless is not None:
        out += report_rootless(rootless, heading, markdown)
    out.append("\nLeft behind: " + ("; ".join(leftovers) if leftovers else "nothing") + ".")
    return "\n".join(out)


# --------------------------------------------------------------------------- private dockerd


def load_test_helpers() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    """tests/dockerd.py, tests/containerd.py, tests/helpers.py and tests/rootless_user.py,
    the same code the real test tier uses."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import containerd
    import dockerd
    import helpers
    import rootless_user

    return dockerd, containerd, helpers, rootless_user


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
    parser.add_argument("--skip-rootless", action="store_true", help="leave out (d)")
    parser.add_argument("--only", action="append", choices=PARTS, metavar="PART",
                        help="run only this part (repeatable): rootfs (a), scans (b), "
                             "fixed (c) or rootless (d); dockerd and containerd are started "
                             "only for (a), (b) and (c)")
    parser.add_argument("--keep-docker-data", action="store_true",
                        help=f"keep /var/lib/{DOCKERD_NAME} (the loaded images) for the next "
                             "run; by default it is removed")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    skipped = {part for part in PARTS if getattr(args, f"skip_{part}")}
    if args.only and skipped & set(args.only):
        parser.error("--only and --skip- name the same part")
    args.parts = set(args.only) if args.only else set(PARTS) - skipped
    return args


def find_atomicscan() -> Path:
    beside = VENV_BIN / "atomicscan"
    if beside.exists():
        return beside
    found = shutil.which("atomicscan")
    if found is None:
        raise BenchError(f"atomicscan not found beside {sys.executable} or on PATH")
    return Path(found)


def require_images(parts: set[str]) -> None:
    wanted = [*(i.ref for i in IMAGES), SCANNER_IMAGE]
    if "rootless" in parts:
        wanted += [ref for _, ref in ROOTLESS_IMAGES if ref not in wanted]
    missing = [ref for ref in wanted
               if run(["podman", "image", "exists", ref], check=False).returncode != 0]
    if missing:
        raise BenchError(f"missing image(s) {', '.join(missing)} in root's podman storage; "
                         "run tests/testbed/build-images first")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    daemons = bool(args.parts & DAEMON_PARTS)
    if os.geteuid() != 0:
        print("bench_runtimes: run as root (it mounts image root filesystems, starts a "
              "dockerd and makes a throwaway user)", file=sys.stderr)
        return 2
    if daemons and any(shutil.which(tool) is None
                       for tool in ("docker", "dockerd", "containerd", "ctr")):
        print("bench_runtimes: docker, dockerd, containerd and ctr are needed (scripts/setup "
              "installs them)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.path.insert(0, str(REPO))  # atomicscan from this checkout, as the venv has it
    dockerd, containerd, helpers, rootless_user = load_test_helpers()
    podman_env = helpers.podman_env()
    # Every podman call from here on, ours and atomicscan's, sees the project's configuration.
    os.environ.update({k: v for k, v in podman_env.items() if k == "CONTAINERS_CONF"})

    # Not "atomicscan*": the real test tier counts new /tmp/atomicscan* entries as leaks.
    workdir = Path(tempfile.mkdtemp(prefix="bench-runtimes-"))
    janitor = Janitor(workdir)
    leftovers: list[str] = []
    rootfs = scans = fixed = rootless = None
    try:
        atomicscan = find_atomicscan()
        require_images(args.parts)
        with contextlib.ExitStack() as stack:
            if daemons:
                stack.enter_context(bench_dockerd(dockerd, podman_env, args.keep_docker_data,
                                                  leftovers))
                stack.enter_context(bench_containerd(containerd, podman_env, leftovers))
            from atomicscan.builtin.containerd import ContainerdRuntime
            from atomicscan.builtin.docker import DockerRuntime
            from atomicscan.builtin.podman import PodmanRuntime
            from atomicscan.errors import AtomicscanError

            # Made here: each reads its environment (DOCKER_HOST, CONTAINERD_*) when made.
            runtimes: dict[str, Any] = {"podman": PodmanRuntime()}
            if daemons:
                runtimes.update({"docker": DockerRuntime(), "containerd": ContainerdRuntime()})
            try:
                for runtime in runtimes.values():
                    runtime.check()
            except AtomicscanError as exc:
                raise BenchError(str(exc)) from exc
            facts = machine_facts(atomicscan, workdir, daemons, "rootless" in args.parts)
            # Entered last, so taken down first: the user's processes go before the daemons.
            user = (stack.enter_context(bench_user(rootless_user, leftovers))
                    if "rootless" in args.parts else None)
            try:
                if "rootfs" in args.parts:
                    rootfs = bench_rootfs(janitor, runtimes, args.repeat)
                if "scans" in args.parts:
                    scans = bench_scans(janitor, atomicscan, args.repeat)
                if "fixed" in args.parts:
                    try:
                        fixed = bench_fixed_costs(janitor, args.repeat)
                    except BenchError as exc:
                        # A probe, not a result: keep (a) and (b) (another user's image
                        # removal can fail a concurrent `podman images --all`).
                        log(f"(c) left out: {exc}")
                        facts["(c) fixed costs"] = f"left out, a probe failed: {exc}"
                if user is not None:
                    rootless = bench_rootless(janitor, atomicscan, user, args.repeat)
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
    print(report(facts, args.repeat, rootfs, scans, fixed, rootless, leftovers,
                 args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
