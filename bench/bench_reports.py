#!/usr/bin/env python3
"""Reports (issue 12): what writing every output format costs, side by side in one run.

S  Real scans, with podman, ``--no-cache``:

   - ``packages`` on ``localhost/atomicscan-test/debian:bookworm`` with ``-o json=PATH``
     alone against ``-o`` json, table, sarif, html, cyclonedx-json and spdx-json at once;
   - ``configlint`` on ``localhost/atomicscan-test/configlint-bad:latest`` (25 findings, so
     SARIF and HTML have content) with json alone against json, table, sarif and html (the
     SBOM formats refuse a scanner that lists no packages, and the run would exit 1).

   One untimed warm-up of each command, then N repetitions; in each, the pairs run in
   rotating order and the two halves of a pair back to back, which one first alternating.
   The ratio of the medians (all / json) is held against the issue's target, under 1.25.

G  Generation alone, in-process, for a synthetic report of 10,000 findings over five
   targets, shaped like what the scanners write (configlint's own ``Finding`` for files
   with paths, OpenSCAP XCCDF rule results, OVAL-style CVEs with package details and a
   package list), read through ``findings_of`` as atomicscan reads a scanner's output:
   ``write_sarif``, ``write_html`` and, for reference, the ``json`` format's own
   ``json.dumps(report.to_json(), indent=2)``. Time (median of N, interleaved, after one
   warm-up), output size, and peak memory of the first call in fresh processes (see
   :func:`child_memory` for what is measured and why).

Run it as root from the repository (the real scans need podman's storage):

    sudo .venv/bin/python bench/bench_reports.py [--count N] [--findings N] [--skip-scans]

Results, state, config and outputs live in one temporary directory under /var/tmp, removed
before the script exits, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import gc
import hashlib
import importlib.util
import json
import os
import platform
import signal
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_host import run  # noqa: E402 - after the sys.path set-up, like atomicscan
from benchlib import (  # noqa: E402
    BenchError,
    MountKeeper,
    Samples,
    Terminated,
    _on_sigterm,
    cpu_model,
    first_line,
    log,
    memory_total,
    render_table,
    rotated,
    secs,
    stopwatch,
)

from atomicscan.builtin.format_html import write_html  # noqa: E402
from atomicscan.builtin.format_sarif import write_sarif  # noqa: E402
from atomicscan.collect import findings_of  # noqa: E402
from atomicscan.results import Finding, Package, Report, ScanResult  # noqa: E402

DEBIAN = "localhost/atomicscan-test/debian:bookworm"
CONFIGLINT_BAD = "localhost/atomicscan-test/configlint-bad:latest"
HOST_CONF = Path("/etc/atomicscan/containers.conf")
CONFIGLINT = REPO / "scanners" / "configlint" / "configlint.py"

#: From the issue: all formats at once may add under 25 % to the run.
ALL_FORMATS_TARGET = 1.25

SUFFIX = {"json": ".json", "table": ".txt", "sarif": ".sarif", "html": ".html",
          "cyclonedx-json": ".cdx.json", "spdx-json": ".spdx.json"}
RUN_WIDE = ("json", "table", "sarif", "html")


# --------------------------------------------------------------------------- real scans


@dataclass(frozen=True)
class Scan:
    """One scanner on one image, with a set of ``-o`` formats."""

    scanner: str
    image: str
    formats: tuple[str, ...]

    @property
    def label(self) -> str:
        shown = "json only" if self.formats == ("json",) else " + ".join(self.formats)
        return f"{self.scanner} on {self.image.rsplit('/', 1)[-1]}: {shown}"


@dataclass(frozen=True)
class Pair:
    json_only: Scan
    all_formats: Scan


PAIRS = (
    Pair(Scan("packages", DEBIAN, ("json",)),
         Scan("packages", DEBIAN, (*RUN_WIDE, "cyclonedx-json", "spdx-json"))),
    Pair(Scan("configlint", CONFIGLINT_BAD, ("json",)),
         Scan("configlint", CONFIGLINT_BAD, RUN_WIDE)),
)


@dataclass
class ScanTimes:
    samples: dict[Scan, Samples] = field(default_factory=dict)
    sizes: dict[Scan, dict[str, int]] = field(default_factory=dict)
    json_paths: dict[Scan, Path] = field(default_factory=dict)
    #: Per pair: format -> (first call, median of the later calls) in-process, seconds.
    writers: dict[Pair, dict[str, tuple[float, float]]] = field(default_factory=dict)

    def add(self, scan: Scan, seconds: float, sizes: dict[str, int], json_path: Path) -> None:
        self.samples.setdefault(scan, Samples()).add(seconds)
        self.sizes[scan] = sizes
        self.json_paths[scan] = json_path


def scan_env(work: Path) -> dict[str, str]:
    """The tests' ``Atomicscan`` environment: state, results and config in the work dir."""
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(HOST_CONF)
    # An installed atomicscan has its bytecode: let the warm-up write it, as bench_host does.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update({"ATOMICSCAN_STATE_DIR": str(work / "state"),
                "ATOMICSCAN_RESULTS_DIR": str(work / "results"),
                "ATOMICSCAN_CONFIG_DIR": str(work / "atomicscan.d")})
    return env


