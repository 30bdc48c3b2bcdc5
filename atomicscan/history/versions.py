"""Versions ordered as each package manager orders them, and the ``--version SPEC`` filter.

``compare(kind, a, b)`` takes the package type (``Package.type``, the purl type):

- ``deb``: dpkg's ordering. ``[epoch:]upstream[-revision]``; the epoch is a number (none
  means 0), the revision is what follows the last ``-`` (none compares like ``0``). Each
  part alternates non-digit runs, compared character by character with ``~`` before the end
  of the string, the end before letters, letters before every other character, and digit
  runs compared as numbers.
- ``rpm``: rpm's ``rpmvercmp`` on each of epoch, version and release. Segments are runs of
  ASCII letters or digits (anything else separates them); a number beats letters, numbers
  compare as numbers, letters as bytes; ``~`` sorts before anything, even the end, and ``^``
  after the end but before anything else. ``[epoch:]version[-release]``: no epoch means 0,
  and the release is what follows the last ``-``. As ``rpm.vercmp`` does, a version
  without a release sorts before the same version with any release.
- ``apk``: apk-tools' ordering: ``digits{.digits}[letter]{_suffix[digits]}[~hash][-rN]``.
  ``_alpha < _beta < _pre < _rc`` sort before the bare version, and ``_cvs < _svn < _git <
  _hg < _p`` after it; a digit run after a ``.`` that starts with ``0`` compares as text;
  a longer version is newer unless what it adds is a pre-release suffix; from the first
  character that breaks the grammar on, the rest is not looked at (an invalid tail makes a
  version older than one that ends there, and two invalid tails compare equal).
- anything else: a generic ordering (:func:`_generic_compare`): a leading ``v`` dropped,
  runs of digits compared as numbers and runs of letters as lower-case text, a number newer
  than a word, and the words ``dev``, ``alpha``/``a``, ``beta``/``b``, ``pre``,
  ``preview``, ``rc``/``c`` marking a pre-release of what comes before them.

Versions come from images: every function here takes any string (empty, huge, with
control characters) without raising, in time linear in its length. Numbers are compared
by their digits, never converted, so a thousand-digit number is no problem.

A spec's version is matched as the package manager matches a dependency: for ``rpm``, a
spec without a release (``=1.2``, ``<1:2.3``) compares only the epoch and version, so
``=1.2`` matches ``1.2-5.el9`` (rpm's own rule for ``Requires: foo = 1.2``); a missing
epoch is 0 on both sides, as in rpm 4. dpkg and apk have no such rule: ``=3.0.11`` does not
match ``3.0.11-1~deb12u2``, use ``>=3.0.11`` or the whole version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from atomicscan.errors import UsageError
from atomicscan.safetext import printable

#: Every comparison operator a spec may use, as written in :attr:`VersionSpec.op`.
OPERATORS = ("<", "<=", "=", "!=", ">=", ">")
#: Also accepted by :func:`parse_spec`: Debian's and Python's spellings.
_ALIASES = {"<<": "<", ">>": ">", "==": "="}
#: Longest first, so ``<=`` is not read as ``<`` then ``=...``.
_SPEC_PREFIXES = ("<=", ">=", "!=", "==", "<<", ">>", "<", ">", "=")
#: A spec is typed by a user; anything longer is a mistake, not a version.
MAX_SPEC_CHARS = 256


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


def _is_digit(char: str) -> bool:
    # ASCII only: str.isdigit() is true for superscripts and other scripts' digits.
    return "0" <= char <= "9"


def _is_alpha(char: str) -> bool:
    return "a" <= char <= "z" or "A" <= char <= "Z"


def _compare_text(a: str, b: str) -> int:
    return (a > b) - (a < b)


def _compare_numbers(a: str, b: str) -> int:
    """Two runs of ASCII digits compared as numbers, without converting them."""
    a = a.lstrip("0")
    b = b.lstrip("0")
    if len(a) != len(b):
        return -1 if len(a) < len(b) else 1
    return _compare_text(a, b)


def _digit_run_end(text: str, start: int) -> int:
    end = start
    while end < len(text) and _is_digit(text[end]):
        end += 1
    return end


# --- dpkg ----------------------------------------------------------------------------------


def _dpkg_weight(char: str) -> int:
    """Where one character of a non-digit run sorts; the end of the string weighs 0."""
    if _is_digit(char):
        return 0
    if _is_alpha(char):
        return ord(char)
    if char == "~":
        return -1
    return ord(char) + 256


def _dpkg_part_compare(a: str, b: str) -> int:
    """dpkg's comparison of one upstream version or revision with another."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not _is_digit(a[i])) or (j < len(b) and not _is_digit(b[j])):
            weight_a = _dpkg_weight(a[i]) if i < len(a) else 0
            weight_b = _dpkg_weight(b[j]) if j < len(b) else 0
            if weight_a != weight_b:
                return _sign(weight_a - weight_b)
            # Equal weights here are two equal non-digits: neither side is at its end.
            i += 1
            j += 1
        end_a = _digit_run_end(a, i)
        end_b = _digit_run_end(b, j)
        result = _compare_numbers(a[i:end_a], b[j:end_b])
        if result:
            return result
        i, j = end_a, end_b
    return 0


