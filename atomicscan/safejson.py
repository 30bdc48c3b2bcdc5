"""Strict, bounded JSON parsing for documents that came from outside (scanners, caches)."""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any

#: Deepest nesting of arrays and objects accepted; the top-level object is depth 1.
MAX_DEPTH = 64
#: Longest number accepted, in characters: far below CPython's 4,300-digit int limit and
#: long enough for any count, size, score or timestamp.
MAX_NUMBER_CHARS = 100

# A JSON string, or an unterminated one up to the end (which json.loads refuses there): its
# brackets are not counted. Possessive and always matching, so the scan stays linear.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONRefused(ValueError):
    """A document that is not strict, bounded JSON; the message is one line."""


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of ``text``, found without recursion.

    Strings are skipped as ``json.loads`` reads them up to the first error it would raise, so
    it can never nest deeper than this count before it stops.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _refuse_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not a JSON number")


def _checked_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise JSONRefused(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    return int(text)


def _checked_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise JSONRefused(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        # 1e999 parses to inf, which no strict JSON writer can write back.
        raise JSONRefused(f"the number {text} is out of range")
    return value


def loads_strict(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse UTF-8 JSON without NaN, Infinity, overflowing or huge numbers, or deep nesting.

    Every refusal, whatever its cause, is a ``JSONRefused`` with a one-line message.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise JSONRefused(f"not UTF-8 (byte {exc.start})") from None
    depth = nesting_depth(text)
    if depth > max_depth:
        raise JSONRefused(f"nested {depth} levels deep (at most {max_depth})")
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_int=_checked_int,
                              parse_float=_checked_float)
    except JSONRefused:
        raise
    except json.JSONDecodeError as exc:
        raise JSONRefused(f"{exc.msg}: line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        # The depth check should make these impossible; they still fail this document only.
        raise JSONRefused(f"cannot be parsed ({type(exc).__name__})") from None
    if _holds_lone_surrogate(document):
        # "\ud800" parses, but is no text: it can't be written as UTF-8 or read strictly.
        raise JSONRefused("a string holds a lone surrogate escape, which is not Unicode text")
    return document


_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_lone_surrogate(document: Any) -> bool:
    """Whether any key or string of ``document`` holds a surrogate (walked without recursion)."""
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
