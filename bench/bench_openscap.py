#!/usr/bin/env python3
"""atomicscan's OpenSCAP scanner against oscap run straight on the host, side by side in one run.

All three evaluate the ``standard`` profile of the scanner image's own SCAP Security Guide
content (``ssg-debian12-ds.xml``, copied out of ``localhost/atomicscan/openscap:latest`` once,
before anything is timed) on the Debian test image:

ISOLATED  ``atomicscan --runtime podman --scanner openscap --json IMAGE``, a new process each
          time, its results, state and cache directories in a temporary directory. It resolves the
          image, mounts it read-only, runs oscap in a locked-down container and copies
          results.xml, the ARF and the HTML report out.
HOST      ``podman image mount IMAGE`` + a read-only bind (``mount --bind``, then ``mount -o
          remount,bind,ro``), ``oscap-chroot ROOTFS xccdf eval --profile P --results R
          --results-arf A --report H DATASTREAM``, then the unmounts: the same three outputs,
          and the mounting is timed too, because ISOLATED's time contains its own.
HOST-lite HOST without ``--results-arf`` and ``--report``: results.xml only. Not like for
          like; shown to tell what the ARF and the HTML report cost oscap.

Every run of each, warm-up included, must give the same result for every rule as the first
ISOLATED run, and atomicscan's reported counts must match its own results.xml. The
alternatives are interleaved within every repetition (their order rotates from one
repetition to the next), after one untimed warm-up run of each. Medians, minima and maxima
of N repetitions are printed, with ratios of the medians; the issue's target is ISOLATED
within 1.3x of HOST.

Probes time the pieces atomicscan adds around oscap (its start-up, its podman queries, the
container start, the wrapper's Python start, and the wrapper's own steps timed inside the
container: profile listing, eval, parse of results.xml; the copy of the outputs), in the
same repetitions, to show where the extra time goes.

Run it as root from the repository:

    sudo .venv/bin/python bench/bench_openscap.py [--repeat N] [--markdown]

Everything it sets up (mounts, image mounts, containers, temporary trees) is taken down
before it exits, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
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

TARGET = "localhost/atomicscan-test/debian:bookworm"
SCANNER_IMAGE = "localhost/atomicscan/openscap:latest"
SCANNER_DIR = REPO / "scanners" / "openscap"
#: Inside the scanner image; the same file the wrapper picks for a Debian 12 target.
DATASTREAM_IN_IMAGE = "/usr/share/xml/scap/ssg/content/ssg-debian12-ds.xml"
PROFILE = "xccdf_org.ssgproject.content_profile_standard"

#: From the issue: atomicscan's OpenSCAP scan within this multiple of host oscap.
HOST_RATIO_TARGET = 1.3

ALTERNATIVES = ("ISOLATED", "HOST", "HOST-lite")
LABELS = {
    "ISOLATED": "ISOLATED: atomicscan --runtime podman --scanner openscap --json",
    "HOST": "HOST: mount + oscap-chroot xccdf eval (results, ARF, report) + unmount",
    "HOST-lite": "HOST-lite: the same with --results only (no ARF, no HTML report)",
}
XCCDF_NAMESPACES = ("http://checklists.nist.gov/xccdf/1.2", "http://checklists.nist.gov/xccdf/1.1")
SHOWN_RESULTS = ("pass", "fail", "notapplicable", "notchecked", "error", "notselected")

#: How long a child gets to clean up after SIGTERM before it is killed.
CHILD_GRACE_SECONDS = 30.0

RuleResults = dict[str, str]


# --------------------------------------------------------------------------- processes


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(child: subprocess.Popen[Any]) -> None:
    """Ask a child's process group to finish, kill it if it won't, and wait until it is gone.

    Each child leads a group of its own: oscap-chroot is a shell script whose oscap would
    otherwise outlive it and keep the read-only bind busy. atomicscan cleans up on SIGTERM
    (its own children are in sessions of their own, which it stops itself).
    """
    pgid = child.pid
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            child.wait(CHILD_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            child.wait()
    deadline = time.monotonic() + CHILD_GRACE_SECONDS
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def run(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
        capture: bool = False, check: bool = True, cwd: Path | None = None,
        ok: Sequence[int] = (0,)) -> Done:
    """Run ``argv`` and time it; stdout is kept only with ``capture``.

    Without ``env`` the child gets this process's environment, which carries CONTAINERS_CONF
    (set in ``main``). Exit codes in ``ok`` count as success.
    """
    command = [str(part) for part in argv]
    started = time.perf_counter()
    # A session of its own: Ctrl-C reaches this script alone, and _stop ends the whole group.
    with subprocess.Popen(command, env=dict(env) if env is not None else None, text=True,
                          cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, start_new_session=True) as child:
        try:
            out, err = child.communicate()
        except BaseException:
            _stop(child)
            raise
    done = Done(command, child.returncode, out or "", err or "", time.perf_counter() - started)
    if check and done.returncode not in ok:
        raise BenchError(f"`{' '.join(command)}` exited {done.returncode}: "
                         f"{done.stderr.strip()[-800:]}")
    return done


# --------------------------------------------------------------------------- clean-up


class Janitor(MountKeeper):
    """Sets things up for the benchmark, remembering each until it is taken down again.

    ``close`` takes down whatever is still up: binds, image mounts, containers, what an
    atomicscan run cut short left in its own state directory, and last the work directory,
    which is removed only once nothing is mounted below it.
    """

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, run)
        self.containers: list[str] = []
        #: State directories given to atomicscan runs (ATOMICSCAN_STATE_DIR).
        self.state_dirs: list[Path] = []
        self.closed = False

    def container_name(self) -> str:
        name = f"bench-openscap-{os.getpid()}-{self.next_serial()}"
        # Remembered first: a run cut short by Ctrl-C may still have created it.
        self.containers.append(name)
        return name

    def forget_container(self, name: str) -> None:
        self.containers.remove(name)

    def _undo_dead_atomicscan(self, state_dir: Path) -> list[str]:
        """Undo what an atomicscan run stopped half-way left, from its own journal.

        Not ``atomicscan cleanup``: with a private state directory it would take every other
        atomicscan run's scanner container on this host for a dead one.
        """
        from atomicscan import state
        from atomicscan.runtime import RUN_LABEL

        problems: list[str] = []
        if not state_dir.is_dir():
            return problems
        for run_dir in state.stale_runs(state_dir):
            # The scanner containers of that run alone, by the run label atomicscan gives them.
            names = run(["podman", "ps", "--all", "--filter", f"label={RUN_LABEL}={run_dir.name}",
                         "--format", "{{.Names}}"], capture=True, check=False).stdout.split()
            for name in names:
                run([*podman_rm(), name], check=False)
            for point in mount_points_under(run_dir):
                self.force_unmount(point)
            for record in reversed(state.read_journal(run_dir)):
                target = str(record.get("id", ""))
                if record.get("action") == "image-mount":
                    run(["podman", "image", "umount", target], check=False)
                elif record.get("action") == "container-mount":
                    run(["podman", "umount", target], check=False)
                else:
                    problems.append(f"atomicscan journal record not undone: {record}")
        return problems

    def close(self) -> list[str]:
        """Take everything down; return what could not be."""
        self.closed = True
        problems = self.release_mounts()
        for name in reversed(self.containers):
            run([*podman_rm(), name], check=False)
            if run(["podman", "container", "exists", name], check=False).returncode == 0:
                problems.append(f"podman container {name}")
        self.containers.clear()
        for state_dir in self.state_dirs:
            problems += self._undo_dead_atomicscan(state_dir)
        return problems + self.release_workdir()


def podman_rm() -> list[str]:
    return ["podman", "rm", "--force", "--ignore", "--time", "0"]


# --------------------------------------------------------------------------- statistics


# --------------------------------------------------------------------------- results


def rule_results(path: Path) -> RuleResults:
    """idref -> result of every rule-result in the (last) TestResult of an XCCDF results file."""
    tags = {f"{{{ns}}}{name}": name for ns in XCCDF_NAMESPACES
            for name in ("TestResult", "rule-result", "result")}
    found: RuleResults = {}
    current: RuleResults = {}
    # The file is oscap's own output, just written into our temporary directory.
    for _event, element in ET.iterparse(path, events=("end",)):  # noqa: S314
        name = tags.get(element.tag)
        if name == "rule-result":
            result = next((c.text for c in element if tags.get(c.tag) == "result"), None)
            current[element.get("idref", "")] = (result or "unknown").strip()
            element.clear()
        elif name == "TestResult":
            found, current = current, {}
            element.clear()
    if not found:
        raise BenchError(f"{path.name} has no TestResult with rule results")
    return found


def count(rules: RuleResults) -> dict[str, int]:
    counts = Counter(rules.values())
    return {result: counts.get(result, 0) for result in (*SHOWN_RESULTS, *sorted(counts))}


def describe_counts(counts: Mapping[str, int]) -> str:
    shown = [f"{counts.get(r, 0)} {r}" for r in SHOWN_RESULTS]
    shown += [f"{n} {r}" for r, n in counts.items() if r not in SHOWN_RESULTS and n]
    return ", ".join(shown)


@dataclass
class Check:
    """Every run's rule results, compared with the reference (the first ISOLATED run)."""

    reference: RuleResults | None = None
    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ALTERNATIVES, 0))
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def record(self, alternative: str, what: str, rules: RuleResults) -> None:
        self.runs[alternative] += 1
        if self.reference is None:
            self.reference = rules
        counts = count(rules)
        self.counts.setdefault(alternative, counts)
        if rules == self.reference:
            return
        differing = sorted(k for k in set(rules) | set(self.reference)
                           if rules.get(k) != self.reference.get(k))
        shown = ", ".join(f"{k.removeprefix('xccdf_org.ssgproject.content_rule_')} "
                          f"{self.reference.get(k)}→{rules.get(k)}" for k in differing[:6])
        self.problems.append(f"{what}: {describe_counts(counts)}; {len(differing)} rule(s) "
                             f"differ from the first ISOLATED run: {shown}")


