"""The docker devicemapper path for real: only in the Vagrant box (see Vagrantfile).

This machine's kernel has no device-mapper; here the same code is covered by the fake in
tests/unit/test_devicemapper_fake.py. In the box, provisioning starts a dockerd on a
loop-backed thin pool and exports its socket as ATOMICSCAN_TEST_DM_DOCKER_HOST.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import truth
from helpers import ALPINE, PACKAGES_SCANNER, Atomicscan, mounted_image, packages_of, podman_env

DM_HOST = os.environ.get("ATOMICSCAN_TEST_DM_DOCKER_HOST", "")

pytestmark = pytest.mark.skipif(
    not DM_HOST, reason="needs the Vagrant box's devicemapper dockerd (no device-mapper here)")


def _load(image: str) -> None:
    save = subprocess.Popen(["podman", "save", "--format", "docker-archive", image],
                            stdout=subprocess.PIPE, env=podman_env())
    subprocess.run(["docker", "load"], stdin=save.stdout, check=True, capture_output=True,
                   env=dict(os.environ, DOCKER_HOST=DM_HOST))
    assert save.wait() == 0


def test_devicemapper_image_scan_equals_truth(tmp_path: Path) -> None:
    for image in (ALPINE, PACKAGES_SCANNER):
        _load(image)
    with mounted_image(ALPINE) as root:
        expected = truth.apk_packages(root)
    scan = Atomicscan(tmp_path, "docker")
    env = dict(scan.env, DOCKER_HOST=DM_HOST)
    done = subprocess.run(scan.argv("--scanner", "packages", "--json", ALPINE),
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    import json

    (result,) = json.loads(done.stdout)["results"]
    assert packages_of(result) == expected
    mapped = subprocess.run(["dmsetup", "ls"], capture_output=True, text=True, check=True)
    assert "atomicscan-" not in mapped.stdout, "a thin device of ours is still active"
