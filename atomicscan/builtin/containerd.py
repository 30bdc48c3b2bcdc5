"""The containerd runtime plugin: containerd's images and containers, through its CLI ``ctr``.

It is written against the public plugin API only (``from atomicscan import ...``), the way a
third party would write a runtime. How names look, what is mounted and what runs the
scanners is described in docs/containerd.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atomicscan import (
    AtomicscanError,
    Candidate,
    CommandError,
    Completed,
    ListingRuntime,
    MountError,
    Runtime,
    RuntimeRegistry,
    RuntimeUnavailableError,
    ScannerContainer,
    Target,
    UsageError,
    hookimpl,
    isolation_flags,
    real_root,
    run_bounded,
)
from atomicscan.builtin.containerd_spec import scanner_spec

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
#: ctr's own default snapshotter, unless CONTAINERD_SNAPSHOTTER says otherwise.
DEFAULT_SNAPSHOTTER = "overlayfs"
#: The runtimes that may run scanner containers for containerd targets, best first.
SCANNER_RUNTIMES = ("podman", "docker")
#: "podman", "docker" or "ctr": what runs the scanners (default: podman, docker, then ctr).
SCANNERS_ENV = "ATOMICSCAN_CONTAINERD_SCANNERS"
#: Where ctr looks for scanner images and runs scanners, unless CONTAINERD_NAMESPACE is set.
SCANNER_NAMESPACE = "default"
#: docker's namespace in containerd: searched only when CONTAINERD_NAMESPACE names it.
DOCKER_NAMESPACE = "moby"
#: Every snapshot atomicscan creates has a key starting with this; undo removes no other.
SNAPSHOT_PREFIX = "atomicscan-"
#: The key of a scanner image's view snapshot: this, then the scanner container's name.
SCANNER_SNAPSHOT_PREFIX = "atomicscan-scanner-"
#: Keeps a view safe from containerd's garbage collector while it is mounted.
GC_ROOT_LABEL = "containerd.io/gc.root"
COMMAND_TIMEOUT = 120.0
#: How long ctr waits for the daemon's socket (its own default is 10s, per command).
CONNECT_TIMEOUT = "5s"
#: ctr's output is containerd's and small; a cap keeps a broken one from eating memory.
OUTPUT_LIMIT = 64 * 1024 * 1024
#: Longest mount option string the kernel takes (one page, less a margin).
MAX_MOUNT_OPTIONS = 4000
#: Where ``ctr snapshots mounts`` is told the mount would go; only its options are used.
MOUNTS_MARK = "/atomicscan-mount-target"
#: The separator in a namespace-qualified container key: identifiers never hold two in a row.
KEY_SEPARATOR = "--"

#: containerd's rule for namespaces, container IDs and snapshot keys.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_INDEX_TYPES = frozenset({"application/vnd.oci.image.index.v1+json",
                          "application/vnd.docker.distribution.manifest.list.v2+json"})
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64"}

#: Runs an argv list with a timeout in seconds (and a working directory) to completion.
Runner = Callable[[Sequence[str], float, Path | None], Completed]


def _run(argv: Sequence[str], timeout: float, cwd: Path | None = None) -> Completed:
    return run_bounded(argv, timeout=timeout, output_limit=OUTPUT_LIMIT, cwd=cwd)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def is_identifier(text: str) -> bool:
    return len(text) <= 76 and bool(_IDENTIFIER.match(text))


# -- parsing ctr's output ---------------------------------------------------------------

def parse_namespaces(text: str) -> list[str]:
    """``ctr namespaces ls -q``: one name a line."""
    return sorted({line.strip() for line in text.splitlines() if is_identifier(line.strip())})


def parse_images(text: str) -> list[tuple[str, str]]:
    """``ctr images ls``: ``(reference, digest)`` of each row (REF TYPE DIGEST SIZE ...)."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] != "REF" and _DIGEST.match(fields[2]) \
                and fields[0].isprintable():
            rows.append((fields[0], fields[2]))
    return rows


def parse_containers(text: str) -> list[tuple[str, str]]:
    """``ctr containers ls``: ``(id, image)`` of each row; image is empty when it has none."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] == "CONTAINER" or not is_identifier(fields[0]):
            continue
        image = fields[1] if len(fields) >= 3 and fields[1] != "-" else ""
        rows.append((fields[0], image))
    return rows


def parse_tasks(text: str) -> dict[str, str]:
    """``ctr tasks ls``: each task's status (``running``, ``stopped``...), by container ID."""
    status = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] != "TASK" and is_identifier(fields[0]):
            status[fields[0]] = fields[2].lower()
    return status


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MountError(f"containerd gave unreadable JSON for {what}: {exc}") from None


