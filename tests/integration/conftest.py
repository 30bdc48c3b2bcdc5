"""Real-tier fixtures: every test here runs real podman on the test bed's real images."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TESTBED_IMAGES, Atomicscan, podman, snapshot

pytestmark = pytest.mark.real


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real)


@pytest.fixture(scope="session", autouse=True)
def _testbed() -> None:
    missing = [name for name in TESTBED_IMAGES
               if podman("image", "exists", name, check=False).returncode != 0]
    if missing:
        pytest.fail(f"test bed images missing: {missing}; run scripts/setup", pytrace=False)


@pytest.fixture
def atomicscan(tmp_path: Path) -> Atomicscan:
    return Atomicscan(tmp_path)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of test containers to remove at the end, whatever happens."""
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--time", "0", name, check=False)


@pytest.fixture
def host_before(atomicscan: Atomicscan) -> object:
    return snapshot(atomicscan.state_dir)
