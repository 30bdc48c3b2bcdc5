"""Shared test configuration: the real tier needs root, podman and the test bed images."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In CI a real-tier test may never skip for lack of root: fail loudly instead."""
    if os.geteuid() == 0 or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="real tier needs root (sudo scripts/test)")
    for item in items:
        if "real" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _private_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every run a test makes (and every atomicscan it starts) records into a history of
    the session's own, never into the host's /var/lib/atomicscan/history.db."""
    url = f"sqlite:///{tmp_path_factory.mktemp('history') / 'history.db'}"
    previous = os.environ.get("ATOMICSCAN_DB")
    os.environ["ATOMICSCAN_DB"] = url
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("ATOMICSCAN_DB", None)
        else:
            os.environ["ATOMICSCAN_DB"] = previous