# --------------------------------------------------------------------------- the alternatives


@dataclass
class Context:
    janitor: Janitor
    atomicscan: Path
    datastream: Path
    check: Check
    use_probe_root: bool
    #: One ISOLATED output directory kept from the warm-up, for the copy probe.
    sample_output: Path | None = None


@dataclass
class Timing:
    total: Samples = field(default_factory=Samples)
    parts: dict[str, Samples] = field(default_factory=dict)

    def add(self, seconds: float, parts: Mapping[str, float]) -> None:
        self.total.add(seconds)
        for name, value in parts.items():
            self.parts.setdefault(name, Samples()).add(value)


def run_isolated(ctx: Context, what: str) -> tuple[float, dict[str, float]]:
    home = ctx.janitor.scratch("isolated")
    state_dir = home / "state"
    ctx.janitor.state_dirs.append(state_dir)
    # A cache of its own, empty: every run scans (the result cache must never answer).
    env = {**os.environ, "ATOMICSCAN_RESULTS_DIR": str(home / "results"),
           "ATOMICSCAN_STATE_DIR": str(state_dir), "ATOMICSCAN_CACHE_DIR": str(home / "cache")}
    try:
        done = run([ctx.atomicscan, "--runtime", "podman", "--scanner", "openscap", "--json",
                    TARGET], env=env, capture=True)
        document = json.loads(done.stdout)
        results = document.get("results") or []
        if len(results) != 1 or not results[0].get("successful"):
            raise BenchError(f"atomicscan's scan failed: {json.dumps(results)[:800]}")
        result = results[0]
        if result.get("cached"):
            raise BenchError("atomicscan answered from its result cache instead of scanning")
        if (result.get("custom") or {}).get("profile") != PROFILE:
            raise BenchError(f"atomicscan evaluated {result.get('custom')}, not {PROFILE}")
        files = {name: Path(path) for name, path in (result.get("files") or {}).items()}
        missing = {"results_xml", "arf", "report_html"} - {n for n, p in files.items()
                                                           if p.is_file() and p.stat().st_size}
        if missing:
            raise BenchError(f"atomicscan left no {', '.join(sorted(missing))}")
        rules = rule_results(files["results_xml"])
        ctx.check.record("ISOLATED", what, rules)
        reported = {k: v for k, v in (result.get("counts") or {}).items() if v}
        own = {k: v for k, v in count(rules).items() if v}
        if reported != own:
            ctx.check.problems.append(f"{what}: atomicscan reports {reported}, its results.xml "
                                      f"says {own}")
        if ctx.sample_output is None:
            ctx.sample_output = ctx.janitor.scratch("sample-output")
            shutil.copytree(files["results_xml"].parent, ctx.sample_output / "target")
        inside = (dt.datetime.fromisoformat(result["finished_at"])
                  - dt.datetime.fromisoformat(result["started_at"])).total_seconds()
    finally:
        if not mount_points_under(home):
            shutil.rmtree(home, ignore_errors=True)
    return done.seconds, {"scanner container run (result's started_at→finished_at)": inside,
                          "outside the container run": done.seconds - inside}


