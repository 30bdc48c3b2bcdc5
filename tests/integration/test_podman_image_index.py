"""podman's images read from containers/storage's index equal podman's own listing, on this
host's real storage (issue 17)."""

from __future__ import annotations

from helpers import podman_env

from atomicscan.builtin.podman import PodmanRuntime


def test_the_image_index_lists_what_podman_images_lists() -> None:
    runtime = PodmanRuntime()
    runtime.env = {**runtime.env, **podman_env()}
    for _attempt in range(3):  # others' builds on this host add and remove images
        from_index = runtime._images_from_store()
        from_cli = runtime._images_from_cli()
        assert from_index is not None, "podman's image index was not usable here"
        index = {c.id: set(c.names) for c in from_index}
        cli = {c.id: set(c.names) for c in from_cli}
        if index == cli:
            break
    assert index == cli
