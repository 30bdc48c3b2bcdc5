"""The look-up index of ListingRuntime answers exactly as the full matching does (issue 17:
resolving many references against a long listing without a pass over it per reference)."""

from __future__ import annotations

import random

from atomicscan.errors import AmbiguousTargetError
from atomicscan.listing import CandidateIndex
from atomicscan.targets import Candidate, match_container, match_image


def _answer(find: object, ref: str) -> object:
    try:
        found = find(ref)  # type: ignore[operator]
    except AmbiguousTargetError as exc:
        return ("ambiguous", str(exc))
    return found


def test_the_index_answers_every_reference_as_the_full_matching_does() -> None:
    rng = random.Random(17)
    hexes = ["abc123" + f"{n:058x}" for n in range(6)] + [f"{n:064x}" for n in range(1, 30)]
    words = ["app", "web", "db", "library/app", "localhost/app", "docker.io/library/web"]
    candidates = []
    for ident in hexes:
        names = tuple(rng.sample([f"{w}:{t}" for w in words for t in ("latest", "1")],
                                 rng.randint(0, 3)))
        candidates.append(Candidate(id=ident, names=names))
    candidates.append(Candidate(id=hexes[3], names=("dup:latest",)))  # one ID listed twice
    refs = [*hexes, "sha256:" + hexes[2], "abc123", "abc1230000", "0" * 10, "app", "web:1",
            "library/app", "db:latest", "localhost/app:1", "dup", "nothing", "sha256:",
            *[name for c in candidates for name in c.names]]
    index = CandidateIndex(candidates)
    for ref in refs:
        assert _answer(index.image, ref) == _answer(
            lambda r: match_image(r, candidates), ref), ref
        assert _answer(index.container, ref) == _answer(
            lambda r: match_container(r, candidates), ref), ref
