"""The command line: parse, call the library, print, and map errors to exit codes."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar, NoReturn

import click
from rich.text import Text

from atomicscan import __version__
from atomicscan.errors import AtomicscanError, ExitCode, Interrupted
from atomicscan.gate import FAIL_ON_CHOICES
from atomicscan.progress import LiveProgress
from atomicscan.safetext import console, printable, setup_logging

EXIT_CODES_HELP = """\b
Exit codes:
  0    every scan succeeded
  1    a scan failed, a document or the history record could not be written, or a
       runtime error stopped the run
  2    usage error: a wrong flag, an unknown scanner, a target not found
  3    the policy gate tripped: a finding at or above --fail-on that is not suppressed
       (a failed scan wins: it exits 1)
  130  interrupted (Ctrl-C or SIGTERM), after cleaning up
"""

SCAN_EPILOG = f"""\b
Examples:
  atomicscan --scanner packages docker.io/library/debian:bookworm-slim
  atomicscan --scanner packages --json mycontainer > report.json
  atomicscan --scanner packages --rootfs /srv/chroots/web
  atomicscan --scanner packages -o cyclonedx-json=sbom.cdx.json -o spdx-json=sbom.spdx.json IMAGE
  atomicscan --scanner configlint -o table -o sarif=lint.sarif --fail-on high IMAGE
  atomicscan --scanner openscap --ignore-file ignore.toml -o html=report.html IMAGE
  atomicscan --list

\b
Other commands:
  atomicscan doctor     check podman, the scanner images and this host (as a user:
                        uidmap, subordinate IDs, the runtime directory, storage)
  atomicscan cleanup    remove what killed runs left behind (mounts, containers)
  atomicscan plugins    list loaded plugins, their versions and hooks
  atomicscan history    what earlier runs found: packages, findings, diffs over time

{EXIT_CODES_HELP}"""

stderr = console(stderr=True)

#: The built-in plugin that records runs; ``--no-history`` blocks it for one run.
HISTORY_PLUGIN = "atomicscan.builtin.history"


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A finite number of seconds above zero (``nan``, ``inf``, 0 and negatives refused)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise click.BadParameter(f"{printable(value)!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise click.BadParameter(f"{printable(value)!r} is not a number of seconds above 0")
    return seconds


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _byte_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``512m``, ``2g``, ``1048576``: a size in bytes, binary units, at least 16 MiB."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d{1,15})([kmg]?)i?b?", value.strip().lower())
    if match is None:
        raise click.BadParameter(f"{printable(value)!r} is not a size like 512m or 2g")
    size = int(match.group(1)) * _UNITS[match.group(2)]
    if size < 16 << 20:
        raise click.BadParameter(f"{printable(value)!r} is below the 16m a scanner needs")
    return size


class _OutputOption(click.Option):
    """``-o``, whose help lists the formats the loaded plugins add (only when help is shown:
    loading plugins is not free)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from atomicscan.outputs import format_names
        from atomicscan.plugins import Plugins

        record = super().get_help_record(ctx)
        if record is None:
            return None
        names = ", ".join(format_names(Plugins.load().formats))
        return record[0], f"{record[1]} Formats: {names}."


