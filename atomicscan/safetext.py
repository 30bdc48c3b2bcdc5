"""Text from images, scanners and users made safe to print: one line, no terminal controls.

Every string printed to a terminal that did not come from atomicscan itself goes through
:func:`printable`. rich output is always built with markup off (see :func:`console`), so
``[/red]`` in an ``os-release`` is shown as typed instead of being interpreted.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import IO

from rich.console import Console

# C0 controls (newline and tab included: error lines stay one line), DEL, C1 controls,
# and the Unicode format characters that reorder or hide text on a terminal.
# Lone surrogates too: a byte typed on the command line that is not UTF-8 arrives as one,
# and would be written back out as that raw byte (0x9b is an 8-bit escape sequence).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff"
                     "\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char == "\n":
        return "\\n"
    if char == "\t":
        return "\\t"
    if char == "\r":
        return "\\r"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` with every control and invisible format character escaped, as ``\\x1b``."""
    return _UNSAFE.sub(_escape, str(text))


#: Columns of a console that is not a terminal: wide enough that no line is ever folded
#: (a log keeps a long path on one line), as no terminal width limits it.
UNWRAPPED_WIDTH = 100_000


def console(*, stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A rich console that never interprets markup, emoji codes or highlighting in strings.

    On a terminal it uses the terminal's width; elsewhere (a pipe, a log, a file) lines are
    never hard-wrapped.
    """
    stream = file if file is not None else sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", None)
    width = None if callable(isatty) and isatty() else UNWRAPPED_WIDTH
    return Console(stderr=stderr, file=file, markup=False, emoji=False, highlight=False,
                   width=width)


class PrintableFormatter(logging.Formatter):
    """Log records on one line each, with controls escaped: messages quote hostile text."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def setup_logging(level: int) -> None:
    """atomicscan's log lines on stderr, each one line, each safe for a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("atomicscan: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