def chain_id(diff_ids: Sequence[str]) -> str:
    """The committed snapshot of an image's layers: the OCI chain ID of its last layer."""
    if not diff_ids:
        raise MountError("the image has no layers")
    chain = diff_ids[0]
    for diff in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff}".encode()).hexdigest()
    return chain


def host_platform() -> tuple[str, str]:
    machine = platform.machine()
    return "linux", _ARCHES.get(machine, machine)


def pick_manifest(index: Mapping[str, Any], wanted: tuple[str, str] | None = None) -> str:
    """The digest of the manifest for this host's platform in an image index."""
    os_name, arch = wanted or host_platform()
    for entry in index.get("manifests") or ():
        if not isinstance(entry, Mapping):
            continue
        plat = entry.get("platform")
        plat = plat if isinstance(plat, Mapping) else {}
        digest = str(entry.get("digest") or "")
        if plat.get("os") == os_name and plat.get("architecture") == arch and _DIGEST.match(digest):
            return digest
    raise MountError(f"the image has no manifest for {os_name}/{arch}")


# -- mount plans ------------------------------------------------------------------------

@dataclass(frozen=True)
class MountPlan:
    """One read-only mount: ``mount -t fstype -o options source DEST``."""

    fstype: str
    source: str
    options: tuple[str, ...]

    def argv(self, destination: Path) -> list[str]:
        return ["mount", "-t", self.fstype, "-o", ",".join(self.options), "--", self.source,
                str(destination)]


def _safe_dir(path: str) -> str:
    # containerd's own paths; a separator in one would let it add mount options.
    if not path.startswith("/") or any(c in path for c in ",:=") or not path.isprintable():
        raise MountError(f"containerd gave a snapshot path that can't be mounted: {path!r}")
    return path


def _overlay(lowerdirs: Sequence[str], extra: Sequence[str]) -> MountPlan:
    if len(lowerdirs) == 1:
        # A one-lowerdir overlay is refused by some kernels: bind that directory instead.
        return MountPlan("none", lowerdirs[0], ("bind", "ro"))
    keep = tuple(option for option in extra if option in ("index=off", "userxattr"))
    return MountPlan("overlay", "overlay",
                     ("ro", *keep, "lowerdir=" + ":".join(_safe_dir(d) for d in lowerdirs)))


def _options(raw: Sequence[Any]) -> tuple[list[str], dict[str, str]]:
    """Mount options as the ones to keep (no layer directories) and the ``key=value`` ones."""
    kept, values = [], {}
    for option in raw:
        text = str(option)
        key, equals, value = text.partition("=")
        if equals:
            values[key] = value
        if key not in ("lowerdir", "upperdir", "workdir"):
            kept.append(text)
    return kept, values


def view_plan(mounts: Any) -> MountPlan:
    """What ``ctr snapshots view --mounts`` printed (JSON), as one read-only mount."""
    if not isinstance(mounts, list) or len(mounts) != 1 or not isinstance(mounts[0], Mapping):
        raise MountError(f"containerd gave an unexpected mount list: {str(mounts)[:200]}")
    mount = mounts[0]
    flags, values = _options(mount.get("Options") or mount.get("options") or ())
    fstype = str(mount.get("Type") or mount.get("type") or "")
    source = str(mount.get("Source") or mount.get("source") or "")
    if fstype == "bind":
        return MountPlan("none", _safe_dir(source), ("bind", "ro"))
    if fstype == "overlay" and values.get("lowerdir"):
        return _overlay(values["lowerdir"].split(":"), flags)
    raise MountError(f"containerd's snapshot mount of type {fstype!r} is not supported "
                     "(overlayfs and native snapshotters are)")


def scratch_plan(mounts: Any) -> MountPlan:
    """A scanner's own throwaway snapshot (``ctr snapshots prepare --mounts``), mounted as
    containerd describes it, writable: the scanner's spec makes its root read-only."""
    if not isinstance(mounts, list) or len(mounts) != 1 or not isinstance(mounts[0], Mapping):
        raise MountError(f"containerd gave an unexpected mount list: {str(mounts)[:200]}")
    mount = mounts[0]
    fstype = str(mount.get("Type") or "")
    options = [str(o) for o in mount.get("Options") or ()]
    for option in options:
        key, _, value = option.partition("=")
        if key in ("lowerdir", "upperdir", "workdir"):
            for path in value.split(":"):
                _safe_dir(path)
        elif not re.fullmatch(r"[a-z_]+(=[a-z0-9]+)?", option):
            raise MountError(f"containerd gave an unexpected mount option {option!r}")
    if fstype == "bind":
        return MountPlan("none", _safe_dir(str(mount.get("Source") or "")), ("bind", "rw"))
    if fstype == "overlay":
        return MountPlan("overlay", "overlay", tuple(options))
    raise MountError(f"containerd's snapshot mount of type {fstype!r} is not supported "
                     "(overlayfs and native snapshotters are)")