def scan_once(scan: Scan, keeper: MountKeeper,
              env: Mapping[str, str]) -> tuple[float, dict[str, int], Path]:
    """One timed run; every requested file must be there and not empty."""
    outputs = keeper.scratch("outputs")
    paths = {name: outputs / f"report{SUFFIX[name]}" for name in scan.formats}
    argv: list[str | Path] = [sys.executable, "-m", "atomicscan", "--runtime", "podman",
                              "--scanner", scan.scanner, "--no-cache",
                              "--output-dir", keeper.workdir / "output-dir"]
    for name, path in paths.items():
        argv += ["-o", f"{name}={path}"]
    done = run([*argv, scan.image], env=env)
    sizes = {}
    for name, path in paths.items():
        if not path.is_file() or path.stat().st_size == 0:
            raise BenchError(f"{scan.label}: -o {name} wrote nothing to {path}")
        sizes[name] = path.stat().st_size
    return done.seconds, sizes, paths["json"]


def measure_scans(count: int, keeper: MountKeeper) -> ScanTimes:
    env = scan_env(keeper.workdir)
    (keeper.workdir / "atomicscan.d").mkdir()
    times = ScanTimes()
    log("scans: one warm-up of each command")
    for pair in PAIRS:
        scan_once(pair.json_only, keeper, env)
        scan_once(pair.all_formats, keeper, env)
    for repetition in range(count):
        log(f"scans: repetition {repetition + 1} of {count}")
        for index, pair in enumerate(rotated(PAIRS, repetition)):
            halves = (pair.json_only, pair.all_formats)
            for scan in halves if (repetition + index) % 2 == 0 else reversed(halves):
                times.add(scan, *scan_once(scan, keeper, env))
    for pair in PAIRS:
        times.writers[pair] = writer_costs(pair.all_formats, times.json_paths[pair.all_formats],
                                           count)
    return times


def _each_target(writer: Callable[[ScanResult, Report], bytes], report: Report) -> None:
    for result in report.results:
        writer(result, report)