def _dpkg_split(version: str) -> tuple[str, str, str]:
    """``(epoch, upstream, revision)``; an epoch that is not a number stays in upstream."""
    text = version.strip()
    epoch = "0"
    colon = text.find(":")
    if colon > 0 and _digit_run_end(text, 0) == colon:
        epoch, text = text[:colon], text[colon + 1 :]
    upstream, dash, revision = text.rpartition("-")
    if not dash:
        return epoch, revision, ""
    return epoch, upstream, revision


def _dpkg_compare(a: str, b: str) -> int:
    epoch_a, upstream_a, revision_a = _dpkg_split(a)
    epoch_b, upstream_b, revision_b = _dpkg_split(b)
    return (
        _compare_numbers(epoch_a, epoch_b)
        or _dpkg_part_compare(upstream_a, upstream_b)
        or _dpkg_part_compare(revision_a, revision_b)
    )


# --- rpm -----------------------------------------------------------------------------------


def _rpm_segment_end(text: str, start: int, numeric: bool) -> int:
    end = start
    test = _is_digit if numeric else _is_alpha
    while end < len(text) and test(text[end]):
        end += 1
    return end


def _rpm_marker(char_a: str, char_b: str) -> int | None:
    """How ``~`` or ``^`` decide: -1 or 1, 0 when both sides have it, None when neither."""
    if "~" in (char_a, char_b):
        # A tilde sorts before everything, the end of the string included.
        if char_a == char_b:
            return 0
        return -1 if char_a == "~" else 1
    if "^" in (char_a, char_b):
        # A caret sorts after the end of the string but before anything else.
        if char_a == char_b:
            return 0
        if not (char_a and char_b):
            return -1 if not char_a else 1
        return -1 if char_a == "^" else 1
    return None


def _rpm_segments(a: str, i: int, b: str, j: int) -> tuple[int, int, int]:
    """The segments starting at ``a[i]`` and ``b[j]`` compared, and where each ends."""
    numeric = _is_digit(a[i])
    end_a = _rpm_segment_end(a, i, numeric)
    end_b = _rpm_segment_end(b, j, numeric)
    if end_b == j:
        # Segments of different kinds: the number is the newer one.
        return (1 if numeric else -1), end_a, end_b
    if numeric:
        return _compare_numbers(a[i:end_a], b[j:end_b]), end_a, end_b
    return _compare_text(a[i:end_a], b[j:end_b]), end_a, end_b


def _rpm_skip(text: str, pos: int) -> int:
    while pos < len(text) and not (_is_digit(text[pos]) or _is_alpha(text[pos])):
        if text[pos] in "~^":
            break
        pos += 1
    return pos


