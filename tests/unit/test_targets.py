"""Target matching: the same rules for every runtime (fast tier, no runtime needed)."""

from __future__ import annotations

import pytest

from atomicscan.errors import AmbiguousTargetError
from atomicscan.targets import Candidate, match_container, match_image, normalize_image_ref

IMAGES = [
    Candidate("aaaa1111" + "0" * 56, ("docker.io/library/debian:bookworm-slim",
                                     "localhost/atomicscan-test/debian:bookworm")),
    Candidate("aaaa2222" + "0" * 56, ("localhost/web:latest",)),
    Candidate("bbbb3333" + "0" * 56, ("docker.io/library/web:latest",)),
    Candidate("cccc4444" + "0" * 56, ()),
]


@pytest.mark.parametrize(("ref", "expected"), [
    ("debian:bookworm-slim", "aaaa1111"),
    ("docker.io/library/debian:bookworm-slim", "aaaa1111"),
    ("atomicscan-test/debian:bookworm", "aaaa1111"),
    ("localhost/web", "aaaa2222"),
    ("cccc", "cccc4444"),
    ("sha256:cccc4444" + "0" * 56, "cccc4444"),
])
def test_image_refs_resolve(ref: str, expected: str) -> None:
    found = match_image(ref, IMAGES)
    assert found is not None and found.id.startswith(expected)


def test_short_name_in_two_registries_is_ambiguous() -> None:
    with pytest.raises(AmbiguousTargetError) as caught:
        match_image("web", IMAGES)
    assert len(caught.value.candidates) == 2
    assert "localhost/web:latest" in str(caught.value)


def test_id_prefix_of_two_images_is_ambiguous() -> None:
    with pytest.raises(AmbiguousTargetError):
        match_image("aaaa", IMAGES)


def test_unknown_image_is_none() -> None:
    assert match_image("nothing", IMAGES) is None
    assert match_image("debian", IMAGES) is None, "debian means debian:latest"


def test_container_exact_name_beats_id_prefix() -> None:
    containers = [Candidate("abc" + "1" * 61, ("other",)), Candidate("f" * 64, ("abc",))]
    found = match_container("abc", containers)
    assert found is not None and found.names == ("abc",)


def test_normalize() -> None:
    assert normalize_image_ref("debian") == "debian:latest"
    assert normalize_image_ref("localhost:5000/x") == "localhost:5000/x:latest"
    assert normalize_image_ref("x@sha256:00") == "x@sha256:00"


def test_remediated_names() -> None:
    from atomicscan.builtin.openscap_remediation import remediated_name
    from atomicscan.runtime import Target

    names = ("localhost/atomicscan-test/debian:bookworm", "docker.io/library/debian:x")
    image = Target(ref="atomicscan-test/debian:bookworm", id="ab" * 32, type="image",
                   runtime="podman", key="k", names=names)
    assert remediated_name(image) == "localhost/atomicscan-test/debian:bookworm-remediated"
    by_id = Target(ref="abab", id="ab" * 32, type="image", runtime="podman", key="k",
                   names=names)
    assert remediated_name(by_id) == "localhost/atomicscan-remediated:abababababab"


@pytest.mark.parametrize(("ref", "expected"), [
    ("localhost/atomicscan-test/debian:bookworm", True),
    ("docker.io/library/debian:bookworm-slim", True),
    ("registry.example.com:5000/x@sha256:00", True),
    ("debian:bookworm", False),
    ("library/debian:bookworm", False),
    ("localhost/x", False),
])
def test_fully_qualified(ref: str, expected: bool) -> None:
    from atomicscan.targets import fully_qualified

    assert fully_qualified(ref) is expected