def writer_costs(scan: Scan, json_path: Path, count: int) -> dict[str, tuple[float, float]]:
    """What each format's writer takes in-process on the run's own report (read back from
    its ``-o json``): the first call, as a run pays it, and the median of ``count`` more.
    ``table`` is left out: it is rendered by the CLI's own code."""
    from atomicscan.plugins import Plugins  # only here: loading the plugins is not free

    doc = json.loads(json_path.read_text(encoding="utf-8"))
    report = Report(run_id=doc["run_id"], scanner=doc["scanner"], scan_type=doc["scan_type"],
                    started_at=doc["started_at"], finished_at=doc["finished_at"],
                    results_dir=None,
                    results=tuple(ScanResult.from_json(r) for r in doc["results"]))
    registry = Plugins.load(entry_points=False).formats
    costs = {}
    for name in scan.formats:
        if name == "table":
            continue
        found = registry.get(name)
        call: Callable[[], object]
        if name == "json":
            call = functools.partial(write_json, report)
        elif found is not None and found.write_run is not None:
            call = functools.partial(found.write_run, report)
        elif found is not None and found.write_target is not None:
            call = functools.partial(_each_target, found.write_target, report)
        else:
            raise BenchError(f"no writer for format {name}")
        elapsed = stopwatch()
        call()
        first = elapsed()
        later = Samples()
        for _ in range(count):
            elapsed = stopwatch()
            call()
            later.add(elapsed())
        costs[name] = (first, later.median)
    return costs


def ratios(times: ScanTimes, pair: Pair) -> tuple[float, list[float]]:
    """All formats over json only: of the medians, and per repetition."""
    json_only, every = times.samples[pair.json_only], times.samples[pair.all_formats]
    per_rep = [b / a for a, b in zip(json_only.values, every.values, strict=True)]
    return every.median / json_only.median, per_rep


# --------------------------------------------------------------------------- synthetic report


@functools.cache
def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


LOREM = ("The configuration allows more than the baseline permits; an attacker with a foothold "
         "in the container can use it to read or change data of other users, or to raise "
         "their privileges. Review the setting against the organisation's policy, and rebuild "
         "the image without it where the application does not need it. ")


def _configlint_findings(count: int, target: int) -> tuple[Finding, ...]:
    """Findings with paths, made by configlint's own ``Finding`` and read back."""
    configlint = _load("configlint_for_bench", CONFIGLINT)
    shapes: list[tuple[str, str, dict[str, object]]] = [
        ("CL-WORLD-WRITABLE", "is writable by everyone", {"type": "file", "mode": "0666"}),
        ("CL-SETUID", "is setuid root", {"type": "file", "mode": "4755"}),
        ("CL-CREDENTIAL-FILE", "holds credentials", {"kind": "netrc"}),
        ("CL-PRIVATE-KEY", "holds a private key", {"key_type": "RSA"}),
        ("CL-PKG-CACHE", "is a package manager cache", {"size": 1048576})]
    made = []
    for index in range(count):
        check_id, what, details = shapes[index % len(shapes)]
        path = f"/srv/app{target}/data/d{index // 40:03d}/file-{index}.conf"
        extra = {**details, "line": 1 + index % 200} if index % 3 == 0 else dict(details)
        made.append(configlint.Finding(configlint.CHECKS[check_id], f"File {path} {what}.",
                                       path, None, extra).to_json())
    return findings_of({"Results": made})


def _xccdf_findings(count: int) -> tuple[Finding, ...]:
    """Failed XCCDF rules as the OpenSCAP wrapper writes them."""
    severities = ("low", "medium", "high", "unknown")
    results = [{
        "ID": f"xccdf_org.ssgproject.content_rule_bench_setting_{index:05d}",
        "Title": f"Ensure setting {index} is configured in /etc/bench/setting-{index}.conf",
        "Severity": severities[index % len(severities)],
        "Description": LOREM * (1 + index % 3),
        "Custom": {"result": "fail",
                   "profile": "xccdf_org.ssgproject.content_profile_standard"},
    } for index in range(count)]
    return findings_of({"Results": results})


def _packages(count: int) -> tuple[Package, ...]:
    return tuple(Package(
        name=f"libbench{index}", version=f"1.{index % 17}.{index % 5}-{1 + index % 3}",
        architecture="amd64", type="deb", source=f"bench{index // 4}",
        purl=(f"pkg:deb/debian/libbench{index}@1.{index % 17}.{index % 5}-{1 + index % 3}"
              "?arch=amd64&distro=debian-12"))
        for index in range(count))