def run_host(ctx: Context, what: str, *, full: bool) -> tuple[float, dict[str, float]]:
    janitor = ctx.janitor
    out = janitor.scratch("host")
    elapsed = stopwatch()
    merged = janitor.mount_image(TARGET)
    rootfs = janitor.workdir / f"host-rootfs-{os.getpid()}"
    janitor.bind_readonly(merged, rootfs)
    mounted = elapsed()
    # No try/finally: after a failure Janitor.close unmounts (lazily if it must), so a mount
    # still busy can't hide the failure.
    argv: list[str | Path] = ["xccdf", "eval", "--profile", PROFILE,
                              "--results", out / "results.xml"]
    if full:
        argv += ["--results-arf", out / "arf.xml", "--report", out / "report.html"]
    argv.append(ctx.datastream)
    if ctx.use_probe_root:
        env = {**os.environ, "OSCAP_PROBE_ROOT": str(rootfs),
               "OSCAP_EVALUATION_TARGET": f"chroot://{rootfs}"}
        oscap = run(["oscap", *argv], env=env, cwd=out, ok=(0, 2))
    else:
        oscap = run(["oscap-chroot", rootfs, *argv], cwd=out, ok=(0, 2))
    before_unmount = elapsed()
    janitor.unbind(rootfs)
    janitor.unmount_image(TARGET)
    total = elapsed()
    expected = ("results.xml", "arf.xml", "report.html") if full else ("results.xml",)
    missing = [name for name in expected
               if not (out / name).is_file() or not (out / name).stat().st_size]
    if missing:
        raise BenchError(f"oscap left no {', '.join(missing)}: {oscap.stderr.strip()[-400:]}")
    ctx.check.record("HOST" if full else "HOST-lite", what, rule_results(out / "results.xml"))
    shutil.rmtree(out)
    return total, {"mount (podman image mount + read-only bind)": mounted,
                   "oscap-chroot … xccdf eval": oscap.seconds,
                   "unmount": total - before_unmount}


