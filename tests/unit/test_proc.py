"""The one module that runs commands (fast tier: real local processes, no runtime)."""

from __future__ import annotations

import sys

import pytest

from atomicscan import proc
from atomicscan.errors import CommandError


def test_run_captures_and_raises_with_the_last_stderr_line() -> None:
    assert proc.run(["printf", "hi"]).stdout == "hi"
    with pytest.raises(CommandError) as caught:
        proc.run(["sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 4"])
    assert caught.value.returncode == 4
    assert str(caught.value).endswith("exited 4: the reason")


def test_missing_binary_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="command not found"):
        proc.run(["/nonexistent/atomicscan-nothing"])


def test_flood_keeps_only_a_bounded_tail() -> None:
    flood = "import sys; sys.stdout.write('x' * 5_000_000 + 'END'); sys.stderr.write('e' * 10)"
    done = proc.run_bounded([sys.executable, "-c", flood], output_limit=1000)
    assert done.ok
    assert done.stdout.endswith("END")
    assert "bytes dropped" in done.stdout
    assert len(done.stdout) < 1100


def test_timeout_kills_the_process_group() -> None:
    done = proc.run_bounded(["sh", "-c", "sleep 30 & sleep 30"], timeout=0.5)
    assert done.timed_out and not done.ok
