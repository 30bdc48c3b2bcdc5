"""Shared test configuration: the real tier needs root, podman and the test bed images."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In CI a real-tier test may never skip for lack of root: fail loudly instead."""
    if os.geteuid() == 0 or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="real tier needs root (sudo scripts/test)")
    for item in items:
        if "real" in item.keywords:
            item.add_marker(skip)
