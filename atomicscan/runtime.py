"""The runtime-neutral interface every container runtime plugin implements."""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from atomicscan.errors import (
    AtomicscanError,
    RuntimeUnavailableError,
    TargetNotFoundError,
    UsageError,
)
from atomicscan.isolation import DEFAULT_MEMORY_BYTES, DEFAULT_TMPFS_BYTES
from atomicscan.proc import Cancelled, Completed

#: Label on every scanner container atomicscan starts; its value is the run ID.
RUN_LABEL = "io.atomicscan.run"

#: What a target is: an image or a container of a runtime, or a directory (``--rootfs``).
TargetType = Literal["image", "container", "rootfs"]


@dataclass(frozen=True)
class Target:
    """Something to scan, as resolved from what the user typed."""

    ref: str
    """What the user gave: a name, a name:tag, an ID or a path."""
    id: str
    """The full ID (images, containers) or the absolute path (rootfs)."""
    type: TargetType
    runtime: str | None
    key: str
    """The directory name under ``/scanin`` and ``/scanout``."""
    names: tuple[str, ...] = ()
    running: bool = False


@dataclass(frozen=True)
class Bind:
    """A host path presented inside the scanner container."""

    source: Path
    destination: str
    read_only: bool = True


@dataclass(frozen=True)
class ScannerContainer:
    """Everything needed to start one locked-down scanner container."""

    name: str
    image: str
    args: tuple[str, ...]
    binds: tuple[Bind, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()
    user: str = "65534:65534"
    timeout: float | None = None
    cancel: threading.Event | None = field(default=None, compare=False)
    """Set from another thread to stop the scanner at once (Ctrl-C)."""
    workdir: Path | None = None
    """A private directory of the run the runtime may start its commands in."""
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    """Memory limit, tmpfs files included, with no swap (see :mod:`atomicscan.isolation`)."""
    cpus: float | None = None
    """A hard cap in CPUs, off by default: the scanner's CPU weight already yields to the
    host under contention, and a cap slows every container's start (see isolation.py)."""
    tmpfs_bytes: int = DEFAULT_TMPFS_BYTES
    """Size of each writable scratch tmpfs (``/tmp``, ``/var/tmp``)."""


class Runtime(abc.ABC):
    """A container engine that can present root filesystems and run scanners."""

    name: str
    #: How a user lists what this runtime holds, for "target not found" errors; the
    #: default names ``NAME ps -a`` and ``NAME images``, as podman's and docker's CLIs say it.
    listing_hint: str | None = None
    #: Whether a user without root can scan with it (their own storage): ``atomicscan
    #: doctor`` run by a user checks only these, and skips the others as root's.
    rootless: bool = False

    @abc.abstractmethod
    def check(self) -> None:
        """Raise :class:`RuntimeUnavailableError` saying why this runtime can't be used."""

    def user_storage_note(self) -> tuple[str, str] | None:
        """For a ``rootless`` runtime run by a user: what about the user's storage makes
        scans slow or fragile, and the fix, as ``(problem, fix)``; ``None`` when nothing.
        ``atomicscan doctor`` shows it as a warning."""
        return None

    @abc.abstractmethod
    def resolve(self, ref: str) -> Target:
        """Find a container (first) or an image (second) named ``ref``; never pull.

        Raises :class:`~atomicscan.errors.TargetNotFoundError` when this runtime holds
        neither, and :class:`~atomicscan.errors.AmbiguousTargetError` when ``ref`` names
        several.
        """

    def resolve_all(self, refs: Sequence[str]) -> dict[str, Target]:
        """Every reference of ``refs`` this runtime holds, resolved as :meth:`resolve` does.

        References it does not hold are left out of the result; an ambiguous one raises.
        A run calls this once for all its references, so a runtime can answer with a few
        listings instead of a few commands per reference (the default asks one by one).
        """
        found: dict[str, Target] = {}
        for ref in refs:
            try:
                found[ref] = self.resolve(ref)
            except TargetNotFoundError:
                continue
        return found

    @abc.abstractmethod
    def mount_rootfs(self, target: Target, journal: Callable[[dict[str, Any]], None],
                     workdir: Path) -> contextlib.AbstractContextManager[Path]:
        """Mount ``target``'s root filesystem; the context manager undoes it.

        The returned path may be writable: the caller re-exposes it read-only. Before
        mounting, ``journal`` is called with a record that :meth:`undo` accepts, so a later
        run can undo the mount when this process was killed. ``workdir`` is an empty
        directory inside the run's state directory for mounts the runtime makes itself.
        """

    @contextlib.contextmanager
    def mount_rootfs_batch(self, targets: Sequence[Target],
                           journal: Callable[[dict[str, Any]], None], workdir: Path, *,
                           cancel: threading.Event | None = None
                           ) -> Iterator[dict[str, Path | AtomicscanError]]:
        """Mount every target of a batch; the context manager undoes them all.

        Each target's key maps to its root filesystem, or to the error that kept it from
        mounting: one target that fails never fails the others. ``workdir / target.key`` is
        each target's own directory (see :meth:`mount_rootfs`). A runtime whose CLI takes
        several targets per command overrides this so a batch costs a fixed number of
        commands, whatever the size of the host; the default mounts one by one.
        """
        mounted: dict[str, Path | AtomicscanError] = {}
        with contextlib.ExitStack() as stack:
            for target in targets:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("run cancelled")
                try:
                    mounted[target.key] = stack.enter_context(
                        self.mount_rootfs(target, journal, workdir / target.key))
                except AtomicscanError as exc:
                    mounted[target.key] = exc
            yield mounted

    def list_targets(self, *, images: bool, containers: bool,
                     dangling: bool = False) -> list[Target]:
        """Every image (without dangling ones unless asked) and/or container it holds."""
        raise NotImplementedError(f"{self.name} cannot list its images and containers")

    @abc.abstractmethod
    def undo(self, record: Mapping[str, Any]) -> None:
        """Undo a journal record left by a run that was killed (best effort, idempotent)."""

    @abc.abstractmethod
    def image_id(self, image: str) -> str | None:
        """The ID of a local image, or ``None`` when it is not in local storage."""

    @abc.abstractmethod
    def run_scanner(self, container: ScannerContainer) -> Completed:
        """Run a scanner container to completion with the contract's isolation flags."""

    @abc.abstractmethod
    def remove_container(self, name: str) -> None:
        """Remove a container by name if it exists (used after interrupts)."""

    @abc.abstractmethod
    def labelled_containers(self, label: str) -> list[tuple[str, str]]:
        """``(name, label value)`` of every container carrying ``label``."""

    def target_config(self, target: Target) -> dict[str, Any] | None:
        """The target's configuration in the shape of :mod:`atomicscan.targetconfig`."""
        return None

    def target_configs(self, targets: Sequence[Target]) -> dict[str, dict[str, Any] | None]:
        """:meth:`target_config` of each target, by target key, for one batch at a time.

        A runtime can answer with one inspect for the whole batch; the default asks one by
        one. A target that vanished since it was resolved gets ``None``.
        """
        return {target.key: self.target_config(target) for target in targets}

    def image_user(self, image: str) -> str:
        """The USER an image runs as (empty for root)."""
        raise NotImplementedError(f"{self.name} cannot inspect image users")

    def build_image(self, context: Path, tag: str) -> None:
        """Build ``context/Containerfile`` as ``tag`` with no network and no pulling."""
        raise NotImplementedError(f"{self.name} cannot build images")

    def run_failure_hint(self) -> str:
        """What may fix a locked-down scanner run that fails on this host ("" if nothing)."""
        return ""

    def build_hint(self, image: str) -> str:
        """How the user makes a missing scanner image available."""
        return f"build it with `{self.name} build -t {image} scanners/<name>`"


RuntimeFactory = Callable[[], Runtime]


class RuntimeRegistry:
    """What `atomicscan_add_runtimes` hooks receive; runtimes are created on first use."""

    def __init__(self) -> None:
        self._factories: dict[str, RuntimeFactory] = {}
        self._instances: dict[str, Runtime] = {}

    def add(self, name: str, factory: RuntimeFactory) -> None:
        if name in self._factories:
            raise ValueError(f"runtime {name!r} is registered twice")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str) -> Runtime:
        if name not in self._factories:
            raise UsageError(f"unknown runtime {name!r}; known: {', '.join(self.names())}")
        if name not in self._instances:
            self._instances[name] = self._factories[name]()
        return self._instances[name]

    def usable(self) -> dict[str, str | None]:
        """Each runtime's name, with ``None`` when usable or the reason it is not."""
        status: dict[str, str | None] = {}
        for name in self.names():
            try:
                self.get(name).check()
            except RuntimeUnavailableError as exc:
                status[name] = str(exc)
            else:
                status[name] = None
        return status


def last_line(text: str) -> str:
    """The last non-blank line of a command's stderr (where tools say why), stripped."""
    lines: Sequence[str] = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def iter_nonempty(lines: str) -> Iterator[str]:
    for line in lines.splitlines():
        if line.strip():
            yield line.strip()
