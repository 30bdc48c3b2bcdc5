"""Normalizing podman's and docker's inspect output into the scanner's config shape."""

from __future__ import annotations

from typing import Any

from atomicscan.targetconfig import normalize, target_meta


def test_docker_style_image() -> None:
    inspect: dict[str, Any] = {
        "Config": {"User": "app", "Env": ["A=1"], "Entrypoint": ["/init"], "Cmd": None,
                   "ExposedPorts": {"22/tcp": {}, "80/tcp": {}},
                   "Healthcheck": {"Test": ["CMD", "true"]},
                   "Volumes": {"/data": {}}, "WorkingDir": "/srv",
                   "Labels": {"a": "b"}}}
    config = normalize(inspect, ["web:1.0"])
    assert config == {"user": "app", "env": ["A=1"], "entrypoint": ["/init"], "cmd": None,
                      "exposed_ports": ["22/tcp", "80/tcp"], "labels": {"a": "b"},
                      "healthcheck": {"test": ["CMD", "true"]}, "volumes": ["/data"],
                      "working_dir": "/srv", "names": ["web:1.0"], "image_id": None,
                      "digests": [], "state": None}


def test_the_identity_a_history_needs() -> None:
    container = normalize({"Image": "sha256:" + "a" * 64, "State": {"Status": "running"},
                           "Config": {"Labels": {"app": "web"}}}, ["web"])
    assert (container["image_id"], container["state"]) == ("a" * 64, "running")
    image = normalize({"RepoDigests": ["x@sha256:1", 5], "Config": {}}, ["x:1"])
    assert image["digests"] == ["x@sha256:1"]
    assert target_meta(["web", "x:1"], container) == {
        "names": ["web", "x:1"], "labels": {"app": "web"}, "image_id": "a" * 64,
        "state": "running"}
    assert target_meta(["/srv"], None) == {"names": ["/srv"]}


def test_podman_container_quirks() -> None:
    inspect = {"Config": {"User": "", "Entrypoint": "", "Cmd": ["sleep", "1"], "Labels": None,
                          "Healthcheck": {"Test": ["NONE"]}},
               "HostConfig": {"PortBindings": {"22/tcp": [{"HostPort": "2222"}]}},
               "HealthCheck": None}
    config = normalize(inspect, [])
    assert config["entrypoint"] is None
    assert config["exposed_ports"] == ["22/tcp"]
    assert config["healthcheck"] is None, "HEALTHCHECK NONE disables it"
    assert config["labels"] == {}


def test_image_level_healthcheck_as_podman_reports_it() -> None:
    config = normalize({"Config": {}, "HealthCheck": {"Test": ["CMD-SHELL", "curl -f x"]}}, [])
    assert config["healthcheck"] == {"test": ["CMD-SHELL", "curl -f x"]}