_MOUNT_LINE = re.compile(r"^mount -t (\S+) (\S+) " + re.escape(MOUNTS_MARK) + r" -o (\S*)$")


def parse_mount_lines(text: str) -> list[dict[str, Any]]:
    """``ctr snapshots mounts MARK KEY`` (shell lines) as the JSON form ``view --mounts`` gives."""
    mounts = []
    for line in text.splitlines():
        match = _MOUNT_LINE.match(line.strip())
        if match:
            mounts.append({"Type": match.group(1), "Source": match.group(2),
                           "Options": match.group(3).split(",") if match.group(3) else []})
    return mounts


def container_plan(mounts: Any) -> MountPlan:
    """A container's live snapshot as a read-only mount of its own: the writable layer on top
    of the image's layers, never the container's read-write mount itself."""
    if not isinstance(mounts, list) or len(mounts) != 1 or not isinstance(mounts[0], Mapping):
        raise MountError(f"containerd gave an unexpected mount list: {str(mounts)[:200]}")
    mount = mounts[0]
    flags, values = _options(mount.get("Options") or ())
    fstype = str(mount.get("Type") or "")
    if fstype == "bind":
        return MountPlan("none", _safe_dir(str(mount.get("Source") or "")), ("bind", "ro"))
    if fstype == "overlay" and values.get("upperdir"):
        lower = [d for d in values.get("lowerdir", "").split(":") if d]
        return _overlay([values["upperdir"], *lower], flags)
    if fstype == "overlay" and values.get("lowerdir"):
        return _overlay(values["lowerdir"].split(":"), flags)
    raise MountError(f"containerd's snapshot mount of type {fstype!r} is not supported "
                     "(overlayfs and native snapshotters are)")


def shortened(plan: MountPlan) -> tuple[MountPlan, Path | None]:
    """``plan`` with lowerdirs relative to their common parent when the options would be
    longer than the kernel takes (many layers); the mount then runs in that parent."""
    text = ",".join(plan.options)
    if len(text) <= MAX_MOUNT_OPTIONS or plan.fstype != "overlay":
        return plan, None
    lower = next(o for o in plan.options if o.startswith("lowerdir=")).removeprefix("lowerdir=")
    dirs = lower.split(":")
    parent = os.path.commonpath(dirs)
    relative = ":".join(os.path.relpath(d, parent) for d in dirs)
    options = tuple(o if not o.startswith("lowerdir=") else f"lowerdir={relative}"
                    for o in plan.options)
    if len(",".join(options)) > MAX_MOUNT_OPTIONS:
        raise MountError(f"the image has too many layers to mount ({len(dirs)})")
    return MountPlan(plan.fstype, plan.source, options), Path(parent)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def repository(ref: str) -> str:
    """``ref`` without its tag (``docker.io/library/debian:12`` -> ``docker.io/library/debian``)."""
    head, slash, last = ref.rpartition("/")
    return f"{head}{slash}{last.partition(':')[0]}"


def mounted_paths() -> set[str]:
    found = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if len(fields) > 4:
                found.add(fields[4].replace("\\040", " ").replace("\\011", "\t")
                          .replace("\\012", "\n").replace("\\134", "\\"))
    return found


# -- what the listings found ------------------------------------------------------------

@dataclass(frozen=True)
class ImageRecord:
    """One reference in one namespace, and the digest it points at (a manifest or index)."""

    namespace: str
    ref: str
    digest: str


@dataclass(frozen=True)
class ImageConfig:
    """What a target needs from an image's config blob."""

    id: str
    """The config's digest without ``sha256:``, as podman and docker give an image ID."""
    manifest: str
    config: Mapping[str, Any]
    diff_ids: tuple[str, ...]


def _display_names(refs: Mapping[str, set[str]], owner: Mapping[tuple[str, str], str]
                   ) -> dict[str, list[str]]:
    """Each image's names: a reference as it is when it means one image in every namespace,
    ``namespace/reference`` when namespaces disagree on it."""
    names: dict[str, list[str]] = {}
    for (namespace, ref), image_id in sorted(owner.items()):
        name = ref if len(refs[ref]) == 1 else f"{namespace}/{ref}"
        if name not in names.setdefault(image_id, []):
            names[image_id].append(name)
    for image_id, found in names.items():
        tagged = [n for n in found if "@" not in n]
        names[image_id] = tagged or found  # digest references only when there is no tag
    return names


