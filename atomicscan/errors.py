"""Exit codes and the exceptions that carry a message meant for the user."""

from __future__ import annotations

import enum
from collections.abc import Sequence


class ExitCode(enum.IntEnum):
    """What `atomicscan` returns; CI jobs gate on these."""

    OK = 0
    """Every scan ran and succeeded."""
    SCAN_FAILED = 1
    """At least one scan failed, or a runtime error stopped the run."""
    USAGE = 2
    """Bad input: a wrong flag, an unknown scanner, a target that is not found."""
    POLICY = 3
    """The --fail-on gate tripped: a finding at or above it is not suppressed."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C or SIGTERM, after cleaning up."""


class AtomicscanError(Exception):
    """An error whose message is written for the user: printed as one line, no traceback."""

    exit_code: ExitCode = ExitCode.SCAN_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(AtomicscanError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = ExitCode.USAGE


class UnknownScannerError(UsageError):
    """No scanner, or no scan type, of that name is installed."""


class DuplicateScannerError(AtomicscanError):
    """Two plugins or definition files registered the same scanner name."""


class TargetNotFoundError(UsageError):
    """No container and no image matches what the user typed."""

    def __init__(self, target: str, message: str) -> None:
        super().__init__(message)
        self.target = target


class AmbiguousTargetError(UsageError):
    """What the user typed matches more than one container or image."""

    def __init__(self, target: str, candidates: Sequence[str], message: str) -> None:
        super().__init__(message)
        self.target = target
        self.candidates = tuple(candidates)


class RuntimeUnavailableError(AtomicscanError):
    """The container runtime cannot be used (binary missing, not working, no permission)."""


class CommandError(AtomicscanError):
    """An external command failed; keeps the argv, exit status and stderr for the log."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        last_line = next(
            (line.strip() for line in reversed(stderr.splitlines()) if line.strip()), ""
        )
        detail = f": {last_line}" if last_line else ""
        super().__init__(f"{self.argv[0]} {' '.join(self.argv[1:3])} exited {returncode}{detail}")


class ScannerImageMissingError(AtomicscanError):
    """The scanner's image is not in the runtime's storage; atomicscan never pulls."""


class MountError(AtomicscanError):
    """A target's root filesystem could not be presented read-only."""


class Interrupted(BaseException):
    """SIGTERM arrived; raised in the main thread so every context manager unwinds."""
