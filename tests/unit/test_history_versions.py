"""Version ordering per package type, checked against tables and the real dpkg and rpm."""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess

import pytest

from atomicscan.errors import UsageError
from atomicscan.history.versions import MAX_SPEC_CHARS, VersionSpec, compare, parse_spec

# (older, newer) or equal pairs, as each package manager documents or behaves.
DPKG_CASES = [
    ("1.0", "1.1", -1),
    ("1.0", "1.0", 0),
    ("1.0", "1.0-0", 0),  # no revision compares like revision 0
    ("1.0~rc1", "1.0", -1),  # ~ sorts before the end
    ("1.0~rc1", "1.0~rc1~1", 1),
    ("1.0~~", "1.0~", -1),
    ("1.0", "1.0a", -1),  # the end sorts before letters
    ("1.0a", "1.0+", -1),  # letters sort before other characters
    ("1.0+", "1.0.", -1),  # other characters by their code
    ("1.9", "1.10", -1),  # digits compare as numbers
    ("1.010", "1.10", 0),  # leading zeros do not count
    ("1:0.1", "2.0", 1),  # the epoch comes first
    ("0:2.0", "2.0", 0),
    ("2.0-1", "2.0-2", -1),
    ("2.0-1~deb12u1", "2.0-1", -1),
    ("3.0.11-1~deb12u2", "3.0.11-1~deb12u2", 0),
    ("3.0.11-1~deb12u2", "3.0.15-1~deb12u1", -1),
    ("1.2-3-4", "1.2-3", 1),  # the revision follows the last hyphen
    ("10:1", "9:999", 1),
    ("1.0", "1.0.0", -1),
    ("1" + "0" * 5000, "1" + "0" * 4999 + "1", -1),  # beyond int()'s digit limit
]

RPM_CASES = [
    ("1.0", "1.0", 0),
    ("1.0", "1.1", -1),
    ("1.0.1", "1.0", 1),
    ("1.0a", "1.0", 1),  # whichever has characters left wins
    ("1.0a", "1.0.1", -1),  # a number beats letters
    ("1.0~rc1", "1.0", -1),
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0^git1", "1.0", 1),  # ^ sorts after the end
    ("1.0^git1", "1.0.1", -1),  # but before anything else
    ("1.0^", "1.0", 1),
    ("1.0~^", "1.0~", 1),
    ("1.0", "1_0", 0),  # separators only separate
    ("1..0", "1.0", 0),
    ("1.010", "1.10", 0),
    ("alpha", "beta", -1),
    ("B", "a", -1),  # letters by byte value
    ("1:1.0-1", "2.0-1", 1),  # the epoch comes first
    ("0:1.0-1", "1.0-1", 0),  # no epoch is 0
    ("1.0-1", "1.0-2", -1),
    ("1.0-1.el9", "1.0-1.el9_2", -1),
    ("1.0", "1.0-5", -1),  # no release sorts before any release, as rpm.vercmp does
    ("3.0.7-24.el9", "1:3.0.7-24.el9", -1),
]