def _rpmvercmp(a: str, b: str) -> int:
    """rpm's comparison of one version (or release, or epoch) string with another."""
    i = j = 0
    while i < len(a) or j < len(b):
        i = _rpm_skip(a, i)
        j = _rpm_skip(b, j)
        char_a = a[i] if i < len(a) else ""
        char_b = b[j] if j < len(b) else ""
        marker = _rpm_marker(char_a, char_b)
        if marker is not None:
            if marker:
                return marker
            i += 1
            j += 1
            continue
        if not (char_a and char_b):
            break
        result, i, j = _rpm_segments(a, i, b, j)
        if result:
            return result
    if i >= len(a) and j >= len(b):
        return 0
    # Whichever still has characters left is the newer one.
    return 1 if i < len(a) else -1


def _rpm_split(evr: str) -> tuple[str, str, str | None]:
    """``(epoch, version, release)`` as rpm parses ``[epoch:]version[-release]``."""
    epoch = "0"
    digits_end = _digit_run_end(evr, 0)
    rest = evr
    if digits_end < len(evr) and evr[digits_end] == ":":
        epoch = evr[:digits_end] or "0"
        rest = evr[digits_end + 1 :]
    version, dash, release = rest.rpartition("-")
    if not dash:
        return epoch, release, None
    return epoch, version, release


def _rpm_compare(a: str, b: str, *, release_optional: bool = False) -> int:
    """rpm's EVR ordering; with ``release_optional``, a missing release matches any."""
    epoch_a, version_a, release_a = _rpm_split(a)
    epoch_b, version_b, release_b = _rpm_split(b)
    result = _rpmvercmp(epoch_a, epoch_b) or _rpmvercmp(version_a, version_b)
    if result:
        return result
    if release_optional and (release_a is None or release_b is None):
        return 0
    return _rpmvercmp(release_a or "", release_b or "")


# --- apk -----------------------------------------------------------------------------------

# Token kinds in the order apk-tools ranks them: a version that ends (END) before another
# goes on with a later kind is the older one, unless what follows is a pre-release suffix.
_APK_INITIAL, _APK_DIGIT, _APK_LETTER, _APK_SUFFIX, _APK_SUFFIX_NO = range(5)
_APK_HASH, _APK_REVISION, _APK_END, _APK_INVALID = range(5, 9)
_APK_SUFFIX_RANKS = {
    "alpha": 1, "beta": 2, "pre": 3, "rc": 4,
    "cvs": 6, "svn": 7, "git": 8, "hg": 9, "p": 10,
}  # fmt: skip
_APK_NO_SUFFIX = 5
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class _ApkToken:
    kind: int
    text: str = ""
    suffix_rank: int = 0


@dataclass(frozen=True)
class _ApkRule:
    """One kind of token: what opens it, which kinds it may follow, what its text is made of."""

    opening: str  # skipped; "" when the token's own text opens it
    follows: frozenset[int]
    kind: int
    run: frozenset[str]
    longest: int = 0  # 0: no limit


_DIGITS = frozenset("0123456789")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_APK_RULES = (
    _ApkRule("", frozenset({_APK_INITIAL, _APK_DIGIT}), _APK_LETTER, _LOWER, longest=1),
    _ApkRule(".", frozenset({_APK_INITIAL, _APK_DIGIT}), _APK_DIGIT, _DIGITS),
    _ApkRule("", frozenset({_APK_SUFFIX}), _APK_SUFFIX_NO, _DIGITS),
    _ApkRule("_", frozenset(range(_APK_SUFFIX_NO + 1)), _APK_SUFFIX, _LOWER),
    _ApkRule("~", frozenset(range(_APK_HASH)), _APK_HASH, _HEX_DIGITS),
    _ApkRule("-r", frozenset(range(_APK_REVISION)), _APK_REVISION, _DIGITS),
)


