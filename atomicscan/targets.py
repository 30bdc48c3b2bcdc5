"""Matching what the user typed against a runtime's containers and images, the same for all."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from atomicscan.errors import AmbiguousTargetError, TargetNotFoundError

_HEX = re.compile(r"^[0-9a-f]{3,64}$")


@dataclass(frozen=True)
class Candidate:
    """A container or an image as a runtime lists it."""

    id: str
    names: tuple[str, ...]
    running: bool = False


def normalize_image_ref(ref: str) -> str:
    """Add the implied ``:latest`` to an image reference without tag or digest."""
    if "@" in ref:
        return ref
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else f"{ref}:latest"


def _strip_algo(ref: str) -> str:
    return ref.removeprefix("sha256:")


def _display_name(ref: str, candidate: Candidate) -> str:
    """The candidate's name that the user's text matched, else its first name."""
    bare = ref.split(":", 1)[0]
    matching = [name for name in candidate.names if bare in name]
    return (matching or list(candidate.names) or ["<none>"])[0]


def _pick(ref: str, kind: str, matches: Iterable[Candidate]) -> Candidate | None:
    unique = {candidate.id: candidate for candidate in matches}
    if not unique:
        return None
    if len(unique) > 1:
        shown = sorted(f"{_display_name(ref, c)} ({c.id[:12]})" for c in unique.values())
        raise AmbiguousTargetError(
            ref,
            shown,
            f"target {ref!r} matches {len(unique)} {kind}s: {', '.join(shown)}; "
            "give a full name with registry and tag, or a longer ID",
        )
    return next(iter(unique.values()))


def _match_in_steps(
    ref: str, kind: str, candidates: Sequence[Candidate],
    steps: Sequence[Callable[[Candidate], bool]],
) -> Candidate | None:
    """Try each rule in order; the first rule that matches anything decides."""
    for step in steps:
        found = _pick(ref, kind, (c for c in candidates if step(c)))
        if found is not None:
            return found
    return None


def match_container(ref: str, containers: Sequence[Candidate]) -> Candidate | None:
    """Exact ID, then exact name, then an ID prefix (like docker and podman do)."""
    plain = _strip_algo(ref)
    steps: list[Callable[[Candidate], bool]] = [
        lambda c: c.id == plain,
        lambda c: ref in c.names,
    ]
    if _HEX.match(plain):
        steps.append(lambda c: c.id.startswith(plain))
    return _match_in_steps(ref, "container", containers, steps)


def match_image(ref: str, images: Sequence[Candidate]) -> Candidate | None:
    """Exact ID, exact name, a name without its registry, then an ID prefix."""
    plain = _strip_algo(ref)
    full = normalize_image_ref(ref)
    steps: list[Callable[[Candidate], bool]] = [
        lambda c: c.id == plain,
        lambda c: ref in c.names or full in c.names,
        lambda c: any(name.endswith("/" + full) for name in c.names),
    ]
    if _HEX.match(plain):
        steps.append(lambda c: c.id.startswith(plain))
    return _match_in_steps(ref, "image", images, steps)


def fully_qualified(ref: str) -> bool:
    """``registry/name:tag`` (or ``@digest``): a name that can match one image only."""
    first, slash, rest = ref.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return False
    last = rest.rsplit("/", 1)[-1]
    return ":" in last or "@" in last


def not_found(ref: str, runtime: str, listing_hint: str | None = None) -> TargetNotFoundError:
    """``ref`` is not in ``runtime``: say where to look (``listing_hint``, by default the
    runtime's own ``ps -a`` and ``images``)."""
    where = listing_hint or f"`{runtime} ps -a` and `{runtime} images`"
    return TargetNotFoundError(
        ref,
        f"target {ref!r} is neither a container nor an image in {runtime}; "
        f"check {where} (atomicscan never pulls), or use --rootfs PATH for a directory",
    )


def rootfs_key(path: Path) -> str:
    """A stable /scanin directory name for a directory tree given with --rootfs."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    return f"rootfs-{digest}"
