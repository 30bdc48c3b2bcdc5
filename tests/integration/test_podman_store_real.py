"""podman's images read from containers/storage's index equal podman's own listing, on this
host's real storage (issue 17)."""

from __future__ import annotations

from helpers import TESTBED_IMAGES, podman_env

from atomicscan import targetconfig
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


def test_image_configurations_from_the_store_equal_podmans_inspect() -> None:
    runtime = PodmanRuntime()
    runtime.env = {**runtime.env, **podman_env()}
    images = runtime._images_from_store()
    assert images is not None
    ids = [image.id for image in images]
    from_store, _answered = runtime._image_inspects_from_store(ids)
    from_cli = runtime._inspect_with_cli("image", ids)
    # Every image podman inspected is read from the store too.
    assert set(from_cli) <= set(from_store) | _removed_since(runtime, ids)
    compared = 0
    for image_id, inspect in from_cli.items():
        if image_id not in from_store:
            continue
        names = list(inspect.get("RepoTags") or ())
        assert targetconfig.normalize(from_store[image_id], names) == \
            targetconfig.normalize(inspect, names), image_id
        assert sorted(from_store[image_id]["RepoTags"]) == sorted(names)
        compared += 1
    assert compared >= len(TESTBED_IMAGES)


def _removed_since(runtime: PodmanRuntime, ids: list[str]) -> set[str]:
    """Images another session removed while the test ran."""
    return set(ids) - {image.id for image in runtime._images_from_cli()}