def bench_all(ctx: Context, repeat: int, with_breakdown: bool
              ) -> tuple[dict[str, Timing], Breakdown | None]:
    """The alternatives and the breakdown's probes, all interleaved within each repetition.

    On a shared machine the load changes from minute to minute; timing the pieces in the same
    repetitions as the whole keeps the two comparable.
    """
    runs: dict[str, Callable[[Context, str], tuple[float, dict[str, float]]]] = {
        "ISOLATED": run_isolated,
        "HOST": lambda c, w: run_host(c, w, full=True),
        "HOST-lite": lambda c, w: run_host(c, w, full=False),
    }
    timings = {name: Timing() for name in ALTERNATIVES}
    for name in ALTERNATIVES:  # warm-up, ISOLATED first: its rule results are the reference
        seconds, _ = runs[name](ctx, f"{name} warm-up")
        log(f"warm-up {name}: {secs(seconds)} s")
    breakdown = None
    probes: list[Probe] = []
    if with_breakdown:
        probes = breakdown_probes(ctx)
        labels = {key: label for probe in probes for key, label in probe.labels.items()}
        breakdown = Breakdown(labels, {key: Samples() for key in labels})
        for probe in probes:
            probe.once()
        log(f"warm-up of the {len(probes)} breakdown probes done")

    def alternative(name: str, index: int) -> Callable[[], None]:
        def once() -> None:
            seconds, parts = runs[name](ctx, f"{name} repetition {index + 1}")
            timings[name].add(seconds, parts)
        return once

    def probe_step(probe: Probe) -> Callable[[], None]:
        def once() -> None:
            assert breakdown is not None
            for key, seconds in probe.once().items():
                breakdown.samples[key].add(seconds)
        return once

    for index in range(repeat):
        steps = [alternative(name, index) for name in ALTERNATIVES]
        steps += [probe_step(probe) for probe in probes]
        for step in rotated(steps, index):
            step()
        log(f"repetition {index + 1}/{repeat}: "
            + ", ".join(f"{n} {secs(timings[n].total.values[-1])} s" for n in ALTERNATIVES))
    return timings, breakdown


# --------------------------------------------------------------------------- breakdown


def scanner_capabilities() -> tuple[str, ...]:
    definition = tomllib.loads((SCANNER_DIR / "scanner.toml").read_text(encoding="utf-8"))
    return tuple(definition.get("isolation", {}).get("capabilities") or ())


@dataclass
class Probe:
    #: key -> label of every number ``once`` returns.
    labels: dict[str, str]
    once: Callable[[], dict[str, float]]


#: Run with ``python3 -c`` in the scanner container: the wrapper's own functions, called in
#: the order its compliance scan calls them, each timed. Output goes to the container's /tmp
#: (a tmpfs, as atomicscan's /scanout is).
WRAPPER_STEPS = """
import json, os, sys, time
clock = time.perf_counter
started = clock()
sys.path.insert(0, "/opt/atomicscan")
import oscap_scan as o
steps = {"import": clock() - started}
root, out, work = "/scanin/target", "/tmp/out", "/tmp/work"
os.makedirs(out)
os.makedirs(work)
mark = clock()
info = o.read_os_info(root)
_, ds = o.choose_datastream(info, o.available_datastreams(o.CONTENT_DIR))
steps["os"] = clock() - mark
mark = clock()
profile = o.resolve_profile(None, o.list_profiles(ds), os.path.basename(ds))
steps["listing"] = clock() - mark
mark = clock()
apt = o.write_apt_config(work, root, o.dpkg_architectures(root))
steps["apt"] = clock() - mark
mark = clock()
run = o.run_oscap(["xccdf", "eval", "--profile", profile, "--results", out + "/results.xml",
                   "--results-arf", out + "/arf.xml", "--report", out + "/report.html", ds],
                  o.probe_env(root, "target", apt))
steps["eval"] = clock() - mark
if run.returncode not in (0, 2):
    sys.exit("oscap exited %d: %s" % (run.returncode, run.stderr[-400:]))
mark = clock()
summary = o.parse_xccdf_results(out + "/results.xml", profile)
steps["parse"] = clock() - mark
print(json.dumps({"steps": steps, "counts": summary.counts}))
"""

