"""podman 4.3 puts an image's HEALTHCHECK at the top of `image inspect`, spelled Healthcheck."""

from __future__ import annotations

from atomicscan.targetconfig import normalize


def test_podman_image_healthcheck_spelling() -> None:
    config = normalize({"Config": {}, "Healthcheck": {"Test": ["CMD", "true"]}}, [])
    assert config["healthcheck"] == {"test": ["CMD", "true"]}