# apk-tools' documented behaviour: its grammar digit{.digit}[letter]{_suffix[#]}[~hash][-r#]
# and its test vectors (test/version.data).
APK_CASES = [
    ("2.34", "0.1.0_alpha", 1),
    ("0.1.0_alpha", "0.1.0_alpha", 0),
    ("0.1.0_alpha2", "0.1.0_alpha", 1),
    ("0.1.0_alpha", "2.2.39-r1", -1),
    ("1.0.4-r3", "1.0.4-r4", -1),
    ("1.1", "1.1_alpha1", 1),
    ("1.2.1", "1.2", 1),
    ("1.2", "1.3_alpha", -1),
    ("0.8_beta1", "0.8_beta2", -1),
    ("2.3.0b-r1", "2.3.0b-r2", -1),
    ("3.10.18-r1", "2.3.0b-r1", 1),
    ("0.12.3", "0.12", 1),
    ("1.2.12.1", "1.2.13", -1),
    ("3.1_p16", "3.1_p17", -1),
    ("1.06-r6", "006", -1),  # the first number compares as a number
    ("1.2.2-r1", "1.2.2", 1),
    ("2.59", "20050718-r1", -1),
    ("3.9.8-r5", "2.01.01_alpha10", 1),
    ("1.0", "0.99.3.20040818", 1),
    ("1.39", "1.00_beta2", 1),
    ("7.15.1-r1", "1.02", 1),
    ("1.02", "1.03-r1", -1),
    ("1.02.07", "1.02.10-r1", -1),
    ("2.8.9-r1", "2.8.9", 1),
    ("20060720", "3.0.20060720", 1),
    ("2.5.1-r8", "2.5.1a-r1", -1),
    ("1.3.5-r10", "1.3.5-r8", 1),
    ("20040401", "2.0.0_rc3-r1", 1),
    ("3.0.0-r2", "021109-r3", -1),
    ("0.9.16-r1", "3.9_pre20060124", -1),
    ("0.01", "0.06", -1),
    ("1.1.7", "6b-r7", -1),
    ("0.10.0-r1", "0.10.0", 1),
    ("0.10.0", "0.10.1_rc1", -1),
    ("4.5_p1-r1", "4.5_p1", 1),
    ("0.9.8c-r1", "0.9.8d", -1),
    ("1.7", "1.7b", -1),
    ("1.8.5", "1.8.5_p2", -1),
    ("2.9.11_pre20051101-r3", "2.9.11_pre20051101", 1),
    ("0.9.28-r2", "0.9.28.1", -1),
    ("0.9.28.1", "087-r1", -1),
    ("20040406-r1", "2.12r-r4", 1),
    ("7.0.17", "7.0.174", -1),
    ("1.2.07.8", "1.2.12.04", -1),
    ("1.3-r0", "1.3.1-r0", -1),
    ("1.3_pre1-r1", "1.3.2", -1),
    ("1.0_p10-r0", "1.0_p9-r0", 1),
    ("0.1.0_alpha_pre2", "0.1.0_alpha", -1),
    ("1.0.0_pre20191002222144-r0", "1.0.0_pre20210530193627-r0", -1),
    ("1.0", "1.0bc", -1),  # an invalid tail: the valid, shorter one is older
    ("1.01", "1.1", -1),  # a leading zero after a dot compares as text
    ("1.001", "1.01", -1),
    ("1.0_alpha", "1.0_beta", -1),
    ("1.0_beta", "1.0_pre", -1),
    ("1.0_pre", "1.0_rc", -1),
    ("1.0_rc", "1.0", -1),
    ("1.0", "1.0_cvs", -1),
    ("1.0_cvs", "1.0_svn", -1),
    ("1.0_svn", "1.0_git", -1),
    ("1.0_git", "1.0_hg", -1),
    ("1.0_hg", "1.0_p", -1),
    ("1.0~abc1", "1.0~abc2", -1),
    ("1.0~abc1-r1", "1.0-r1", 1),  # a version that goes on before its revision is newer
    ("1.0-x", "1.0-y", 0),  # two invalid tails from the same point compare equal
    ("1.0-x", "1.0", -1),
]

GENERIC_CASES = [
    ("1.0", "1.0.0", -1),
    ("1.9", "1.10", -1),
    ("v1.2.3", "1.2.3", 0),
    ("1.0rc1", "1.0", -1),
    ("1.0.0-rc.1", "1.0.0", -1),
    ("1.0a1", "1.0b1", -1),
    ("1.0.dev1", "1.0a1", -1),
    ("1.0", "1.0.post1", -1),
    ("1.0rc1", "1.0.post1", -1),
    ("1.0", "1.0x", -1),
    ("2.0", "10.0", -1),
    ("1.0-alpha", "1.0-beta", -1),
]


@pytest.mark.parametrize(("a", "b", "expected"), DPKG_CASES)
def test_deb_ordering(a: str, b: str, expected: int) -> None:
    assert compare("deb", a, b) == expected
    assert compare("deb", b, a) == -expected


@pytest.mark.parametrize(("a", "b", "expected"), RPM_CASES)
def test_rpm_ordering(a: str, b: str, expected: int) -> None:
    assert compare("rpm", a, b) == expected
    assert compare("rpm", b, a) == -expected