STEP_LABELS = {
    "import": "… of which importing the wrapper",
    "os": "… of which reading os-release, choosing the data stream",
    "listing": "… of which the profile listing (`oscap info --profiles`)",
    "apt": "… of which reading dpkg's architectures, writing APT_CONFIG",
    "eval": "… of which `oscap xccdf eval` (results, ARF, report)",
    "parse": "… of which parsing results.xml (`parse_xccdf_results`)",
}


def breakdown_probes(ctx: Context) -> list[Probe]:
    from atomicscan.builtin.podman import podman_flags
    from atomicscan.runtime import Bind, ScannerContainer
    from atomicscan.scanout import read_target_output

    janitor = ctx.janitor
    target_id = run(["podman", "image", "inspect", "--format", "{{.Id}}", TARGET],
                    capture=True).stdout.strip()
    capabilities = scanner_capabilities()
    reference = count(ctx.check.reference or {})
    empty = janitor.scratch("empty-scanin")

    def scanner_run(*args: str, binds: tuple[Bind, ...] = ()) -> Done:
        """A container locked down exactly as atomicscan's podman runtime does it."""
        container = ScannerContainer(name=janitor.container_name(), image=SCANNER_IMAGE,
                                     args=args, binds=binds, capabilities=capabilities,
                                     env={"ATOMICSCAN_SCAN_TYPE": "configuration_compliance"})
        done = run(["podman", "run", "--rm", "--pull", "never", "--name", container.name,
                    *podman_flags(container), SCANNER_IMAGE, *args], capture=True)
        janitor.forget_container(container.name)
        return done

    def simple(key: str, label: str, once: Callable[[], float]) -> Probe:
        return Probe({key: label}, lambda: {key: once()})

    def command(*argv: str | Path) -> Callable[[], float]:
        return lambda: run(argv).seconds

    def scratch_tmpfs() -> float:
        point = janitor.scratch("tmpfs")
        elapsed = stopwatch()
        janitor.binds.append(point)
        run(["mount", "-t", "tmpfs", "-o", "size=536870912,mode=0700,uid=65534,gid=65534,"
             "nosuid,nodev,noexec", "bench-openscap-scanout", point])
        run(["umount", point])
        janitor.binds.remove(point)
        seconds = elapsed()
        point.rmdir()
        return seconds

    def wrapper_steps() -> dict[str, float]:
        # Mounted as a scan mounts it, outside the timing; after a failure Janitor.close
        # takes it down.
        merged = janitor.mount_image(TARGET)
        rootfs = janitor.workdir / f"steps-rootfs-{os.getpid()}"
        janitor.bind_readonly(merged, rootfs)
        done = scanner_run("python3", "-c", WRAPPER_STEPS,
                           binds=(Bind(rootfs, "/scanin/target"),))
        janitor.unbind(rootfs)
        janitor.unmount_image(TARGET)
        found = json.loads(done.stdout)
        counts = {k: v for k, v in found["counts"].items() if v}
        if counts != {k: v for k, v in reference.items() if v}:
            ctx.check.problems.append(f"the wrapper's steps in the container: counts {counts}")
        return {"steps": done.seconds, **{f"step-{k}": v for k, v in found["steps"].items()}}

    sample = ctx.sample_output
    if sample is None:
        raise BenchError("no ISOLATED output was kept to time the copy")

    def copy_outputs() -> float:
        dest = janitor.scratch("copied")
        elapsed = stopwatch()
        output = read_target_output(sample, "target", dest / "target")
        seconds = elapsed()
        if output.document is None:
            raise BenchError(f"read_target_output refused the sample: {output.error}")
        shutil.rmtree(dest)
        return seconds

    return [
        simple("start", "atomicscan start (`atomicscan --version`)",
               command(ctx.atomicscan, "--version")),
        simple("version", "`podman version --format {{.Client.Version}}`",
               command("podman", "version", "--format", "{{.Client.Version}}")),
        simple("ps", "`podman ps --all --format json`",
               command("podman", "ps", "--all", "--format", "json")),
        simple("images", "`podman images --all --format json`",
               command("podman", "images", "--all", "--format", "json")),
        simple("inspect-scanner", "`podman image inspect --format {{.Id}}` of the scanner image",
               command("podman", "image", "inspect", "--format", "{{.Id}}", SCANNER_IMAGE)),
        simple("inspect-target", "`podman image inspect` of the target (config for /scanmeta)",
               command("podman", "image", "inspect", target_id)),
        simple("tmpfs", "tmpfs for /scanout: `mount -t tmpfs` + `umount`", scratch_tmpfs),
        simple("copy", "copying the outputs out of /scanout (atomicscan's `read_target_output`)",
               copy_outputs),
        simple("run-true", "locked-down `podman run --rm` of the scanner image (`true`)",
               lambda: scanner_run("true").seconds),
        simple("run-wrapper", "the same running the wrapper on an empty /scanin (Python start, "
                              "imports, nothing to scan)",
               lambda: scanner_run("python3", "/opt/atomicscan/oscap_scan.py",
                                   binds=(Bind(empty, "/scanin"),)).seconds),
        Probe({"steps": "the same running the wrapper's compliance steps on the Debian rootfs, "
                        "each timed inside",
               **{f"step-{k}": v for k, v in STEP_LABELS.items()}}, wrapper_steps),
    ]


