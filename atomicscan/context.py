"""What a result plugin may need besides the result: its target, the runtime holding it, and
what the user asked the run for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from atomicscan.runtime import Runtime, Target


def _quiet(message: str) -> None:
    del message


@dataclass(frozen=True)
class ResultContext:
    """The run around one result, passed to ``atomicscan_process_result`` as ``context``.

    ``target`` and ``runtime`` are ``None`` when the run has no target object for the
    result (a plugin calling the hook by hand); ``runtime`` is also ``None`` for
    ``--rootfs`` targets, which no runtime holds.
    """

    target: Target | None = None
    runtime: Runtime | None = None
    scanner_args: Mapping[str, str] = field(default_factory=dict)
    """``--scanner-args`` as the scanner got them."""
    remediate: bool = False
    """``--remediate`` was given (and the scanner was allowed to write a fix script)."""
    progress: Callable[[str], None] = _quiet
    """Tell the user about long work (one line, shown on the terminal)."""


@dataclass(frozen=True)
class RunContext:
    """The run around a finished report, passed to ``atomicscan_run_finished``."""

    options: Mapping[str, str] = field(default_factory=dict)
    """Plugin options from the command line, by ``plugin.option`` name: ``--db URL`` is
    ``history.db``."""
    progress: Callable[[str], None] = _quiet
    """Tell the user about long work (one line, shown on the terminal)."""