def _apk_next(version: str, pos: int, previous: int) -> tuple[_ApkToken, int]:
    """The token at ``version[pos]`` after a token of kind ``previous``, and where it ends."""
    for rule in _APK_RULES:
        if previous not in rule.follows or not version.startswith(rule.opening, pos):
            continue
        start = pos + len(rule.opening)
        if not rule.opening and version[pos] not in rule.run:
            continue
        end = start
        limit = start + rule.longest if rule.longest else len(version)
        while end < min(limit, len(version)) and version[end] in rule.run:
            end += 1
        text = version[start:end]
        if rule.kind == _APK_SUFFIX:
            rank = _APK_SUFFIX_RANKS.get(text, 0)
            return _ApkToken(_APK_SUFFIX, text, rank) if rank else _ApkToken(_APK_INVALID), end
        return (_ApkToken(rule.kind, text) if text else _ApkToken(_APK_INVALID)), end
    return _ApkToken(_APK_INVALID), pos


def _apk_tokens(version: str) -> Iterator[_ApkToken]:
    """The tokens of an apk version, ending with one END or INVALID token."""
    pos = _digit_run_end(version, 0)
    if pos == 0:
        yield _ApkToken(_APK_INVALID)
        return
    token = _ApkToken(_APK_INITIAL, version[:pos])
    while True:
        yield token
        if token.kind == _APK_INVALID:
            return
        if pos >= len(version):
            yield _ApkToken(_APK_END)
            return
        token, pos = _apk_next(version, pos, token.kind)


def _apk_token_compare(a: _ApkToken, b: _ApkToken) -> int:
    """Two tokens of the same kind."""
    if a.kind == _APK_DIGIT and (a.text.startswith("0") or b.text.startswith("0")):
        # A leading zero after a dot makes the part a fraction: compared as text.
        return _compare_text(a.text, b.text)
    if a.kind in (_APK_INITIAL, _APK_DIGIT, _APK_SUFFIX_NO, _APK_REVISION):
        return _compare_numbers(a.text, b.text)
    if a.kind == _APK_SUFFIX:
        return _sign(a.suffix_rank - b.suffix_rank)
    return _compare_text(a.text, b.text)


def _apk_compare(a: str, b: str) -> int:
    tokens_a = _apk_tokens(a)
    tokens_b = _apk_tokens(b)
    while True:
        token_a = next(tokens_a)
        token_b = next(tokens_b)
        if token_a.kind != token_b.kind or token_a.kind >= _APK_END:
            break
        result = _apk_token_compare(token_a, token_b)
        if result:
            return result
    if token_a.kind == token_b.kind:
        return 0
    if token_a.kind == _APK_SUFFIX and token_a.suffix_rank < _APK_NO_SUFFIX:
        return -1
    if token_b.kind == _APK_SUFFIX and token_b.suffix_rank < _APK_NO_SUFFIX:
        return 1
    return -1 if token_a.kind > token_b.kind else 1


# --- anything else -------------------------------------------------------------------------

_PRE_RELEASE_RANKS = {
    "dev": 1, "alpha": 2, "a": 2, "beta": 3, "b": 3,
    "pre": 4, "preview": 4, "rc": 5, "c": 5,
}  # fmt: skip


def _generic_parts(version: str) -> Iterator[tuple[bool, str]]:
    """``(is_number, text)`` for each run of ASCII digits or letters; the rest separates."""
    text = version.strip()
    if text[:1] in ("v", "V") and _is_digit(text[1:2]):
        text = text[1:]
    pos = 0
    while pos < len(text):
        char = text[pos]
        if _is_digit(char) or _is_alpha(char):
            numeric = _is_digit(char)
            end = _rpm_segment_end(text, pos, numeric)
            yield numeric, text[pos:end].lower()
            pos = end
        else:
            pos += 1