@dataclass
class Breakdown:
    labels: dict[str, str]
    samples: dict[str, Samples]

    def median(self, key: str) -> float:
        return self.samples[key].median


# --------------------------------------------------------------------------- setup and machine


def copy_datastream(janitor: Janitor) -> Path:
    """The scanner image's own data stream, copied out through ``podman image mount``."""
    merged = janitor.mount_image(SCANNER_IMAGE)
    try:
        source = merged / DATASTREAM_IN_IMAGE.lstrip("/")
        copy = janitor.workdir / source.name
        shutil.copyfile(source, copy)
        if sha256(source) != sha256(copy):
            raise BenchError(f"the copy of {DATASTREAM_IN_IMAGE} differs from the image's")
    finally:
        janitor.unmount_image(SCANNER_IMAGE)
    return copy


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def image_size(image: str) -> str:
    size = first_line(run, ["podman", "image", "inspect", "--format", "{{.Size}}", image])
    return f"{int(size) / 1e6:.1f} MB" if size.isdigit() else size


def scanner_oscap_version(janitor: Janitor) -> str:
    name = janitor.container_name()
    done = run(["podman", "run", "--rm", "--pull", "never", "--name", name, "--network", "none",
                SCANNER_IMAGE, "oscap", "--version"], capture=True, check=False)
    janitor.forget_container(name)
    lines = done.stdout.strip().splitlines()
    return lines[0] if lines else f"unavailable (exit {done.returncode})"


