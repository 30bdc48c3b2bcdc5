"""A run inspects each image and container once: resolution, /scanmeta and remediation's USER
lookup share the answers (a fake listing runtime counts the inspect commands)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from atomicscan import AtomicscanError, Candidate, Completed, ListingRuntime, Target

IMAGE = "a" * 64
CONTAINER = "c" * 64


class CountingRuntime(ListingRuntime):
    """Fake: one image (USER app) and one container, and a log of every inspect."""

    name = "fake"

    def __init__(self) -> None:
        self.inspects: list[tuple[str, tuple[str, ...]]] = []
        self.known = {"image": {IMAGE: {"Id": IMAGE, "Config": {"User": " app "}}},
                      "container": {CONTAINER: {"Id": CONTAINER, "Config": {"User": ""}}}}

    def check(self) -> None:
        return None

    def _containers(self) -> list[Candidate]:
        return [Candidate(id=CONTAINER, names=("web",))]

    def _images(self) -> list[Candidate]:
        return [Candidate(id=IMAGE, names=("localhost/app:1",))]

    def _inspect_many(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.inspects.append((kind, tuple(ids)))
        return {i: self.known[kind][i] for i in ids if i in self.known[kind]}

    def mount_rootfs(self, target: Target, journal: Callable[[dict[str, Any]], None],
                     workdir: Path) -> contextlib.AbstractContextManager[Path]:
        @contextlib.contextmanager
        def mounted() -> Iterator[Path]:
            # A runtime that inspects to mount (docker) leaves the answer for the run.
            self._container_inspects.update(self._inspect_many("container", [target.id]))
            yield workdir
        return mounted()

    def undo(self, record: Any) -> None:
        return None

    def image_id(self, image: str) -> str | None:
        return None

    def run_scanner(self, container: Any) -> Completed:
        raise NotImplementedError

    def remove_container(self, name: str) -> None:
        return None

    def labelled_containers(self, label: str) -> list[tuple[str, str]]:
        return []


def test_an_image_is_inspected_once_for_scanmeta_and_the_user_lookup() -> None:
    runtime = CountingRuntime()
    targets = runtime.resolve_all(["localhost/app:1"])
    configs = runtime.target_configs(list(targets.values()))
    assert configs[IMAGE] is not None
    assert runtime.image_user(IMAGE) == "app"
    assert runtime.inspects == [("image", (IMAGE,))]


def test_a_container_inspected_to_mount_is_not_inspected_again_for_scanmeta(
        tmp_path: Path) -> None:
    runtime = CountingRuntime()
    target = runtime.resolve_all(["web"])["web"]
    with runtime.mount_rootfs(target, lambda _: None, tmp_path):
        pass
    assert runtime.target_configs([target])[CONTAINER] is not None
    assert runtime.inspects == [("container", (CONTAINER,))]


def test_a_new_run_forgets_the_last_runs_inspects() -> None:
    runtime = CountingRuntime()
    runtime.resolve_all(["localhost/app:1"])
    runtime.image_user(IMAGE)
    runtime.known["image"][IMAGE] = {"Id": IMAGE, "Config": {"User": "other"}}
    runtime.resolve_all(["localhost/app:1"])
    assert runtime.image_user(IMAGE) == "other"
    assert len(runtime.inspects) == 2


def test_the_user_of_an_image_that_vanished_is_an_error() -> None:
    runtime = CountingRuntime()
    with pytest.raises(AtomicscanError, match="cannot inspect image"):
        runtime.image_user("b" * 64)
