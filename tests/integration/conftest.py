"""Real-tier fixtures: every test here runs real podman on the test bed's real images."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd import import_from_podman, private_containerd
from dockerd import load_from_podman, private_dockerd
from helpers import (
    ALPINE,
    DEBIAN,
    LINT_BAD,
    LINT_CLEAN,
    PACKAGES_SCANNER,
    PURGED,
    RPM_BDB,
    RPM_SQLITE,
    TESTBED_IMAGES,
    Atomicscan,
    Engine,
    HostSnapshot,
    podman,
    podman_env,
    snapshot,
)
from postgres import fresh_database, throwaway_postgresql


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # pytestmark in a conftest marks nothing: the real mark has to be added here.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real)


RUNTIMES = ("podman", "docker", "containerd")
#: The test images as targets in containerd's k8s.io namespace, where Kubernetes keeps them.
CONTAINERD_TARGETS = (DEBIAN, RPM_SQLITE, RPM_BDB, ALPINE, PURGED, LINT_BAD, LINT_CLEAN)


@pytest.fixture(scope="session", autouse=True)
def _testbed() -> Iterator[None]:
    """The test bed images in podman, and a private dockerd holding the same images."""
    missing = [name for name in TESTBED_IMAGES
               if podman("image", "exists", name, check=False).returncode != 0]
    if missing:
        pytest.fail(f"test bed images missing: {missing}; run scripts/setup", pytrace=False)
    with private_dockerd() as docker_host:
        for name in TESTBED_IMAGES:
            load_from_podman(name, podman_env())
        previous = os.environ.get("DOCKER_HOST")
        os.environ["DOCKER_HOST"] = docker_host
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = previous


@pytest.fixture(scope="session")
def containerd_daemon() -> Iterator[str]:
    """A private containerd holding the test images (started by the first test that needs
    it, stopped by PID at the end of the session)."""
    with private_containerd() as address:
        for image in CONTAINERD_TARGETS:
            import_from_podman(image, podman_env(), address)
        # Where `ctr run` finds a scanner image when podman and docker are not used.
        import_from_podman(PACKAGES_SCANNER, podman_env(), address, namespace="default")
        yield address


@pytest.fixture
def containerd_address(containerd_daemon: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The private containerd, named in ``CONTAINERD_ADDRESS`` for this test only: the other
    runtimes' tests see the host as it is."""
    monkeypatch.setenv("CONTAINERD_ADDRESS", containerd_daemon)
    return containerd_daemon


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    if request.param == "containerd":
        request.getfixturevalue("containerd_address")
    return str(request.param)


@pytest.fixture
def atomicscan(tmp_path: Path, runtime: str) -> Atomicscan:
    return Atomicscan(tmp_path, runtime)


@pytest.fixture
def engine(atomicscan: Atomicscan) -> Engine:
    return atomicscan.engine


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def containers(engine: Engine) -> Iterator[list[str]]:
    """Names of test containers to remove at the end, whatever happens."""
    names: list[str] = []
    yield names
    for name in names:
        engine("rm", "--force", name, check=False)


@pytest.fixture
def host_before(atomicscan: Atomicscan) -> HostSnapshot:
    return snapshot(atomicscan.state_dir)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A throwaway PostgreSQL 15 for the session (started when first asked for, stopped by
    PID at the end)."""
    with throwaway_postgresql() as url:
        yield url


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """An empty database of its own on the session's PostgreSQL."""
    return fresh_database(pg_server)
