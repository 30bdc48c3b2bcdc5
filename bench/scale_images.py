"""Many distinct small images for the scale benchmark: one docker-archive, one `load`.

Each image is a single layer holding an os-release and a dpkg status file of its own
(20 packages whose versions carry the image's number), so every image has its own ID and
its own inventory. All of them carry one label, by which they are found and removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Every generated image carries this label; its value names the benchmark run.
BENCH_LABEL = "io.atomicscan.bench-scale"
#: Packages per generated image.
PACKAGES_PER_IMAGE = 20
OS_RELEASE = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
              'VERSION_ID="12"\nID=debian\nVERSION_CODENAME=bookworm\n')


def image_name(tag: str, index: int) -> str:
    return f"localhost/atomicscan-bench/scale-{tag}-{index:04d}:latest"


def dpkg_status(index: int) -> str:
    """A dpkg status file of :data:`PACKAGES_PER_IMAGE` packages unique to image ``index``."""
    stanzas = [
        f"Package: bench-pkg-{number:02d}\nStatus: install ok installed\nPriority: optional\n"
        f"Architecture: amd64\nVersion: 1.{number}.{index}-1\n"
        f"Description: generated package {number} of image {index}\n"
        for number in range(PACKAGES_PER_IMAGE)
    ]
    return "\n".join(stanzas)


def _add(archive: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 0
    if data is None:
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    else:
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


def layer_tar(index: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as layer:
        for directory in ("etc", "var", "var/lib", "var/lib/dpkg", "tmp"):
            _add(layer, directory, None, 0o1777 if directory == "tmp" else 0o755)
        _add(layer, "etc/os-release", OS_RELEASE.encode(), 0o644)
        _add(layer, "var/lib/dpkg/status", dpkg_status(index).encode(), 0o644)
    return buffer.getvalue()


def write_archive(path: Path, tag: str, stop: int, *, start: int = 0) -> list[str]:
    """A docker-archive at ``path`` holding images ``start`` to ``stop - 1``; their names."""
    manifest: list[dict[str, object]] = []
    names: list[str] = []
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for index in range(start, stop):
            layer = layer_tar(index)
            layer_digest = hashlib.sha256(layer).hexdigest()
            config = json.dumps({
                "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
                "config": {"Labels": {BENCH_LABEL: tag}, "Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
                "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "bench"}],
            }, sort_keys=True).encode()
            config_name = f"{hashlib.sha256(config).hexdigest()}.json"
            _add(archive, f"{layer_digest}", None, 0o755)
            _add(archive, f"{layer_digest}/layer.tar", layer, 0o644)
            _add(archive, config_name, config, 0o644)
            names.append(image_name(tag, index))
            manifest.append({"Config": config_name, "RepoTags": [names[-1]],
                             "Layers": [f"{layer_digest}/layer.tar"]})
        _add(archive, "manifest.json", json.dumps(manifest).encode(), 0o644)
    return names


def labelled_images(binary: str, tag: str | None = None, *,
                    env: Mapping[str, str] | None = None) -> list[str]:
    """IDs of the images carrying the bench label (with value ``tag`` when given)."""
    selector = BENCH_LABEL if tag is None else f"{BENCH_LABEL}={tag}"
    result = subprocess.run([binary, "images", "--all", "--no-trunc", "--filter",
                             f"label={selector}", "--format", "{{.ID}}"],
                            capture_output=True, text=True, check=False, timeout=600,
                            env=None if env is None else dict(env))
    return sorted({line.strip().removeprefix("sha256:")
                   for line in result.stdout.splitlines() if line.strip()})


def remove_images(binary: str, ids: Sequence[str], *,
                  env: Mapping[str, str] | None = None) -> None:
    """Remove images by ID, a few hundred per command; errors are reported, not raised."""
    for start in range(0, len(ids), 200):
        subprocess.run([binary, "rmi", "--force", *ids[start:start + 200]],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                       timeout=3600, env=None if env is None else dict(env))
