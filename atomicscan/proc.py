"""The one place that runs external commands: argv lists only, each logged exactly as run."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from atomicscan.errors import CommandError

log = logging.getLogger(__name__)

#: Commands that talk to a runtime should never hang the tool forever.
DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class Completed:
    """What a finished command left behind."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def _environment(extra: Mapping[str, str] | None) -> dict[str, str] | None:
    if not extra:
        return None
    env = dict(os.environ)
    env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    check: bool = True,
) -> Completed:
    """Run ``argv`` to completion and capture its output.

    With ``check`` a non-zero exit raises :class:`CommandError`, whose message names the
    command and the last line of its stderr.
    """
    argv = tuple(argv)
    log.debug("run: %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            argv,
            input=input_text,
            capture_output=True,
            text=True,
            env=_environment(env),
            timeout=timeout,
            check=False,
            # Ctrl-C goes to our process group; children are stopped by us, in order.
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise CommandError(argv, 127, f"{argv[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, -1, f"timed out after {timeout:.0f}s") from exc
    done = Completed(argv, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr)
    return done


class _TailBuffer:
    """Keeps the last ``limit`` bytes of a stream, and how much was dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self) -> str:
        prefix = f"[{self.dropped} bytes dropped]\n" if self.dropped else ""
        return prefix + self.data.decode("utf-8", errors="replace")


def _drain(stream: IO[bytes], sink: _TailBuffer) -> None:
    for chunk in iter(lambda: stream.read(65536), b""):
        sink.feed(chunk)


class Cancelled(Exception):
    """The run was cancelled (Ctrl-C in the main thread) while this command ran."""


def run_bounded(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    output_limit: int = 256 * 1024,
    cancel: threading.Event | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Completed:
    """Run a possibly misbehaving command (a scanner): keep only the tail of its output.

    A flood on stdout or stderr costs at most ``output_limit`` bytes of memory each. On
    timeout the process group is killed and ``timed_out`` is set; an interrupt (Ctrl-C,
    SIGTERM) kills it too before propagating.
    """
    argv = tuple(argv)
    log.debug("run: %s", shlex.join(argv))
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_environment(env),
            start_new_session=True,
            cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise CommandError(argv, 127, f"{argv[0]}: command not found") from exc
    out, err = _TailBuffer(output_limit), _TailBuffer(output_limit)
    assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - set by PIPE
    readers = [
        threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    timed_out = False
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        # Poll, so a cancel from another thread stops the command within a fraction of a second.
        while proc.poll() is None:
            if cancel is not None and cancel.is_set():
                raise Cancelled(shlex.join(argv[:2]))  # noqa: TRY301 - the kill below must run
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                _kill_group(proc)
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
    except BaseException:
        _kill_group(proc)
        raise
    for reader in readers:
        reader.join(timeout=5)
    return Completed(argv, proc.returncode, out.text(), err.text(), timed_out=timed_out)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def first_line_while_running(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                             timeout: float = 60.0) -> Iterator[str]:
    """Start ``argv``, yield the first line it prints while it keeps running, then close its
    stdin and wait for it: for a helper that holds something (a namespace) open.

    No threads are started: a caller that changes its user namespace afterwards must still
    be single-threaded. A command that prints no line in ``timeout`` seconds, or exits
    without one, raises :class:`CommandError` with the last line of its stderr.
    """
    argv = tuple(argv)
    log.debug("run: %s", shlex.join(argv))
    with tempfile.TemporaryFile() as errors:
        try:
            child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=errors, env=_environment(env),
                                     start_new_session=True)
        except FileNotFoundError as exc:
            raise CommandError(argv, 127, f"{argv[0]}: command not found") from exc
        assert child.stdin is not None and child.stdout is not None  # noqa: S101 - PIPE
        try:
            ready, _, _ = select.select([child.stdout], [], [], timeout)
            line = child.stdout.readline(4096).decode("utf-8", "replace").strip() \
                if ready else ""
            if not line:
                _kill_group(child)
                errors.seek(0)
                raise CommandError(argv, child.returncode or -1,
                                   errors.read(65536).decode("utf-8", "replace")
                                   or f"no output within {timeout:.0f}s")
            yield line
        finally:
            with contextlib.suppress(OSError):
                child.stdin.close()
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(child)
            child.stdout.close()