def _generic_compare(a: str, b: str) -> int:
    parts_a = _generic_parts(a)
    parts_b = _generic_parts(b)
    while True:
        part_a = next(parts_a, None)
        part_b = next(parts_b, None)
        if part_a is None or part_b is None:
            break
        result = _generic_part_compare(part_a, part_b)
        if result:
            return result
    # The longer version is newer unless what it adds starts with a pre-release word.
    if part_a is not None:
        return -1 if not part_a[0] and part_a[1] in _PRE_RELEASE_RANKS else 1
    if part_b is not None:
        return 1 if not part_b[0] and part_b[1] in _PRE_RELEASE_RANKS else -1
    return 0


def _generic_part_compare(a: tuple[bool, str], b: tuple[bool, str]) -> int:
    (number_a, text_a), (number_b, text_b) = a, b
    if number_a and number_b:
        return _compare_numbers(text_a, text_b)
    if number_a != number_b:
        return 1 if number_a else -1
    rank_a = _PRE_RELEASE_RANKS.get(text_a, 0)
    rank_b = _PRE_RELEASE_RANKS.get(text_b, 0)
    if rank_a and rank_b:
        return _sign(rank_a - rank_b)
    if rank_a or rank_b:
        # A pre-release word is older than any other word ("post", "patch", "p").
        return -1 if rank_a else 1
    return _compare_text(text_a, text_b)


# --- the public interface ------------------------------------------------------------------

_COMPARERS: dict[str, Callable[[str, str], int]] = {
    "deb": _dpkg_compare,
    "rpm": _rpm_compare,
    "apk": _apk_compare,
}


def compare(kind: str, a: str, b: str) -> int:
    """-1, 0 or 1 as version ``a`` is older than, the same as, or newer than ``b``.

    ``kind`` is the package type (``deb``, ``rpm``, ``apk``; any other gets the generic
    ordering). Never raises, whatever the strings hold.
    """
    if a == b:
        return 0
    return _COMPARERS.get(kind.lower(), _generic_compare)(a, b)


@dataclass(frozen=True)
class VersionSpec:
    """A version condition from ``--version``: an operator and a version."""

    op: str
    version: str

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"unknown version operator {self.op!r}")

    def matches(self, kind: str, version: str) -> bool:
        """Whether a package of type ``kind`` at ``version`` meets this condition."""
        if kind.lower() == "rpm":
            result = _rpm_compare(version, self.version, release_optional=True)
        else:
            result = compare(kind, version, self.version)
        return {
            "<": result < 0,
            "<=": result <= 0,
            "=": result == 0,
            "!=": result != 0,
            ">=": result >= 0,
            ">": result > 0,
        }[self.op]


def _shown(text: str) -> str:
    short = text if len(text) <= 60 else text[:60] + "..."
    return f"'{printable(short)}'"


def parse_spec(text: str) -> VersionSpec:
    """``"<3.0.15"``, ``"=1:2.3-4"``, ``">= 2.0"``; a bare ``"1.2"`` means ``=1.2``.

    ``<<``, ``>>`` (dpkg) and ``==`` are accepted for ``<``, ``>`` and ``=``. Raises
    :class:`~atomicscan.errors.UsageError` with one line when ``text`` is not a spec.
    """
    if len(text) > MAX_SPEC_CHARS:
        raise UsageError(f"--version {_shown(text)}: longer than {MAX_SPEC_CHARS} characters")
    body = text.strip()
    op = "="
    for prefix in _SPEC_PREFIXES:
        if body.startswith(prefix):
            op = _ALIASES.get(prefix, prefix)
            body = body[len(prefix) :].lstrip()
            break
    if not body:
        raise UsageError(f"--version {_shown(text)}: no version given (as in '<3.0.15')")
    if body[0] in "<>=!":
        raise UsageError(f"--version {_shown(text)}: one operator of < <= = != >= > only")
    if any(char.isspace() or not char.isprintable() for char in body):
        raise UsageError(
            f"--version {_shown(text)}: a version has no spaces or control characters"
        )
    return VersionSpec(op, body)