def _cve_findings(count: int, packages: Sequence[Package], offset: int) -> tuple[Finding, ...]:
    """OVAL-style vulnerabilities with the package each is about (several CVEs a package)."""
    severities = ("critical", "high", "medium", "low", "unknown")
    vulnerabilities = []
    for index in range(count):
        number = offset + index
        package = packages[index % len(packages)]
        cve = f"CVE-{2019 + number % 6}-{10000 + number:05d}"
        vulnerabilities.append({
            "Title": f"{cve}: {package.name} before {package.version}+deb12u1",
            "Severity": severities[number % len(severities)],
            "Description": (f"A flaw in {package.name} lets a remote attacker cause a denial "
                            "of service or run code through a crafted input. " + LOREM)[:1000],
            "ID": cve,
            "Custom": {"cve_ids": [cve], "advisory_id": f"DSA-{5000 + number // 3}-1",
                       "definition_id": f"oval:org.debian:def:{1000000 + number}",
                       "package": package.purl, "installed_version": package.version,
                       "fixed_version": f"{package.version}+deb12u1"},
        })
    return findings_of({"Vulnerabilities": vulnerabilities})


def _result(target: str, scanner: str, scan_type: str, findings: tuple[Finding, ...],
            packages: tuple[Package, ...] | None = None) -> ScanResult:
    # One finding in a hundred suppressed, as an ignore file would.
    marked = tuple(dataclasses.replace(f, suppressed="accepted risk, ticket SEC-123")
                   if index % 100 == 0 else f for index, f in enumerate(findings))
    os_release = {"id": "debian", "version_id": "12", "name": "Debian GNU/Linux",
                  "pretty_name": "Debian GNU/Linux 12 (bookworm)"}
    return ScanResult(target=target, target_id=hashlib.sha256(target.encode()).hexdigest(),
                      target_type="image", runtime="podman", scanner=scanner,
                      scan_type=scan_type, successful=True,
                      started_at="2026-12-01T12:00:00.000Z",
                      finished_at="2026-12-01T12:00:05.000Z", findings=marked,
                      os=os_release, packages=packages)