@pytest.mark.parametrize(("a", "b", "expected"), APK_CASES)
def test_apk_ordering(a: str, b: str, expected: int) -> None:
    assert compare("apk", a, b) == expected
    assert compare("apk", b, a) == -expected


@pytest.mark.parametrize(("a", "b", "expected"), GENERIC_CASES)
def test_generic_ordering(a: str, b: str, expected: int) -> None:
    assert compare("pypi", a, b) == expected
    assert compare("pypi", b, a) == -expected


def test_kind_is_case_insensitive_and_unknown_kinds_are_generic() -> None:
    assert compare("DEB", "1.0~rc1", "1.0") == -1
    assert compare("npm", "1.0rc1", "1.0") == -1
    assert compare("", "1", "2") == -1


# --- oracles: the real dpkg and rpm on generated versions -------------------------------

_PIECES = ["0", "00", "1", "01", "2", "9", "10", "123", "a", "b", "rc", "alpha", "Z", "z"]


def _upstream(rng: random.Random, separators: str) -> str:
    text = rng.choice(["0", "1", "2", "10", "01"])
    for _ in range(rng.randint(0, 5)):
        if rng.random() < 0.6:
            text += rng.choice(separators)
        text += rng.choice(_PIECES)
    if rng.random() < 0.15:
        text += rng.choice(separators)
    return text


def _mutated(rng: random.Random, version: str, separators: str) -> str:
    """A version close to ``version``, so that pairs share long prefixes."""
    choice = rng.random()
    if choice < 0.3:
        return version
    if choice < 0.6:
        return version + rng.choice(separators) + rng.choice(_PIECES)
    cut = rng.randint(1, len(version))
    return version[:cut] + rng.choice(_PIECES + list(separators))


def _deb_version(rng: random.Random) -> str:
    upstream = _upstream(rng, ".+~")
    revision = ""
    if rng.random() < 0.5:
        revision = "-" + _upstream(rng, ".+~")
        if rng.random() < 0.2:
            upstream += "-" + rng.choice(_PIECES)
    epoch = rng.choice(["", "", "", "0:", "1:", "2:"])
    return epoch + upstream + revision


def _deb_is_valid(version: str) -> bool:
    """Whether dpkg takes ``version`` without a warning (then it may judge ours)."""
    epoch, colon, rest = version.rpartition(":")
    if colon and not epoch.isdigit():
        return False
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream = revision
    elif not revision:
        return False
    return upstream[:1].isdigit() and all(char.isalnum() or char in ".+~-" for char in rest)


def _deb_pairs(count: int) -> list[tuple[str, str]]:
    rng = random.Random(1313)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < count:
        a = _deb_version(rng)
        b = _mutated(rng, a, ".+~") if rng.random() < 0.6 else _deb_version(rng)
        if _deb_is_valid(b):
            pairs.append((a, b))
    return pairs


def _rpm_version(rng: random.Random) -> str:
    text = _upstream(rng, ".~^+_")
    if rng.random() < 0.6:
        text += "-" + _upstream(rng, ".~^+_")
    return rng.choice(["", "", "", "0:", "1:", "3:"]) + text


def _rpm_pairs(count: int) -> list[tuple[str, str]]:
    rng = random.Random(4242)
    pairs: list[tuple[str, str]] = []
    for _ in range(count):
        a = _rpm_version(rng)
        b = _mutated(rng, a, ".~^+_") if rng.random() < 0.6 else _rpm_version(rng)
        pairs.append((a, b))
    return pairs


def _dpkg_works() -> bool:
    if shutil.which("dpkg") is None:
        return False
    probe = subprocess.run(["dpkg", "--compare-versions", "1.0~rc1", "lt", "1.0"], check=False)
    return probe.returncode == 0


def _rpm_lua(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rpm", "--eval", "%{lua:" + script + "}"], check=False,
                          capture_output=True, text=True)


def _rpm_works() -> bool:
    if shutil.which("rpm") is None:
        return False
    probe = _rpm_lua('print(rpm.vercmp("1.0~rc1", "1.0"))')
    return probe.returncode == 0 and probe.stdout.strip() == "-1"