class ContainerdRuntime(ListingRuntime):
    """containerd, as root, through ``ctr``; scanners run in podman, docker or ``ctr run``."""

    name = "containerd"
    listing_hint = ("`ctr -n NAMESPACE containers ls` and `ctr -n NAMESPACE images ls` "
                    "(`ctr namespaces ls` lists the namespaces)")

    def __init__(self, registry: RuntimeRegistry | None = None, *, binary: str = "ctr",
                 runner: Runner = _run, environ: Mapping[str, str] | None = None,
                 mounted: Callable[[], set[str]] = mounted_paths) -> None:
        environ = os.environ if environ is None else environ
        self.binary = binary
        self.runner = runner
        self.mounted = mounted
        self.run_bounded = run_bounded
        """Runs the scanner's ``ctr run`` (a test may put a fake here)."""
        self.registry = registry
        self.address = environ.get("CONTAINERD_ADDRESS") or DEFAULT_ADDRESS
        self.namespace = environ.get("CONTAINERD_NAMESPACE") or None
        self.snapshotter = environ.get("CONTAINERD_SNAPSHOTTER") or DEFAULT_SNAPSHOTTER
        self._checked = False
        self._blobs: dict[tuple[str, str], Any] = {}
        self._records: list[ImageRecord] | None = None
        self._configs: dict[tuple[str, str], ImageConfig] = {}
        self._container_places: dict[str, tuple[str, str]] = {}
        self._qualified: dict[str, list[str]] = {}
        self._default_spec: dict[str, Any] | None = None
        self.scanners = environ.get(SCANNERS_ENV) or None

    # -- commands ------------------------------------------------------------------------

    def _ctr(self, namespace: str | None, *args: str, check: bool = True,
             timeout: float = COMMAND_TIMEOUT, address: str | None = None) -> Completed:
        argv = [self.binary, "--address", address or self.address,
                "--connect-timeout", CONNECT_TIMEOUT,
                *(("--namespace", namespace) if namespace else ()), *args]
        return self._command(argv, check=check, timeout=timeout)

    def _command(self, argv: Sequence[str], *, check: bool = True,
                 timeout: float = COMMAND_TIMEOUT, cwd: Path | None = None) -> Completed:
        done = self.runner(argv, timeout, cwd)
        if done.timed_out:
            raise CommandError(argv, -1, f"timed out after {timeout:.0f}s")
        if check and done.returncode != 0:
            raise CommandError(argv, done.returncode, done.stderr)
        return done

    def _where(self) -> str:
        if self.address == DEFAULT_ADDRESS:
            return f"the default socket {DEFAULT_ADDRESS} (CONTAINERD_ADDRESS is not set)"
        return f"CONTAINERD_ADDRESS={self.address}"

    def check(self) -> None:
        if self._checked:
            return
        if shutil.which(self.binary) is None:
            raise RuntimeUnavailableError(
                "containerd: ctr not found on PATH (apt install containerd)")
        if not real_root():
            raise RuntimeUnavailableError(
                "containerd: atomicscan needs root to mount containerd's snapshots; as a "
                "user, scan your own podman images and containers (--runtime podman)")
        if not Path(self.address).exists():
            raise RuntimeUnavailableError(f"containerd: no daemon socket at {self._where()}")
        try:
            result = self._ctr(None, "version", check=False, timeout=15.0)
        except CommandError as exc:
            raise RuntimeUnavailableError(
                f"containerd: no answer from {self._where()} within 15s") from exc
        if not result.ok:
            raise RuntimeUnavailableError(
                f"containerd: the daemon at {self._where()} is not usable: "
                f"{_last_line(result.stderr)}")
        self._checked = True

    # -- listings ------------------------------------------------------------------------

    def _namespaces(self) -> list[str]:
        if self.namespace:
            return [self.namespace]
        # docker's own namespace holds its containers without a containerd snapshot: they
        # are docker's targets, and listing them here would make every one ambiguous.
        return [namespace for namespace in
                parse_namespaces(self._ctr(None, "namespaces", "ls", "-q").stdout)
                if namespace != DOCKER_NAMESPACE]

    def _new_run(self) -> None:
        super()._new_run()
        self._records = None
        self._configs.clear()
        self._container_places.clear()

    def _image_records(self) -> list[ImageRecord]:
        if self._records is None:
            self._records = [
                ImageRecord(namespace, ref, digest)
                for namespace in self._namespaces()
                for ref, digest in parse_images(self._ctr(namespace, "images", "ls").stdout)
                # The CRI names each image by its config digest too: that is its ID.
                if not ref.startswith("sha256:")
            ]
        return self._records

    def _blob(self, namespace: str, digest: str) -> Any:
        # Content is addressed by digest: what one digest holds never changes.
        if (namespace, digest) not in self._blobs:
            text = self._ctr(namespace, "content", "get", digest).stdout
            self._blobs[(namespace, digest)] = parse_json(text, digest)
        return self._blobs[(namespace, digest)]

    def _config(self, record: ImageRecord) -> ImageConfig:
        key = (record.namespace, record.digest)
        if key not in self._configs:
            manifest_digest = record.digest
            manifest = self._blob(record.namespace, manifest_digest)
            if not isinstance(manifest, Mapping):
                raise MountError(f"{record.ref}: its manifest is not a JSON object")
            if manifest.get("mediaType") in _INDEX_TYPES or "manifests" in manifest:
                manifest_digest = pick_manifest(manifest)
                manifest = self._blob(record.namespace, manifest_digest)
            config_ref = manifest.get("config") if isinstance(manifest, Mapping) else None
            digest = str(config_ref.get("digest") or "") if isinstance(config_ref, Mapping) \
                else ""
            if not _DIGEST.match(digest):
                raise MountError(f"{record.ref}: its manifest names no config")
            config = self._blob(record.namespace, digest)
            config = config if isinstance(config, Mapping) else {}
            rootfs = config.get("rootfs")
            diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, Mapping) else None
            self._configs[key] = ImageConfig(
                id=digest.removeprefix("sha256:"), manifest=manifest_digest, config=config,
                diff_ids=tuple(str(d) for d in diff_ids or () if _DIGEST.match(str(d))))
        return self._configs[key]

    def _image_table(self) -> dict[str, list[tuple[ImageRecord, ImageConfig]]]:
        """Every image by ID, with each reference (in each namespace) that names it."""
        table: dict[str, list[tuple[ImageRecord, ImageConfig]]] = {}
        for record in self._image_records():
            try:
                config = self._config(record)
            except AtomicscanError as exc:  # content missing (never pulled whole): skip it
                log.info("containerd: skipping %s in %s: %s", record.ref, record.namespace, exc)
                continue
            table.setdefault(config.id, []).append((record, config))
        return table

    def _images(self) -> list[Candidate]:
        table = self._image_table()
        refs: dict[str, set[str]] = {}
        owner: dict[tuple[str, str], str] = {}
        for image_id, entries in table.items():
            for record, _config in entries:
                refs.setdefault(record.ref, set()).add(image_id)
                owner[(record.namespace, record.ref)] = image_id
        names = _display_names(refs, owner)
        self._qualified = {image_id: sorted({f"{r.namespace}/{r.ref}" for r, _c in entries})
                           for image_id, entries in table.items()}
        return [Candidate(id=image_id, names=tuple(names.get(image_id, ())))
                for image_id in sorted(table)]

    def _matchable(self, image: Candidate) -> Candidate:
        # "k8s.io/docker.io/library/nginx:1" always names the image of that namespace.
        return Candidate(id=image.id, names=(*image.names, *self._qualified.get(image.id, ())))

    def _containers(self) -> list[Candidate]:
        rows: list[tuple[str, str, str, str]] = []
        for namespace in self._namespaces():
            states = parse_tasks(self._ctr(namespace, "tasks", "ls").stdout)
            rows += [(namespace, cid, image, states.get(cid, "created"))
                     for cid, image in parse_containers(
                         self._ctr(namespace, "containers", "ls").stdout)]
        seen: dict[str, int] = {}
        for _namespace, cid, _image, _status in rows:
            seen[cid] = seen.get(cid, 0) + 1
        found = []
        for namespace, cid, _image, status in rows:
            # An ID held by one namespace is the container's name and ID as it is; one held
            # by several is qualified, and the plain ID left as a name makes it ambiguous.
            qualified = f"{namespace}/{cid}"
            target_id = cid if seen[cid] == 1 else qualified
            names = (cid, qualified) if seen[cid] == 1 else (qualified, cid)
            self._container_places[target_id] = (namespace, cid)
            found.append(Candidate(id=target_id, names=names, running=status == "running"))
        return found

    def _target(self, ref: str, found: Candidate, kind: Any) -> Target:
        target = super()._target(ref, found, kind)
        # A directory name under /scanin: "k8s.io/web" becomes "k8s.io--web".
        key = found.id.replace("/", KEY_SEPARATOR)
        names = found.names[:1] if kind == "container" else found.names
        return Target(ref=ref, id=target.id, type=target.type, runtime=self.name, key=key,
                      names=names, running=target.running)

    def _place(self, container_id: str) -> tuple[str, str]:
        """The namespace and ID of a container given by its target ID."""
        if container_id not in self._container_places:
            self._containers()
        place = self._container_places.get(container_id)
        if place is None:
            raise MountError(f"container {container_id} is no longer in containerd")
        return place

    def _image_place(self, image_id: str) -> tuple[ImageRecord, ImageConfig]:
        entries = self._image_table().get(image_id)
        if not entries:
            self._records = None  # listed before it was removed, or after it was added
            entries = self._image_table().get(image_id)
        if not entries:
            raise MountError(f"image {image_id[:12]} is no longer in containerd")
        # The caller's namespace first, then k8s.io, then the rest in order.
        return sorted(entries, key=lambda e: (e[0].namespace != self.namespace,
                                              e[0].namespace != "k8s.io"))[0]

    # -- inspects --------------------------------------------------------------------------

    def _inspect_many(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for target_id in ids:
            try:
                found[target_id] = (self._inspect_container(target_id) if kind == "container"
                                    else self._inspect_image(target_id))
            except AtomicscanError as exc:
                log.info("containerd: cannot inspect %s %s: %s", kind, target_id, exc)
        return found

    def _inspect_image(self, image_id: str) -> dict[str, Any]:
        entries = self._image_table().get(image_id) or []
        if not entries:
            raise MountError(f"image {image_id[:12]} is not in containerd")
        config = entries[0][1].config
        repo_digests = sorted({r.ref if "@" in r.ref else f"{repository(r.ref)}@{c.manifest}"
                               for r, c in entries})
        return {"Id": image_id, "Config": config.get("config"),
                "RepoTags": sorted({r.ref for r, _c in entries if "@" not in r.ref}),
                "RepoDigests": repo_digests}

    def _container_info(self, target_id: str) -> tuple[str, dict[str, Any]]:
        namespace, cid = self._place(target_id)
        try:
            info = parse_json(self._ctr(namespace, "containers", "info", cid).stdout, cid)
        except CommandError as exc:
            raise MountError(f"containerd cannot inspect container {target_id}: {exc}") from exc
        if not isinstance(info, dict):
            raise MountError(f"containerd gave nothing usable for container {target_id}")
        return namespace, info

    def _inspect_container(self, target_id: str) -> dict[str, Any]:
        namespace, info = self._container_info(target_id)
        return self._container_inspect(target_id, namespace, info)

    def _container_inspect(self, target_id: str, namespace: str, info: Mapping[str, Any]
                           ) -> dict[str, Any]:
        """``info`` in the shape of a podman or docker container inspect."""
        process = _mapping(_mapping(info.get("Spec")).get("process"))
        user = _mapping(process.get("user"))
        uid, gid = user.get("uid", 0), user.get("gid", 0)
        labels = _mapping(info.get("Labels"))
        image_ref = str(info.get("Image") or "")
        image_id = next((c.id for r, c in self._configs_of(namespace, image_ref)), None)
        status = parse_tasks(self._ctr(namespace, "tasks", "ls", check=False).stdout).get(
            str(info.get("ID") or ""), "created")
        inspect = {
            "Id": target_id,
            "Config": {
                "User": str(user.get("username") or "") or ("" if uid == gid == 0
                                                             else f"{uid}:{gid}"),
                "Env": process.get("env"),
                "Cmd": process.get("args"),
                "WorkingDir": process.get("cwd"),
                "Labels": dict(labels),
            },
            "Image": image_id,
            "ImageName": image_ref,
            "State": {"Status": status},
            "Namespace": namespace,
        }
        self._container_inspects[target_id] = inspect
        return inspect

    def _configs_of(self, namespace: str, ref: str) -> list[tuple[ImageRecord, ImageConfig]]:
        found = []
        for record in self._image_records():
            if record.namespace == namespace and record.ref == ref:
                with contextlib.suppress(AtomicscanError):
                    found.append((record, self._config(record)))
        return found

    @staticmethod
    def _created_from(inspect: Mapping[str, Any]) -> str | None:
        return str(inspect.get("ImageName") or "") or None

    # -- mounts ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def mount_rootfs(self, target: Target, journal: Callable[[dict[str, Any]], None],
                     workdir: Path) -> Iterator[Path]:
        if target.type not in ("image", "container"):
            raise MountError(f"containerd cannot mount a {target.type}")
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        destination = workdir / "rootfs"
        destination.mkdir(mode=0o700, exist_ok=True)
        with contextlib.ExitStack() as stack:
            if target.type == "image":
                plan = self._view(target, journal, stack)
            else:
                plan = self._container_snapshot(target)
            mount_record = {"runtime": self.name, "action": "mount", "id": target.id,
                            "path": str(destination)}
            journal(mount_record)
            stack.callback(self.undo, mount_record)
            self._mount(plan, destination)
            yield destination

    def _view(self, target: Target, journal: Callable[[dict[str, Any]], None],
              stack: contextlib.ExitStack) -> MountPlan:
        """A read-only view snapshot of the image's unpacked layers, removed with ``stack``."""
        record, config = self._image_place(target.id)
        parent = chain_id(config.diff_ids)
        key = f"{SNAPSHOT_PREFIX}{uuid.uuid4().hex}"
        view_record = {"runtime": self.name, "action": "snapshot-view", "id": target.id,
                       "address": self.address, "namespace": record.namespace,
                       "snapshotter": self.snapshotter, "key": key}
        journal(view_record)
        stack.callback(self.undo, view_record)
        try:
            text = self._ctr(record.namespace, "snapshots", "--snapshotter", self.snapshotter,
                             "view", "--mounts", key, parent).stdout
        except CommandError as exc:
            raise MountError(
                f"containerd has no unpacked snapshot of {target.ref} in {self.snapshotter} "
                f"(`ctr -n {record.namespace} images unpack` makes one): {exc}") from exc
        self._ctr(record.namespace, "snapshots", "--snapshotter", self.snapshotter, "label",
                  key, f"{GC_ROOT_LABEL}={target.id}", check=False)
        return view_plan(parse_json(text, f"snapshot {key}"))

    def _container_snapshot(self, target: Target) -> MountPlan:
        namespace, info = self._container_info(target.id)
        self._container_inspect(target.id, namespace, info)  # /scanmeta reuses it
        key = str(info.get("SnapshotKey") or "")
        snapshotter = str(info.get("Snapshotter") or self.snapshotter)
        if not key:
            raise MountError(f"container {target.ref} has no containerd snapshot (docker's "
                             "containers are scanned with --runtime docker)")
        text = self._ctr(namespace, "snapshots", "--snapshotter", snapshotter, "mounts",
                         MOUNTS_MARK, key).stdout
        return container_plan(parse_mount_lines(text))

    def _mount(self, plan: MountPlan, destination: Path) -> None:
        plan, cwd = shortened(plan)
        try:
            self._command(plan.argv(destination), cwd=cwd)
        except CommandError as exc:
            raise MountError(f"mount failed: {exc}") from exc

    def undo(self, record: Mapping[str, Any]) -> None:
        action = record.get("action")
        if action == "mount":
            path = str(record.get("path") or "")
            if path.startswith("/") and path in self.mounted() and \
                    not self._command(["umount", "--", path], check=False).ok:
                self._command(["umount", "--lazy", "--", path], check=False)
        elif action == "snapshot-view":
            key = str(record.get("key") or "")
            namespace = str(record.get("namespace") or "")
            snapshotter = str(record.get("snapshotter") or self.snapshotter)
            if not (key.startswith(SNAPSHOT_PREFIX) and is_identifier(key)
                    and is_identifier(namespace) and is_identifier(snapshotter)):
                log.warning("containerd: refusing to undo %s", dict(record))
                return
            self._ctr(namespace, "snapshots", "--snapshotter", snapshotter, "rm", key,
                      check=False, address=str(record.get("address") or self.address))

    # -- scanners --------------------------------------------------------------------------

    def _scanner_runtime(self) -> Runtime | None:
        """The runtime that runs scanner containers, or ``None`` for ``ctr run`` itself:
        podman, else docker, else ctr, unless ATOMICSCAN_CONTAINERD_SCANNERS names one."""
        chosen = self.scanners
        if chosen == "ctr":
            return None
        reasons = []
        for name in (chosen,) if chosen else SCANNER_RUNTIMES:
            if self.registry is None:
                break
            try:
                runtime = self.registry.get(name)
                runtime.check()
            except (RuntimeUnavailableError, UsageError) as exc:
                reasons.append(str(exc))
                continue
            return runtime
        if chosen:
            raise RuntimeUnavailableError(
                f"containerd: {SCANNERS_ENV}={chosen}, but {'; '.join(reasons) or 'it is unknown'}")
        return None

    def _scanner_namespace(self) -> str:
        return self.namespace or SCANNER_NAMESPACE

    def _scanner_image(self, image: str) -> ImageConfig | None:
        namespace = self._scanner_namespace()
        for record in self._image_records():
            if record.namespace == namespace and record.ref == image:
                return self._config(record)
        return None

    def image_id(self, image: str) -> str | None:
        try:
            runner = self._scanner_runtime()
        except RuntimeUnavailableError:
            return None
        if runner is not None:
            return runner.image_id(image)
        self._records = None  # imported since the run's listing, perhaps
        config = self._scanner_image(image)
        return config.id if config is not None else None

    def build_hint(self, image: str) -> str:
        try:
            runner = self._scanner_runtime()
        except RuntimeUnavailableError as exc:
            return str(exc)
        if runner is not None:
            return f"containerd runs scanners with {runner.name}: {runner.build_hint(image)}"
        return (f"containerd runs scanners with ctr: import it into namespace "
                f"{self._scanner_namespace()}: `podman save --format docker-archive {image} "
                f"| ctr -n {self._scanner_namespace()} images import -`")

    def run_scanner(self, container: ScannerContainer) -> Completed:
        runner = self._scanner_runtime()
        if runner is not None:
            return runner.run_scanner(container)
        return self._run_with_ctr(container)

    def _base_spec(self) -> Mapping[str, Any]:
        if self._default_spec is None:
            spec = parse_json(self._ctr(None, "oci", "spec").stdout, "ctr oci spec")
            self._default_spec = spec if isinstance(spec, dict) else {}
        return self._default_spec

    def _run_with_ctr(self, container: ScannerContainer) -> Completed:
        """The scanner through ``ctr run``, on a read-only view of its image, with a whole
        OCI spec of ours: ctr has no flag for the user, the pids limit or sized tmpfs."""
        if container.workdir is None or not is_identifier(container.name):
            raise MountError(f"ctr cannot run scanner {container.name!r} without a work "
                             "directory and a plain name")
        namespace = self._scanner_namespace()
        config = self._scanner_image(container.image)
        if config is None:
            raise MountError(f"scanner image {container.image} is not in containerd's "
                             f"namespace {namespace}; {self.build_hint(container.image)}")
        image = _mapping(config.config.get("config"))
        entrypoint = [str(a) for a in image.get("Entrypoint") or ()]
        command = list(container.args) or [str(a) for a in image.get("Cmd") or ()]
        rootfs = container.workdir / "scanner-rootfs"
        rootfs.mkdir(mode=0o755, exist_ok=True)
        key = f"{SCANNER_SNAPSHOT_PREFIX}{container.name}"
        try:
            # A throwaway writable snapshot, as `ctr run` itself makes: runc creates the
            # mount points in it before it turns the root read-only.
            mounts = self._ctr(namespace, "snapshots", "--snapshotter", self.snapshotter,
                               "prepare", "--mounts", key, chain_id(config.diff_ids)).stdout
            self._mount(scratch_plan(parse_json(mounts, f"snapshot {key}")), rootfs)
            spec, labels = scanner_spec(
                isolation_flags(container), self._base_spec(), rootfs=str(rootfs),
                process_args=[*entrypoint, *command],
                image_env=[str(e) for e in image.get("Env") or ()],
                workdir=str(image.get("WorkingDir") or "/"),
                cgroup=f"/atomicscan/{container.name}")
            spec_file = container.workdir / "scanner-spec.json"
            spec_file.write_text(json.dumps(spec), encoding="utf-8")
            argv = [self.binary, "--address", self.address, "--namespace", namespace, "run",
                    "--rm", "--config", str(spec_file),
                    *[f for k, v in sorted(labels.items()) for f in ("--label", f"{k}={v}")],
                    container.name]
            return self.run_bounded(argv, timeout=container.timeout, cancel=container.cancel,
                                    cwd=container.workdir)
        finally:
            self._remove_ctr_container(namespace, container.name)
            self.undo({"action": "mount", "path": str(rootfs)})
            self._ctr(namespace, "snapshots", "--snapshotter", self.snapshotter, "rm", key,
                      check=False)

    def _remove_ctr_container(self, namespace: str, name: str) -> None:
        self._ctr(namespace, "tasks", "kill", "--signal", "SIGKILL", name, check=False)
        for _attempt in range(50):
            done = self._ctr(namespace, "tasks", "delete", name, check=False)
            # Only a task still going down after SIGKILL is worth another try.
            if done.ok or "running" not in done.stderr.lower():
                break
            time.sleep(0.1)
        self._ctr(namespace, "containers", "delete", name, check=False)

    def remove_container(self, name: str) -> None:
        # Both: a run killed while ctr ran its scanner may be cleaned up by one that would
        # choose podman.
        with contextlib.suppress(RuntimeUnavailableError):
            runner = self._scanner_runtime()
            if runner is not None:
                runner.remove_container(name)
        if is_identifier(name) and Path(self.address).exists():
            namespace = self._scanner_namespace()
            self._remove_ctr_container(namespace, name)
            self._ctr(namespace, "snapshots", "--snapshotter", self.snapshotter, "rm",
                      f"{SCANNER_SNAPSHOT_PREFIX}{name}", check=False)

    def labelled_containers(self, label: str) -> list[tuple[str, str]]:
        # Scanners run by podman or docker are found by their own cleanup; these are the
        # ones ctr ran.
        namespace = self._scanner_namespace()
        listed = self._ctr(namespace, "containers", "ls", "-q", f'labels."{label}"',
                           check=False)
        found = []
        for name in (n for n in listed.stdout.split() if is_identifier(n)):
            info = self._ctr(namespace, "containers", "info", name, check=False)
            with contextlib.suppress(AtomicscanError):
                labels = _mapping(_mapping(parse_json(info.stdout, name)).get("Labels"))
                if label in labels:
                    found.append((name, str(labels[label])))
        return found

    def build_image(self, context: Path, tag: str) -> None:
        raise AtomicscanError("containerd can't build images: --remediate needs the image "
                              "in podman or docker")

    def run_failure_hint(self) -> str:
        try:
            runner = self._scanner_runtime()
        except RuntimeUnavailableError:
            return ""
        return runner.run_failure_hint() if runner is not None else ""


@hookimpl
def atomicscan_add_runtimes(registry: RuntimeRegistry) -> None:
    registry.add("containerd", lambda: ContainerdRuntime(registry))