def machine_facts(ctx: Context, workdir: Path) -> dict[str, str]:
    cpu, memory = cpu_model(), memory_total()
    setup = first_line(run, ["podman", "info", "--format", "{{.Store.GraphDriverName}} storage, "
                             "{{.Host.OCIRuntime.Version}}"])
    images = run(["podman", "images", "--all", "--quiet"], capture=True,
                 check=False).stdout.split()
    ssg = first_line(run, ["podman", "image", "inspect", "--format",
                           '{{index .Labels "io.atomicscan.ssg-version"}}', SCANNER_IMAGE])
    tmp_fs = first_line(run, ["findmnt", "--noheadings", "--output", "FSTYPE", "--target",
                              str(workdir)])
    host_command = ("OSCAP_PROBE_ROOT=ROOTFS oscap" if ctx.use_probe_root else "oscap-chroot")
    return {
        "date (UTC)": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": str(os.cpu_count()),
        "CPU": cpu,
        "memory": memory,
        "kernel": platform.release(),
        "podman": f"{first_line(run, ['podman', '--version'])} ({setup})",
        "images in root's podman storage (`images --all`)": str(len(images)),
        "oscap on the host": first_line(run, ["oscap", "--version"]),
        "oscap in the scanner image": scanner_oscap_version(ctx.janitor),
        "HOST runs": host_command,
        "SCAP content": (f"{DATASTREAM_IN_IMAGE} of the scanner image (SSG {ssg}), "
                         f"{ctx.datastream.stat().st_size / 1e6:.1f} MB, sha256 "
                         f"{sha256(ctx.datastream)[:16]}…"),
        "profile": PROFILE,
        "atomicscan": f"{first_line(run, [ctx.atomicscan, '--version'])}, {source_state()}",
        "scanner image": first_line(run, ["podman", "image", "inspect", "--format",
                                          "{{.Id}}", SCANNER_IMAGE])[:12],
        "python": platform.python_version(),
        "temp dir": f"{workdir.parent} ({tmp_fs})",
        "image sizes": f"target {image_size(TARGET)}, scanner {image_size(SCANNER_IMAGE)}",
        "image mounts held by others at start": mounted_images(),
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def source_state() -> str:
    """The checkout atomicscan runs from: its commit, and what is changed in it."""
    head = first_line(run, ["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    changed = run(["git", "-C", REPO, "status", "--porcelain", "--", "atomicscan",
                   "scanners/openscap"], capture=True, check=False).stdout.splitlines()
    paths = ", ".join(line[3:] for line in changed)
    return f"git {head}" + (f" with uncommitted changes in {paths}" if paths else ", clean")


def mounted_images() -> str:
    """What ``podman image mount`` lists before this benchmark mounts anything."""
    listed = run(["podman", "image", "mount"], capture=True, check=False).stdout.splitlines()
    return ", ".join(line.split()[0] for line in listed if line.strip()) or "none"


def output_sizes(ctx: Context) -> str:
    if ctx.sample_output is None:
        return "unknown"
    sizes = []
    for name in ("results.xml", "arf.xml", "report.html"):
        path = ctx.sample_output / "target" / name
        if path.is_file():
            sizes.append(f"{name} {path.stat().st_size / 1e6:.1f} MB")
    return ", ".join(sizes)


# --------------------------------------------------------------------------- output


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def share(value: float, whole: float) -> str:
    return f"{100 * value / whole:.0f} %" if whole > 0 else "n/a"


def breakdown_rows(timings: Mapping[str, Timing], probes: Breakdown,
                   markdown: bool) -> list[list[str]]:
    """ISOLATED's extra time over HOST, on each side of the container run, itemised.

    The two sides come from the same runs: ISOLATED's container run (its result's start and
    finish) against HOST's oscap, and the rest of ISOLATED against HOST's mount + unmount.
    The items are medians of the probes, timed in the same repetitions.
    """
    m = probes.median
    isolated, host = timings["ISOLATED"], timings["HOST"]
    inside = isolated.parts["scanner container run (result's started_at→finished_at)"].median
    outside = isolated.parts["outside the container run"].median
    host_oscap = host.parts["oscap-chroot … xccdf eval"].median
    host_mounts = (host.parts["mount (podman image mount + read-only bind)"].median
                   + host.parts["unmount"].median)
    sides = [
        ("outside the container: ISOLATED's rest minus HOST's mount + unmount",
         outside - host_mounts, [
             ("atomicscan's Python start (`--version`)", m("start")),
             ("podman queries: version, ps, images --all, image inspect (2 calls)",
              m("version") + m("ps") + m("images") + m("inspect-scanner")
              + m("inspect-target")),
             ("the /scanout tmpfs, mounted and unmounted", m("tmpfs")),
             ("copying the outputs out of /scanout", m("copy")),
         ]),
        ("the container run: ISOLATED's container run minus HOST's oscap",
         inside - host_oscap, [
             ("starting and removing the locked-down container", m("run-true")),
             ("the wrapper's Python start and imports", m("run-wrapper") - m("run-true")),
             ("the wrapper's profile listing (`oscap info --profiles`)", m("step-listing")),
             ("the wrapper's os-release, data stream choice and APT_CONFIG",
              m("step-os") + m("step-apt")),
             ("the wrapper's parse of results.xml", m("step-parse")),
             ("oscap's eval in the container minus on the host", m("step-eval") - host_oscap),
         ]),
    ]
    extra = isolated.total.median - host.total.median
    rows = [["ISOLATED median minus HOST median", secs(extra), "100 %"]]
    for side, amount, items in sides:
        rows.append([f"**{side}**" if markdown else side.upper(), secs(amount),
                     share(amount, extra)])
        rows += [[f"… {name}", secs(value), share(value, extra)] for name, value in items]
        rest = amount - sum(value for _, value in items)
        rows.append(["… not itemised", secs(rest), share(rest, extra)])
    total = sum(amount for _, amount, _ in sides)
    rows.append(["the two sides together (a sum of medians, so not exactly the first row)",
                 secs(total), share(total, extra)])
    return rows


def report(facts: Mapping[str, str], repeat: int, timings: Mapping[str, Timing] | None,
           check: Check, probes: Breakdown | None, leftovers: Sequence[str],
           markdown: bool) -> str:
    heading = "### " if markdown else "== "
    out = [f"{heading}Machine",
           render_table(["what", "value"], [[k, v] for k, v in facts.items()], markdown),
           f"\nTimes in seconds, wall clock: median, min and max of {repeat} repetitions "
           "(the alternatives and the breakdown's probes interleaved in rotating order, one "
           "untimed warm-up each)."]
    if timings is not None:
        out.append(f"\n{heading}OpenSCAP `standard` profile on the Debian image")
        rows = []
        for name in ALTERNATIVES:
            rows.append(stat_row(LABELS[name], timings[name].total))
            rows += [stat_row(f"{name}: … {part}", samples)
                     for part, samples in timings[name].parts.items()]
        out.append(render_table(["what", "median", "min", "max"], rows, markdown))
        isolated = timings["ISOLATED"].total
        value = isolated.median / timings["HOST"].total.median
        lite = isolated.median / timings["HOST-lite"].total.median
        oscap_only = timings["HOST"].parts["oscap-chroot … xccdf eval"].median
        out.append(f"\nISOLATED/HOST, ratio of medians: {value:.2f}x. Target <= "
                   f"{HOST_RATIO_TARGET:.1f}x: {verdict(value <= HOST_RATIO_TARGET)}.")
        paired = [i / h for i, h in zip(isolated.values, timings["HOST"].total.values,
                                        strict=True)]
        out.append(f"Per repetition (ISOLATED and HOST of the same repetition): median "
                   f"{statistics.median(paired):.2f}x, from {min(paired):.2f}x to "
                   f"{max(paired):.2f}x.")
        out.append(f"ISOLATED/HOST-lite (not like for like: no ARF, no report): {lite:.2f}x. "
                   f"ISOLATED/(HOST's oscap alone, without the mounts): "
                   f"{isolated.median / oscap_only:.2f}x.")

    out.append(f"\n{heading}Rule results, every run (warm-ups included)")
    rows = [[name, str(check.runs[name]), describe_counts(check.counts[name])]
            for name in ALTERNATIVES if name in check.counts]
    out.append(render_table(["alternative", "runs", "counts (first run)"], rows, markdown))
    if check.problems:
        out.append("\nDIFFERENT:\n" + "\n".join(check.problems))
    else:
        total = sum(check.runs.values())
        out.append(f"\nAll {total} runs gave the same result for every one of the "
                   f"{len(check.reference or {})} rules, and atomicscan's reported counts "
                   "matched its results.xml every time.")

    if probes and timings is not None:
        out.append(f"\n{heading}Where ISOLATED's extra time goes: the pieces, timed alone")
        out.append(render_table(["what", "median", "min", "max"],
                                [stat_row(probes.labels[key], samples)
                                 for key, samples in probes.samples.items()], markdown))
        out.append("\nISOLATED's extra time over HOST, on each side of the container run, "
                   "itemised from the medians above:\n")
        out.append(render_table(["item", "seconds", "share"],
                                breakdown_rows(timings, probes, markdown), markdown))

    out.append("\nLeft behind: " + ("; ".join(leftovers) if leftovers else "nothing") + ".")
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time atomicscan's OpenSCAP scan against oscap on the host, side by side "
                    "in one run (run as root).")
    parser.add_argument("--repeat", type=int, default=5, metavar="N",
                        help="timed repetitions of each alternative (default: 5)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--probe-root", action="store_true",
                        help="run HOST as `OSCAP_PROBE_ROOT=ROOTFS oscap ...` instead of "
                             "`oscap-chroot ROOTFS ...`")
    parser.add_argument("--skip-breakdown", action="store_true",
                        help="leave out the timing of the pieces")
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