@pytest.mark.skipif(not _dpkg_works(), reason="no working dpkg on this machine")
def test_deb_ordering_agrees_with_dpkg() -> None:
    disagreements = []
    outcomes = set()
    relation = {-1: "lt", 0: "eq", 1: "gt"}
    for a, b in _deb_pairs(300):
        ours = compare("deb", a, b)
        outcomes.add(ours)
        # dpkg exits 0 when the relation holds: one run checks ours.
        checked = subprocess.run(["dpkg", "--compare-versions", a, relation[ours], b],
                                 check=False, capture_output=True, text=True)
        assert "warning" not in checked.stderr, (a, b, checked.stderr)
        if checked.returncode != 0:
            disagreements.append((a, b, ours))
    assert disagreements == []
    # The generated pairs exercise every outcome, not only one.
    assert outcomes == {-1, 0, 1}


@pytest.mark.skipif(not _rpm_works(), reason="no working rpm (with its lua) on this machine")
def test_rpm_ordering_agrees_with_rpm_vercmp() -> None:
    pairs = _rpm_pairs(400)
    # Generated versions hold no ']' or '%': safe inside Lua long strings and rpm macros.
    assert not any("]" in a + b or "%" in a + b for a, b in pairs)
    calls = ", ".join(f"rpm.vercmp([[{a}]], [[{b}]])" for a, b in pairs)
    result = _rpm_lua(f'print(table.concat({{{calls}}}, ","))')
    assert result.returncode == 0, result.stderr
    theirs = [int(field) for field in result.stdout.strip().split(",")]
    assert len(theirs) == len(pairs)
    disagreements = [
        (a, b, compare("rpm", a, b), their)
        for (a, b), their in zip(pairs, theirs, strict=True)
        if compare("rpm", a, b) != max(-1, min(1, their))
    ]
    assert disagreements == []
    # The generated pairs exercise every outcome, not only one.
    assert {-1, 0, 1} <= set(theirs)


# --- hostile input ------------------------------------------------------------------------

HOSTILE = [
    "",
    " ",
    ":",
    "-",
    "~",
    "^",
    "_",
    "-r",
    "1:",
    ":1",
    "1.",
    "\x00",
    "1.0\x00evil",
    "\x1b[31m1.0\x1b[0m",
    "1.0\n2.0",
    "\u0661\u0662\u0663",  # Arabic-Indic digits are not digits here
    "1.0é",
    "\ud800",
    "9" * 10_000,
    "0" * 10_000,
    "1." * 20_000,
    "~" * 40_000,
    "^" * 40_000,
    "-" * 40_000,
    ":" * 40_000,
    "a" * 40_000,
    "1" + "_p1" * 10_000,
    "1.0" + "-r1" * 10_000,
    "1" + ".0" * 20_000 + "a",
    "1:" * 20_000,
]


@pytest.mark.parametrize("kind", ["deb", "rpm", "apk", "generic"])
def test_hostile_versions_never_raise(kind: str) -> None:
    # Inputs of 40,000 characters: a quadratic algorithm would not finish in this suite.
    for a in HOSTILE:
        for b in ("", "1.0", a + "1"):
            result = compare(kind, a, b)
            assert result in (-1, 0, 1)
            assert compare(kind, b, a) == -result
        assert compare(kind, a, a) == 0


@pytest.mark.parametrize("kind", ["deb", "rpm", "apk", "generic"])
def test_ordering_is_antisymmetric_and_transitive_on_random_versions(kind: str) -> None:
    rng = random.Random(7)
    alphabet = "0123456789abz.~^+_-:rA "
    versions = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
                for _ in range(120)]
    ordered = sorted(versions, key=_sort_key(kind))
    for a, b in itertools.pairwise(ordered):
        assert compare(kind, a, b) <= 0
        assert compare(kind, b, a) >= 0
    for a in versions[:40]:
        for b in versions[:40]:
            assert compare(kind, a, b) == -compare(kind, b, a)


def _sort_key(kind: str) -> type:
    class Key:
        def __init__(self, version: str) -> None:
            self.version = version

        def __lt__(self, other: Key) -> bool:
            return compare(kind, self.version, other.version) < 0

    return Key