def synthetic_report(total: int) -> Report:
    """``total`` findings: a quarter each in two configlint targets, a tenth of OpenSCAP
    rules, a fifth of CVEs in each of two images with 400 packages."""
    shares = [total // 4, total // 4, total // 10, total // 5]
    shares.append(total - sum(shares))
    packages = _packages(400)
    results = (
        _result("registry.example/shop/web:2.4", "configlint", "lint",
                _configlint_findings(shares[0], 1)),
        _result("registry.example/shop/worker:2.4", "configlint", "lint",
                _configlint_findings(shares[1], 2)),
        _result("registry.example/shop/db:15", "openscap", "xccdf",
                _xccdf_findings(shares[2])),
        _result("registry.example/shop/api:7.1", "openscap", "cve",
                _cve_findings(shares[3], packages, 0), packages),
        _result("registry.example/shop/batch:7.1", "openscap", "cve",
                _cve_findings(shares[4], packages[::2], shares[3] // 2), packages[::2]),
    )
    return Report(run_id="2026-12-01-12-00-00-000000", scanner="bench", scan_type="mixed",
                  started_at="2026-12-01T12:00:00.000Z",
                  finished_at="2026-12-01T12:00:06.000Z", results_dir=None, results=results)


def write_json(report: Report) -> bytes:
    """What ``-o json`` writes (``atomicscan.outputs``)."""
    return (json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n").encode()


WRITERS: dict[str, Callable[[Report], bytes]] = {
    "json": write_json, "sarif": write_sarif, "html": write_html}


@dataclass
class Generation:
    samples: dict[str, Samples] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    build_seconds: float = 0.0


def check_sarif(data: bytes, report: Report) -> None:
    runs = json.loads(data)["runs"]
    found = sum(len(one["results"]) for one in runs)
    wanted = sum(len(result.findings) for result in report.results)
    if found != wanted:
        raise BenchError(f"SARIF has {found} results for {wanted} findings")


def measure_generation(count: int, findings: int) -> Generation:
    generation = Generation()
    elapsed = stopwatch()
    report = synthetic_report(findings)
    generation.build_seconds = elapsed()
    for name, writer in WRITERS.items():  # warm-up: imports, the template's compilation
        generation.sizes[name] = len(writer(report))
    check_sarif(write_sarif(report), report)
    for repetition in range(count):
        log(f"generation: repetition {repetition + 1} of {count}")
        for name in rotated(list(WRITERS), repetition):
            gc.collect()
            elapsed = stopwatch()
            WRITERS[name](report)
            generation.samples.setdefault(name, Samples()).add(elapsed())
    for name in WRITERS:
        for measure in ("heap", "rss"):
            done = run([sys.executable, Path(__file__), "--child", name, "--measure", measure,
                        "--findings", str(findings)], capture=True)
            generation.memory.setdefault(name, {}).update(json.loads(done.stdout))
    return generation


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field_name} in /proc/self/status")


def child_memory(name: str, findings: int, measure: str) -> dict[str, int]:
    """Peak memory of one writer in a fresh process, as a run pays it: the first call, so the
    HTML template's compilation is in it.

    ``heap``: tracemalloc's peak over the call, the Python objects the writer holds at once
    on top of the report it is given. ``rss``: the process's peak resident set over the
    call, what the OS sees (the allocator's arenas too): the high-water mark is reset just
    before the call (``/proc/self/clear_refs``), and VmHWM is read after it. Not ru_maxrss:
    Linux carries it over from the parent across fork and exec, so a child of this script
    would report the parent's peak. Each is measured in a process of its own, because
    tracemalloc's bookkeeping would inflate the resident set."""
    report = synthetic_report(findings)
    gc.collect()
    if measure == "heap":
        tracemalloc.start()
        WRITERS[name](report)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return {"heap_peak": peak}
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    WRITERS[name](report)
    return {"rss_before_kib": before, "rss_peak_kib": _status_kib("VmHWM")}


# --------------------------------------------------------------------------- output


def mib(value: float) -> str:
    return f"{value / 1024 / 1024:.1f} MiB"


def size(value: int) -> str:
    if value < 1024:
        return f"{value} B"
    return f"{value / 1024:.0f} KiB" if value < 1024 * 1024 else mib(value)


def machine_facts(started: dt.datetime) -> list[list[str]]:
    revision = first_line(run, ["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                capture=True, check=False).stdout.strip()
    return [
        ["date (UTC)", started.strftime("%Y-%m-%d %H:%M")],
        ["atomicscan", f"{revision}{' (with uncommitted changes)' if dirty else ''}"],
        ["CPU", f"{cpu_model()}, {os.cpu_count()} cores"],
        ["memory", memory_total()],
        ["kernel", platform.release()],
        ["Python", platform.python_version()],
        ["podman", first_line(run, ["podman", "--version"])],
        ["load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())],
    ]


def scan_tables(times: ScanTimes, count: int) -> str:
    rows = []
    for pair in PAIRS:
        for scan in (pair.json_only, pair.all_formats):
            samples = times.samples[scan]
            rows.append([scan.label, secs(samples.median), secs(samples.low),
                         secs(samples.high)])
    parts = [f"#### Real scans (seconds; median, min, max of {count}, interleaved)",
             render_table(["command", "median", "min", "max"], rows, True), ""]
    verdicts = []
    for pair in PAIRS:
        ratio, per_rep = ratios(times, pair)
        verdicts.append([f"{pair.all_formats.scanner}: all formats / json only",
                         f"{ratio:.2f}x (+{(ratio - 1) * 100:.0f} %)",
                         ", ".join(f"{r:.2f}" for r in per_rep),
                         f"< {ALL_FORMATS_TARGET:.2f}x: "
                         f"{'met' if ratio < ALL_FORMATS_TARGET else 'missed'}"])
    parts += ["#### Against the target (ratio of medians)",
              render_table(["pair", "ratio", "per repetition", "target"], verdicts, True), ""]
    size_rows = [[pair.all_formats.scanner,
                  *(size(times.sizes[pair.all_formats].get(name, 0))
                    if name in pair.all_formats.formats else "—" for name in SUFFIX)]
                 for pair in PAIRS]
    for pair in PAIRS:
        costs = times.writers[pair]
        cost_rows = [[name, f"{first * 1000:.1f}", f"{later * 1000:.1f}"]
                     for name, (first, later) in costs.items()]
        extra = [cost for name, cost in costs.items() if name != "json"]
        cost_rows.append(["all but json", f"{sum(f for f, _ in extra) * 1000:.1f}",
                          f"{sum(m for _, m in extra) * 1000:.1f}"])
        parts += [f"#### {pair.all_formats.scanner}: each writer in-process on the run's own "
                  "report (milliseconds)",
                  render_table(["format", "first call", f"median of {count} more"], cost_rows,
                               True), ""]
    parts += ["#### Files written by the all-formats runs",
              render_table(["scanner", *SUFFIX], size_rows, True), ""]
    return "\n".join(parts)


def generation_table(generation: Generation, count: int, findings: int) -> str:
    rows = []
    for name in WRITERS:
        samples, memory = generation.samples[name], generation.memory[name]
        rows.append([name, secs(samples.median), secs(samples.low), secs(samples.high),
                     mib(memory["heap_peak"]),
                     f"+{(memory['rss_peak_kib'] - memory['rss_before_kib']) / 1024:.1f} MiB "
                     f"(peak {memory['rss_peak_kib'] / 1024:.0f} MiB)",
                     size(generation.sizes[name])])
    return "\n".join([
        f"#### Generation of a {findings:,}-finding report, in-process (seconds; median, min, "
        f"max of {count}, interleaved, after a warm-up)",
        render_table(["format", "median", "min", "max", "peak heap (tracemalloc)",
                      "peak RSS over the call (VmHWM)", "size"], rows, True),
        "",
        f"Building the synthetic report took {generation.build_seconds:.2f} s (not counted).",
        ""])


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=7,
                        help="repetitions of each real scan and each generation (default 7)")
    parser.add_argument("--findings", type=int, default=10_000,
                        help="findings in the synthetic report (default 10000)")
    parser.add_argument("--skip-scans", action="store_true",
                        help="only the synthetic generation (no podman, no root)")
    parser.add_argument("--child", choices=sorted(WRITERS), help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=("heap", "rss"), default="heap",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count < 1 or args.findings < 10:
        parser.error("--count must be at least 1 and --findings at least 10")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child_memory(args.child, args.findings, args.measure)))
        return 0
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = dt.datetime.now(dt.UTC)
    elapsed = stopwatch()
    facts = machine_facts(started)
    keeper = MountKeeper(Path(tempfile.mkdtemp(prefix="bench-reports-", dir="/var/tmp")), run)
    problems: list[str] = []
    try:
        times = None if args.skip_scans else measure_scans(args.count, keeper)
        generation = measure_generation(args.count, args.findings)
    except (BenchError, KeyboardInterrupt, Terminated) as exc:
        log(f"stopped: {exc or type(exc).__name__}")
        return 1
    finally:
        problems = keeper.release_workdir()
        for problem in problems:
            log(problem)
    facts += [["load average at end", " ".join(f"{x:.2f}" for x in os.getloadavg())],
              ["benchmark wall time", f"{elapsed() / 60:.1f} min"]]
    print(render_table(["machine", "value"], facts, True) + "\n")
    if times is not None:
        print(scan_tables(times, args.count))
    print(generation_table(generation, args.count, args.findings))
    print(f"Left behind: {'; '.join(problems) if problems else 'nothing'}.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
