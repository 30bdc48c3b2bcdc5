"""One shape for an image's or container's configuration, from podman's or docker's inspect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):  # podman gives a container's entrypoint as one string
        return [value]
    if isinstance(value, Sequence):
        return [str(item) for item in value]
    return None


def _keys(*mappings: Any) -> list[str]:
    found: set[str] = set()
    for mapping in mappings:
        if isinstance(mapping, Mapping):
            found.update(str(key) for key in mapping)
    return sorted(found)


def _healthcheck(*candidates: Any) -> dict[str, Any] | None:
    for candidate in candidates:
        if isinstance(candidate, Mapping) and candidate.get("Test"):
            test = _list(candidate.get("Test")) or []
            if test and test[0] != "NONE":
                return {"test": test}
    return None


def normalize(inspect: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The configuration a scanner sees in /scanmeta/targets.json (docs/scanner-contract.md)."""
    config = _mapping(inspect.get("Config"))
    host = _mapping(inspect.get("HostConfig"))
    network = _mapping(inspect.get("NetworkSettings"))
    labels = _mapping(config.get("Labels"))
    return {
        "user": str(config.get("User") or ""),
        "env": _list(config.get("Env")) or [],
        "entrypoint": _list(config.get("Entrypoint")),
        "cmd": _list(config.get("Cmd")),
        "exposed_ports": _keys(config.get("ExposedPorts"), host.get("PortBindings"),
                               network.get("Ports")),
        "labels": {str(k): str(v) for k, v in labels.items()},
        # Docker keeps it in Config; podman's image inspect at the top, under either case.
        "healthcheck": _healthcheck(config.get("Healthcheck"), inspect.get("HealthCheck"),
                                    inspect.get("Healthcheck"), config.get("HealthCheck")),
        "volumes": _keys(config.get("Volumes")),
        "working_dir": str(config.get("WorkingDir") or ""),
        "names": list(names),
        # What a history of scans needs to tell targets apart over time.
        "image_id": _image_id(inspect.get("Image")),
        "digests": sorted(str(d) for d in inspect.get("RepoDigests") or ()
                          if isinstance(d, str))[:100],
        "state": _state(inspect.get("State")),
    }


def _image_id(value: Any) -> str | None:
    """A container's image, by ID (docker prefixes ``sha256:``)."""
    return value.removeprefix("sha256:") or None if isinstance(value, str) else None


def _state(value: Any) -> str | None:
    """A container's state (``running``, ``exited``...); podman and docker both say Status."""
    status = _mapping(value).get("Status")
    return str(status) if status else None


#: The keys of a target's configuration kept in its result's ``target_meta``.
META_KEYS = ("labels", "image_id", "digests", "state")


def target_meta(names: Sequence[str], config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A target's identity for reports and the history: its names (tags), and from its
    configuration its labels, digests, image ID (a container's) and state."""
    meta: dict[str, Any] = {"names": list(names)}
    for key in META_KEYS:
        if config is not None and config.get(key) not in (None, [], {}):
            meta[key] = config[key]
    return meta