# --- specs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "version"),
    [
        ("<3.0.15", "<", "3.0.15"),
        ("=1:2.3-4", "=", "1:2.3-4"),
        (">= 2.0", ">=", "2.0"),
        ("  <=  1.0~rc1 ", "<=", "1.0~rc1"),
        ("1.2", "=", "1.2"),
        ("!=1.2", "!=", "1.2"),
        (">1", ">", "1"),
        ("<<2", "<", "2"),
        (">>2", ">", "2"),
        ("==2", "=", "2"),
    ],
)
def test_parse_spec(text: str, op: str, version: str) -> None:
    assert parse_spec(text) == VersionSpec(op, version)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "<", ">=", "<=>1", "=<1", "1 2", "<1\n2", "1\x1b[2J", "1\x00", "<" * 5000,
     "x" * (MAX_SPEC_CHARS + 1), "1\u200b"],
)
def test_parse_spec_refuses_with_one_safe_line(text: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_spec(text)
    message = str(raised.value)
    assert "\n" not in message
    assert "\x1b" not in message
    assert "\x00" not in message
    assert len(message) < 200
    assert message.startswith("--version")


def test_parse_spec_on_random_input_gives_a_spec_or_a_usage_error() -> None:
    rng = random.Random(99)
    alphabet = "<>=! 0123456789.:-~\t\n\x00\x1ba"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        try:
            spec = parse_spec(text)
        except UsageError:
            continue
        assert spec.op in ("<", "<=", "=", "!=", ">=", ">")
        assert spec.version
        assert spec.version.strip() == spec.version


def test_version_spec_refuses_an_unknown_operator() -> None:
    with pytest.raises(ValueError, match="operator"):
        VersionSpec("~", "1.0")


@pytest.mark.parametrize(
    ("kind", "spec", "version", "expected"),
    [
        ("deb", "<3.0.15", "3.0.11-1~deb12u2", True),
        ("deb", "<3.0.15", "3.0.15-1~deb12u1", False),  # 3.0.15-1~deb12u1 > 3.0.15
        ("deb", "<3.0.15", "3.0.15~rc1", True),
        ("deb", "=3.0.11", "3.0.11-1~deb12u2", False),  # dpkg has no release wildcard
        ("deb", "=3.0.11-1~deb12u2", "3.0.11-1~deb12u2", True),
        ("deb", "!=3.0.11-1~deb12u2", "3.0.11-1~deb12u2", False),
        ("deb", ">=1:1.0", "2.0", False),
        ("rpm", "=3.0.7", "3.0.7-24.el9", True),  # rpm: a spec without release matches any
        ("rpm", "<3.0.7", "3.0.7-24.el9", False),
        (
            "rpm",
            ">3.0.7",
            "3.0.7-24.el9",
            False,
        ),
        ("rpm", "<=3.0.7", "3.0.7-24.el9", True),
        ("rpm", ">=3.0.7", "3.0.7-24.el9", True),
        ("rpm", "=3.0.7-23.el9", "3.0.7-24.el9", False),
        ("rpm", "<3.0.7-25", "3.0.7-24.el9", True),
        ("rpm", "=1:3.0.7", "1:3.0.7-24.el9", True),
        ("rpm", "=3.0.7", "1:3.0.7-24.el9", False),  # no epoch in the spec means 0
        ("rpm", ">3.0.7", "1:3.0.7-24.el9", True),
        ("apk", "<3.0.15-r0", "3.0.14-r1", True),
        ("apk", "<3.0.15", "3.0.15_rc1-r0", True),
        ("apk", "=3.0.15-r0", "3.0.15-r0", True),
        ("apk", ">3.0.15", "3.0.15-r0", True),
        ("pypi", ">=2.0", "2.0.1", True),
        ("pypi", "<2.0", "2.0rc1", True),
    ],
)
def test_spec_matches(kind: str, spec: str, version: str, expected: bool) -> None:
    assert parse_spec(spec).matches(kind, version) is expected


@pytest.mark.parametrize("kind", ["deb", "rpm", "apk", "generic"])
def test_spec_matches_hostile_versions(kind: str) -> None:
    for op in ("<", "<=", "=", "!=", ">=", ">"):
        spec = VersionSpec(op, "1.0")
        for version in HOSTILE[:20]:
            assert spec.matches(kind, version) in (True, False)