class _DefaultToScan(click.Group):
    """``atomicscan [OPTIONS] TARGET...`` means ``atomicscan scan ...``, like atomic scan.

    Command groups with heavy imports (the history's database libraries) are imported only
    when they are run, so ``atomicscan --version`` and scans don't pay for them.
    """

    lazy: ClassVar[dict[str, tuple[str, str]]] = {"history": ("atomicscan.cli_history", "history")}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args[:1] != ["--version"] and (
                not args or (args[0] not in self.commands and args[0] not in self.lazy)):
            args = ["scan", *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            import importlib

            module, name = self.lazy[cmd_name]
            command = getattr(importlib.import_module(module), name)
            if isinstance(command, click.Command):
                self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_DefaultToScan, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atomicscan")
def cli() -> None:
    """Scan container images and containers from the host."""


def _setup_logging(verbose: bool, debug: bool) -> None:
    setup_logging(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)


@cli.command(epilog=SCAN_EPILOG, context_settings={"max_content_width": 100})
@click.argument("targets", nargs=-1, metavar="TARGET...")
@click.option("--runtime", metavar="podman|docker|containerd|all", default=None,
              help="Container runtime that holds the targets and runs the scanner "
                   "[default: the runtime that holds each target; with --all, every usable "
                   "runtime].")
@click.option("--images", "all_images", is_flag=True,
              help="Scan every image (no dangling or intermediate ones).")
@click.option("--containers", "all_containers", is_flag=True,
              help="Scan every container, running and stopped.")
@click.option("--all", "everything", is_flag=True, help="Both --images and --containers.")
@click.option("--include-dangling", is_flag=True, help="With --images: dangling images too.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), metavar="N",
              help="Batches scanned at once [default: twice the cores, 2 to 8].")
@click.option("--batch-size", type=click.IntRange(min=1), metavar="N",
              help="Targets per scanner container [default: 8, more on a run of over "
                   "32 targets per job, up to 64].")
@click.option("--no-cache", is_flag=True,
              help="Rescan images even when an identical scan's result is cached.")
@click.option("--keep", type=click.IntRange(min=1), metavar="N",
              help="Keep the N newest result runs of this scanner [default: 100].")
@click.option("--max-age", type=click.FloatRange(min=0), metavar="DAYS",
              help="Also delete result runs older than DAYS.")
@click.option("--scanner", metavar="NAME", help="Scanner to run (see --list).")
@click.option("--scan-type", "--scan_type", metavar="TYPE",
              help="Scan type of that scanner [default: the scanner's default].")
@click.option("--scanner-args", "--scanner_args", metavar="K=V,...",
              help="Arguments for the scanner, e.g. profile=standard.")
@click.option("--rootfs", type=click.Path(path_type=Path), multiple=True, metavar="PATH",
              help="Scan a directory tree instead of an image or container (repeatable).")
@click.option("--allow-host-rootfs", is_flag=True,
              help="Allow --rootfs / (the host's own root, secrets included); refused "
                   "without it.")
@click.option("--allow-rlimits-only", is_flag=True,
              help="As a user on a host that doesn't delegate cgroup v2 memory and pids "
                   "controllers to you (see atomicscan doctor), scan anyway with per-process "
                   "rlimits only; refused without it.")
@click.option("--output-dir", "--output_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Base directory for results [default: /var/lib/atomicscan; for a user, "
                   "$XDG_DATA_HOME/atomicscan]; results go to DIR/<scanner>/<timestamp>/.")
@click.option("--timeout", callback=_seconds, metavar="SECONDS",
              help="Kill a scanner container that runs longer than this; the targets of its "
                   "batch fail [default: 1800].")
@click.option("--memory", "memory", callback=_byte_size, metavar="SIZE",
              help="Memory limit of each scanner container, e.g. 512m, 4g [default: 2g].")
@click.option("--remediate", is_flag=True,
              help="After a compliance scan, build IMAGE:TAG-remediated with the scanner's "
                   "fixes applied (images only, offline; the original is left untouched). "
                   "The scanner's remediation.sh runs AS ROOT in that build and its result is "
                   "the new image: built-in scanners only, unless --trust-scanner names it.")
@click.option("--trust-scanner", "trusted", multiple=True, metavar="NAME",
              help="Let --remediate run the fix script of scanner NAME, which is not built "
                   "in (repeatable).")
@click.option("--json", "as_json", is_flag=True,
              help="Print exactly one JSON document on stdout; messages go to stderr "
                   "(the same as -o json).")
@click.option("-o", "--output", "outputs", multiple=True, metavar="FORMAT[=PATH]",
              cls=_OutputOption,
              help="Write the results as FORMAT, to PATH or else to stdout (repeatable; one "
                   "format at most on stdout) [default: table]. A per-target format (an SBOM) "
                   "with several targets writes one file per target, into PATH as a folder "
                   "or else into the run's results directory.")
@click.option("--fail-on", type=click.Choice(FAIL_ON_CHOICES, case_sensitive=False),
              default="none", show_default=True,
              help="Exit 3 when a finding at or above this severity is not suppressed, "
                   "whatever is shown (info: any finding).")
@click.option("--ignore-file", type=click.Path(path_type=Path), metavar="PATH",
              help="TOML file of suppressed findings ([[ignore]] id, reason, optional target, "
                   "package, path, expires) [default: $ATOMICSCAN_IGNORE_FILE, else "
                   "/etc/atomicscan/ignore.toml if it exists].")
@click.option("--severity", "severities", metavar="LIST",
              help="Show only findings of these severities in the table, e.g. "
                   "critical,high (never changes --fail-on).")
@click.option("--db", "db_url", metavar="URL",
              help="Record the run in this history database (sqlite:///PATH or "
                   "postgresql://...) [default: $ATOMICSCAN_DB, else /etc/atomicscan/db-url, "
                   "else sqlite:////var/lib/atomicscan/history.db; for a user, "
                   "$ATOMICSCAN_DB, else $XDG_DATA_HOME/atomicscan/history.db].")
@click.option("--no-history", is_flag=True, help="Don't record this run in the history.")
@click.option("--list", "list_scanners", is_flag=True,
              help="List the installed scanners, output formats and runtimes, then exit.")
@click.option("-v", "--verbose", is_flag=True, help="Say what is happening, on stderr.")
@click.option("--debug", is_flag=True, help="Log every command run, and show tracebacks.")
def scan(targets: tuple[str, ...], runtime: str | None, all_images: bool,
         all_containers: bool, everything: bool, include_dangling: bool, jobs: int | None,
         batch_size: int | None, no_cache: bool, keep: int | None, max_age: float | None,
         scanner: str | None,
         scan_type: str | None, scanner_args: str | None, rootfs: tuple[Path, ...],
         allow_host_rootfs: bool, allow_rlimits_only: bool, output_dir: Path | None,
         timeout: float | None,
         memory: int | None, remediate: bool, trusted: tuple[str, ...], as_json: bool,
         outputs: tuple[str, ...], fail_on: str, ignore_file: Path | None,
         severities: str | None, db_url: str | None, no_history: bool, list_scanners: bool,
         verbose: bool, debug: bool) -> None:
    """Scan images or containers (TARGET: name, name:tag or ID) with a scanner.

    Each target's root filesystem is mounted read-only on the host and handed to an
    unprivileged, network-less scanner container at /scanin; its results are read from
    /scanout, checked, merged and kept in the results directory. A TARGET is looked up
    as a container first, then as an image. Nothing is ever pulled.
    """
    _setup_logging(verbose, debug)
    from atomicscan.plugins import Plugins
    from atomicscan.scan import ScanRequest, ScanRun, parse_scanner_args

    plugins = Plugins.load(block=[HISTORY_PLUGIN] if no_history else [])
    if list_scanners:
        _list(plugins, as_json)
        return
    _join_rootless(plugins, runtime, output_dir)
    wanted = _output_requests(plugins, outputs, as_json)
    shown = _severities(severities)
    request = ScanRequest(
        targets=targets, rootfs=rootfs, scanner=scanner, scan_type=scan_type,
        scanner_args=parse_scanner_args(scanner_args), runtime=runtime,
        output_dir=output_dir, timeout=timeout, remediate=remediate,
        images=all_images or everything, containers=all_containers or everything,
        include_dangling=include_dangling, jobs=jobs, batch_size=batch_size,
        use_cache=not no_cache, keep=keep, max_age_days=max_age,
        allow_host_rootfs=allow_host_rootfs, allow_rlimits_only=allow_rlimits_only,
        trusted_scanners=trusted, memory_bytes=memory,
        ignores=_ignores(ignore_file),
        plugin_options={"history.db": db_url} if db_url else {},
    )
    quiet = any(w.path is None and w.format != "table" for w in wanted)
    display = LiveProgress(stderr) if _live(quiet) else None
    run = ScanRun(plugins, request, progress=_progress(verbose),
                  on_result=display.result if display else None,
                  on_total=display.total if display else None)
    started = time.monotonic()
    with display if display else contextlib.nullcontext():
        report = run.execute()
    from atomicscan import gate

    for entry in request.ignores.expired if request.ignores else ():
        stderr.print(printable(f"atomicscan: warning: expired, no longer suppressing: "
                               f"{entry.describe()}"), soft_wrap=True)
    tripped = gate.tripped(report, fail_on)
    if not _live(quiet) and (len(report.results) > 1 or request.images
                             or request.containers or fail_on != "none"):
        cached = sum(r.cached for r in report.results)
        policy = (f", {len(tripped)} finding(s) at or above {fail_on} (--fail-on)"
                  if fail_on != "none" else "")
        stderr.print(printable(
            f"atomicscan: {len(report.results)} target(s), {report.failed} failed, "
            f"{cached} cached{policy}, {time.monotonic() - started:.1f}s; "
            f"results in {report.results_dir}"),
            soft_wrap=True)
    output_failed = _write_outputs(plugins, report, wanted, shown)
    if not report.successful:
        # One line per failed target on stderr, so CI logs show why even with --json.
        for result in report.results:
            if not result.successful:
                stderr.print(printable(f"atomicscan: error: {result.target_type} "
                                       f"{result.target}: {result.error}"), soft_wrap=True)
    for failure in report.finish_errors:
        stderr.print(printable(f"atomicscan: error: {failure}"), soft_wrap=True)
    if report.write_error:
        _fail(report.write_error, ExitCode.SCAN_FAILED)
    if output_failed or report.finish_errors:
        raise SystemExit(ExitCode.SCAN_FAILED)
    if tripped and report.successful:
        stderr.print(printable(f"atomicscan: policy: {len(tripped)} finding(s) at or above "
                               f"{fail_on} are not suppressed (exit 3)"), soft_wrap=True)
    raise SystemExit(gate.exit_code(report, fail_on))


def _list(plugins: Any, as_json: bool) -> None:
    from atomicscan.outputs import CORE_FORMATS
    from atomicscan.render import scanners_table

    runtimes = plugins.runtimes.usable()
    formats = {**CORE_FORMATS, **{f.name: f.description for f in plugins.formats}}
    if as_json:
        click.echo(json.dumps({
            "scanners": [_scanner_json(s) for s in plugins.scanners],
            "formats": [{"name": name, "description": formats[name]}
                        for name in sorted(formats)],
            "runtimes": [{"name": name, "usable": why is None, "reason": why}
                         for name, why in runtimes.items()],
        }, indent=2))
        return
    out = console()
    out.print(scanners_table(plugins.scanners))
    for name in sorted(formats):
        out.print(printable(f"output format {name}: {formats[name]}"))
    for name, why in runtimes.items():
        out.print(printable(f"runtime {name}: {'usable' if why is None else why}"))


def _output_requests(plugins: Any, outputs: Sequence[str], as_json: bool) -> list[Any]:
    from atomicscan.outputs import OutputRequest, check_requests, is_stdout

    wanted = [OutputRequest.parse(spec) for spec in outputs]
    if as_json:
        wanted.append(OutputRequest("json"))
    if not any(w.path is None or is_stdout(w.path) for w in wanted):
        wanted.append(OutputRequest("table"))  # a person at the terminal sees the results
    check_requests(wanted, plugins.formats)
    return wanted


def _severities(text: str | None) -> tuple[str, ...] | None:
    from atomicscan.render import SEVERITY_ORDER

    if text is None:
        return None
    chosen = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = [part for part in chosen if part not in SEVERITY_ORDER]
    if unknown or not chosen:
        raise click.BadParameter(f"--severity: give some of {','.join(SEVERITY_ORDER)}")
    return chosen


def _ignores(path: Path | None) -> Any:
    import datetime

    from atomicscan.suppress import load_ignores

    return load_ignores(path, today=datetime.datetime.now(tz=datetime.UTC).date())


def _write_outputs(plugins: Any, report: Any, wanted: Sequence[Any],
                   shown: tuple[str, ...] | None) -> bool:
    """Every requested document; returns whether one could not be written."""
    import io

    from atomicscan.outputs import OutputWriter
    from atomicscan.render import print_report

    def table(rendered: Any) -> bytes:
        buffer = io.StringIO()
        print_report(console(file=buffer), rendered, plugins.describe_result, severities=shown)
        return buffer.getvalue().encode()

    failed = False
    for written in OutputWriter(plugins.formats, table).write(report, wanted):
        if written.stdout is not None and written.format == "table":
            print_report(console(), report, plugins.describe_result, severities=shown)
        elif written.stdout is not None:
            try:
                sys.stdout.flush()
                parts = [written.stdout] if isinstance(written.stdout, bytes) \
                    else written.stdout
                for part in parts:
                    sys.stdout.buffer.write(part)
                sys.stdout.buffer.flush()
            except BrokenPipeError:
                # The reader is gone (`| head`): say so once, and write nothing more there.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                failed = True
                stderr.print(f"atomicscan: error: -o {written.format}: stdout was closed "
                             "before the document was written", soft_wrap=True)
        for path in written.files:
            stderr.print(printable(f"atomicscan: wrote {written.format} to {path}"),
                         soft_wrap=True)
        for error in written.errors:
            failed = True
            stderr.print(printable(f"atomicscan: error: {error}"), soft_wrap=True)
    return failed


def _scanner_json(scanner: Any) -> dict[str, Any]:
    return {
        "name": scanner.name,
        "image": scanner.image,
        "description": scanner.description,
        "default_scan": scanner.default_scan,
        "scan_types": [{"name": t.name, "description": t.description,
                        "default": t.name == scanner.default_scan}
                       for t in scanner.scan_types.values()],
        "capabilities": list(scanner.capabilities),
        "origin": scanner.origin,
    }


def _live(quiet: bool) -> bool:
    """Live progress on stderr: on a terminal, unless stdout carries a document."""
    return not quiet and stderr.is_terminal


def _progress(verbose: bool) -> Any:
    def report(message: str) -> None:
        if verbose:
            stderr.print(printable(f"atomicscan: {message}"), soft_wrap=True)
    return report


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("-v", "--verbose", is_flag=True)
@click.option("--debug", is_flag=True)
def doctor(as_json: bool, verbose: bool, debug: bool) -> None:
    """Check that this host can scan: runtimes, scanner images, permissions."""
    _setup_logging(verbose, debug)
    from atomicscan.doctor import run_checks
    from atomicscan.plugins import Plugins

    checks = run_checks(Plugins.load())
    if as_json:
        click.echo(json.dumps([c.to_json() for c in checks], indent=2))
    else:
        out = console()
        for check in checks:
            mark = (("warn", "yellow") if check.warn else ("ok  ", "green")) if check.ok \
                else ("FAIL", "red")
            out.print(Text.assemble(mark, printable(f" {check.name}: {check.detail}")))
            if check.fix and (check.warn or not check.ok):
                out.print(printable(f"      fix: {check.fix}"))
    if not all(check.ok for check in checks):
        raise SystemExit(ExitCode.SCAN_FAILED)


@cli.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the plugins as JSON.")
def plugins_command(as_json: bool) -> None:
    """List the loaded plugins (built-in and third-party), their versions and hooks.

    Set ATOMICSCAN_BLOCK_PLUGINS=name,... to keep named plugins from loading.
    """
    from atomicscan.plugins import Plugins

    plugins = Plugins.load()
    _ = plugins.scanners, plugins.runtimes  # run the collecting hooks: errors show below
    infos = plugins.info()
    if as_json:
        click.echo(json.dumps({
            "plugins": [{"name": i.name, "version": i.version, "hooks": list(i.hooks)}
                        for i in infos],
            "errors": plugins.errors,
        }, indent=2))
        return
    out = console()
    for info in infos:
        version = f" {info.version}" if info.version else ""
        out.print(printable(f"{info.name}{version}: {', '.join(info.hooks)}"))
    for error in plugins.errors:
        stderr.print(printable(f"atomicscan: warning: {error}"))


@cli.command(name="cleanup")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@click.option("-v", "--verbose", is_flag=True)
@click.option("--debug", is_flag=True)
def cleanup_command(as_json: bool, verbose: bool, debug: bool) -> None:
    """Remove mounts, scanner containers and state left by atomicscan runs that were killed.

    Runs that are still alive are never touched.
    """
    _setup_logging(verbose, debug)
    from atomicscan.cleanup import clean_stale
    from atomicscan.mounts import require_root
    from atomicscan.plugins import Plugins

    plugins = Plugins.load()
    _join_rootless(plugins, None, None)
    require_root()
    report = clean_stale(plugins.runtimes, always_containers=True)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    elif report.empty:
        stderr.print("nothing to clean up")
    else:
        for kind, items in report.to_json().items():
            for item in items:
                stderr.print(printable(f"removed {kind[:-1]} {item}"))


def _join_rootless(plugins: Any, runtime: str | None, output_dir: Path | None) -> None:
    """As a user, move into podman's user and mount namespaces, where that user's images
    and containers can be mounted (see atomicscan.rootless); as root, do nothing. A runtime
    chosen by name that can't serve a user says why, in its own words. The results and
    cache directories are judged first, while other users' files still show their owners."""
    from atomicscan import cache, resultsdir, rootless
    from atomicscan.errors import RuntimeUnavailableError

    if not rootless.needs_join():
        return
    if runtime is not None:
        chosen = plugins.runtimes.get(runtime)
        if not chosen.rootless:
            chosen.check()
            raise RuntimeUnavailableError(f"{runtime}: atomicscan needs root to scan with it")
    results = resultsdir.results_root(output_dir)
    resultsdir.check_chain(results)
    resultsdir.check_chain(cache.cache_dir(results))
    rootless.join_podman_namespace()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # First signal: unwind (every mount's context manager runs). Later ones are ignored,
    # so a second Ctrl-C can't cut the cleanup short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted


def _fail(message: str, code: int) -> NoReturn:
    stderr.print(printable(f"atomicscan: error: {message}"), soft_wrap=True)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    # Every command's warnings (a bad definition file's name) are escaped, one line each.
    setup_logging(logging.WARNING)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        cli.main(args=args, prog_name="atomicscan", standalone_mode=False)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.UsageError as exc:
        _fail(f"{exc.format_message()} (see atomicscan --help)", ExitCode.USAGE)
    except click.ClickException as exc:
        _fail(exc.format_message(), ExitCode.USAGE)
    except (KeyboardInterrupt, Interrupted, click.exceptions.Abort):
        _fail("interrupted; mounts and containers were cleaned up", ExitCode.INTERRUPTED)
    except AtomicscanError as exc:
        if debug:
            traceback.print_exc()
        _fail(exc.message, exc.exit_code)
    except OSError as exc:
        if debug or exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EPIPE):
            raise
        # A full or read-only disk is the host's state, not a bug: one line, no traceback.
        _fail(f"cannot write {exc.filename or 'results'}: {exc.strerror}", ExitCode.SCAN_FAILED)
    except Exception as exc:
        if debug:
            raise
        _fail(f"internal error: {exc.__class__.__name__}: {exc} (rerun with --debug for the "
              "traceback)", ExitCode.SCAN_FAILED)