def require_tools(use_probe_root: bool) -> None:
    needed = ["podman", "mount", "umount", "oscap"] + ([] if use_probe_root else ["oscap-chroot"])
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        raise BenchError(f"{', '.join(missing)} not found on PATH (oscap-chroot and oscap come "
                         "with apt install openscap-utils openscap-scanner)")
    absent = [image for image in (TARGET, SCANNER_IMAGE)
              if run(["podman", "image", "exists", image], check=False).returncode != 0]
    if absent:
        raise BenchError(f"missing image(s) {', '.join(absent)} in root's podman storage; run "
                         "tests/testbed/build-images first")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench_openscap: run as root (it mounts image root filesystems)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.path.insert(0, str(REPO))  # atomicscan from this checkout, as the venv has it
    if "CONTAINERS_CONF" not in os.environ:
        for candidate in (Path("/etc/atomicscan/containers.conf"),
                          REPO / "atomicscan" / "data" / "containers.conf"):
            if candidate.is_file():
                # Every podman call from here on, ours and atomicscan's, sees it.
                os.environ["CONTAINERS_CONF"] = str(candidate)
                break

    # Not "atomicscan*": the real test tier counts new /tmp/atomicscan* entries as leaks.
    workdir = Path(tempfile.mkdtemp(prefix="bench-openscap-"))
    janitor = Janitor(workdir)
    check = Check()
    leftovers: list[str] = []
    facts: dict[str, str] = {}
    timings = probes = None
    try:
        require_tools(args.probe_root)
        ctx = Context(janitor, find_atomicscan(), copy_datastream(janitor), check,
                      args.probe_root)
        facts = machine_facts(ctx, workdir)
        timings, probes = bench_all(ctx, args.repeat, not args.skip_breakdown)
        facts["outputs (ISOLATED, HOST)"] = output_sizes(ctx)
        facts["load average at end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
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
    print(report(facts, args.repeat, timings, check, probes, leftovers, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
