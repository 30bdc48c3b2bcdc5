"""podman's image list from containers/storage's own index (issue 17), fast tier: read only
when podman counts the same images, else the CLI listing, as before."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from atomicscan.builtin import podman_store
from atomicscan.builtin.podman import PodmanRuntime
from atomicscan.builtin.podman_store import candidates, read_index, store_facts
from atomicscan.proc import Completed


def read_image_index(path: Path) -> list[tuple[str, tuple[str, ...]]] | None:
    rows = read_index(path)
    return None if rows is None else [(c.id, c.names) for c in candidates(rows)]

A, B = "a" * 64, "b" * 64


def _index(path: Path, rows: Any) -> Path:
    index = path / "overlay-images" / "images.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps(rows))
    return index


def _store(root: Path, count: int) -> str:
    return json.dumps({"graphRoot": str(root), "graphDriverName": "overlay",
                       "imageStore": {"number": count}})


def test_the_store_facts_name_the_index_and_the_count(tmp_path: Path) -> None:
    facts = store_facts(_store(tmp_path, 2))
    assert facts is not None
    assert facts.index == tmp_path / "overlay-images" / "images.json"
    assert facts.images == 2
    for bad in ("", "[]", "not json", json.dumps({"graphRoot": "relative",
                                                   "graphDriverName": "overlay",
                                                   "imageStore": {"number": 1}}),
                json.dumps({"graphRoot": "/x", "graphDriverName": "../x",
                            "imageStore": {"number": 1}})):
        assert store_facts(bad) is None


def test_the_index_gives_ids_and_names(tmp_path: Path) -> None:
    index = _index(tmp_path, [{"id": A, "names": ["localhost/a:1", "localhost/a:latest"]},
                              {"id": B, "layer": "x"}])
    listed = read_image_index(index)
    assert listed is not None
    assert listed == [
        (A, ("localhost/a:1", "localhost/a:latest")), (B, ())]


@pytest.mark.parametrize("rows", [
    {"id": A}, [{"id": "short", "names": []}], [{"id": A, "names": "one"}],
    [{"id": A, "names": [1]}], ["x"]])
def test_an_index_not_shaped_as_containers_storage_writes_it_is_not_used(
    tmp_path: Path, rows: Any
) -> None:
    assert read_image_index(_index(tmp_path, rows)) is None


def test_a_missing_or_oversized_index_is_not_used(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_image_index(tmp_path / "missing.json") is None
    index = _index(tmp_path, [{"id": A, "names": []}])
    monkeypatch.setattr(podman_store, "MAX_INDEX_BYTES", 10)
    assert read_image_index(index) is None


class _Podman:
    def __init__(self, info: str) -> None:
        self.info = info
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str, check: bool = True, timeout: float = 300.0) -> Completed:
        self.calls.append(args)
        if args[0] == "info":
            return Completed(args, 0, self.info, "")
        listing = [{"Id": B, "Names": ["localhost/from-cli:latest"]}]
        return Completed(args, 0, json.dumps(listing), "")


def test_the_index_is_read_when_podman_counts_the_same(tmp_path: Path) -> None:
    _index(tmp_path, [{"id": A, "names": ["localhost/a:latest"]}])
    runtime = PodmanRuntime()
    fake = _Podman(_store(tmp_path, 1))
    runtime._podman = fake  # type: ignore[method-assign]
    assert [c.id for c in runtime._images()] == [A]
    assert [call[0] for call in fake.calls] == ["info"]


def test_a_different_count_falls_back_to_the_cli_listing(tmp_path: Path) -> None:
    _index(tmp_path, [{"id": A, "names": ["localhost/a:latest"]}])
    runtime = PodmanRuntime()
    fake = _Podman(_store(tmp_path, 2))  # an additional store, or a load in between
    runtime._podman = fake  # type: ignore[method-assign]
    assert [c.names for c in runtime._images()] == [("localhost/from-cli:latest",)]
    assert [call[0] for call in fake.calls] == ["info", "info", "images"]


def test_names_the_index_holds_are_inspected_from_it_without_podman(tmp_path: Path) -> None:
    config = json.dumps({"config": {"User": "app", "Entrypoint": []}}).encode()
    image_id = hashlib.sha256(config).hexdigest()
    index = _index(tmp_path, [{"id": image_id, "names": ["localhost/app:1"],
                               "digest": "sha256:" + "d" * 64}])
    blob = index.parent / image_id / ("=" + base64.b64encode(
        f"sha256:{image_id}".encode()).decode())
    blob.parent.mkdir()
    blob.write_bytes(config)
    runtime = PodmanRuntime()
    fake = _Podman(_store(tmp_path, 1))
    runtime._podman = fake  # type: ignore[method-assign]
    found = runtime._inspect_many("image", ["localhost/app:1"])
    assert list(found) == [image_id]
    assert found[image_id]["Config"] == {"User": "app"}  # empty fields left out, as podman
    assert found[image_id]["RepoDigests"] == ["localhost/app@sha256:" + "d" * 64]
    assert [call[0] for call in fake.calls] == ["info"]
    blob.write_bytes(config + b" ")  # no longer the image's configuration: podman answers
    runtime._new_run()
    runtime._inspect_many("image", [image_id])
    assert [call[:2] for call in fake.calls[1:]] == [("info", "--format"), ("image", "inspect")]
