"""Resolution: which runtimes a run looks in (and why the others can't be used), and the
targets each of them holds, in the order the user gave them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from atomicscan import rootless
from atomicscan.errors import (
    AmbiguousTargetError,
    RuntimeUnavailableError,
    TargetNotFoundError,
    UsageError,
)
from atomicscan.request import ScanRequest
from atomicscan.runtime import Runtime, RuntimeRegistry, Target
from atomicscan.targets import not_found, rootfs_key

DEFAULT_RUNTIME = "podman"

#: Targets by the name of the runtime that holds them (and runs their scanner).
Groups = dict[str, tuple[Runtime, list[Target]]]


@dataclass(frozen=True)
class RuntimeChoice:
    """The runtimes to look in, and each unusable one's name with the reason."""

    usable: tuple[Runtime, ...]
    unusable: Mapping[str, str] = field(default_factory=dict)


def usable_runtimes(registry: RuntimeRegistry) -> RuntimeChoice:
    """Every registered runtime that works here (the default first), and why the others
    don't: the one place that decides it, for scans and for cleanup alike."""
    status = registry.usable()
    names = sorted(status, key=lambda name: name != DEFAULT_RUNTIME)
    return RuntimeChoice(
        usable=tuple(registry.get(name) for name in names if status[name] is None),
        unusable={name: why for name in names if (why := status[name]) is not None})


def runtimes_to_search(registry: RuntimeRegistry, asked: str | None) -> RuntimeChoice:
    """The runtime asked for (which must work), or every usable one (at least one)."""
    if asked and asked != "all":
        runtime = registry.get(asked)
        runtime.check()
        return RuntimeChoice((runtime,))
    choice = usable_runtimes(registry)
    if not choice.usable:
        raise RuntimeUnavailableError(
            "no container runtime is usable: " + "; ".join(choice.unusable.values()))
    return choice


@dataclass(frozen=True)
class Resolution:
    """What a run found: targets grouped by runtime, and the runtimes it could not search."""

    groups: Groups
    unusable: Mapping[str, str] = field(default_factory=dict)

    @property
    def targets(self) -> list[Target]:
        """Every target, in the order the report lists them."""
        return [target for _runtime, targets in self.groups.values() for target in targets]

    def runtime_of(self, target_runtime: str | None) -> Runtime:
        return self.groups[target_runtime or ""][0]


def rootfs_targets(paths: Sequence[Path], *, allow_host_root: bool) -> list[Target]:
    """``--rootfs`` directories as targets, by their real path; ``/`` only when allowed."""
    targets = []
    for path in paths:
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            resolved = None
        if resolved is None or not resolved.is_dir():
            raise UsageError(f"--rootfs {path}: not a directory")
        if rootless.rootless() and not os.access(resolved, os.R_OK | os.X_OK):
            # A user's scanner sees only what the user may read: the kernel would refuse
            # the bind anyway, this says so before anything starts.
            raise UsageError(f"--rootfs {path}: you (uid {rootless.host_uid()}) cannot read "
                             "it; scan it as root")
        if resolved == Path("/") and not allow_host_root:
            raise UsageError(f"--rootfs {path} is the host's own root (secrets included); "
                             "add --allow-host-rootfs if that is really what you mean")
        targets.append(Target(ref=str(path), id=str(resolved), type="rootfs", runtime=None,
                              key=rootfs_key(resolved)))
    return targets


def _dedupe(targets: Sequence[Target]) -> list[Target]:
    seen: dict[str, Target] = {}
    for target in targets:
        seen.setdefault(target.key, target)
    return list(seen.values())


def _pick(ref: str, choice: RuntimeChoice, resolved: Mapping[str, Mapping[str, Target]], *,
          every_runtime: bool) -> Target:
    """The one target ``ref`` names among the runtimes searched, or why there is none."""
    runtimes = choice.usable
    found = [resolved[r.name][ref] for r in runtimes if ref in resolved[r.name]]
    if len(found) > 1 and not every_runtime:
        held = " and ".join(t.runtime or "?" for t in found)
        raise UsageError(f"target {ref!r} exists in both {held}; choose one with --runtime")
    if found:
        return found[0]
    unusable = list(choice.unusable.values())
    skipped = f" (not searched: {'; '.join(unusable)})" if unusable else ""
    if len(runtimes) == 1:
        error = not_found(ref, runtimes[0].name, runtimes[0].listing_hint)
        raise TargetNotFoundError(ref, error.message + skipped)
    names = " or ".join(r.name for r in runtimes)
    raise TargetNotFoundError(
        ref, f"target {ref!r} is neither a container nor an image in {names}; "
             f"atomicscan never pulls (use --rootfs PATH for a directory){skipped}")


def _lookup(refs: Sequence[str], choice: RuntimeChoice, *, every_runtime: bool
            ) -> dict[str, dict[str, Target]]:
    """What each runtime holds of ``refs``, by runtime name."""
    runtimes = choice.usable
    try:
        # All references at once: a runtime answers them with a few listings in total.
        return {r.name: r.resolve_all(refs) if refs else {} for r in runtimes}
    except AmbiguousTargetError:
        # Report the first bad reference in the order given, as one by one would.
        resolved: dict[str, dict[str, Target]] = {r.name: {} for r in runtimes}
        for ref in refs:
            for runtime in runtimes:
                with contextlib.suppress(TargetNotFoundError):
                    resolved[runtime.name][ref] = runtime.resolve(ref)
            _pick(ref, choice, resolved, every_runtime=every_runtime)
        return resolved


def find_targets(request: ScanRequest, choice: RuntimeChoice) -> Resolution:
    """The targets of ``request`` in the runtimes of ``choice``."""
    every_runtime = request.runtime == "all"
    refs = list(dict.fromkeys(request.targets))
    resolved = _lookup(refs, choice, every_runtime=every_runtime)
    groups: Groups = {}
    for ref in request.targets:
        target = _pick(ref, choice, resolved, every_runtime=every_runtime)
        runtime = next(r for r in choice.usable if r.name == target.runtime)
        groups.setdefault(runtime.name, (runtime, []))[1].append(target)
    if request.lists_targets:
        for runtime in choice.usable:
            listed = runtime.list_targets(images=request.images, containers=request.containers,
                                          dangling=request.include_dangling)
            groups.setdefault(runtime.name, (runtime, []))[1].extend(listed)
    rootfs = rootfs_targets(request.rootfs, allow_host_root=request.allow_host_rootfs)
    if rootfs:
        # A directory needs no runtime of its own: it joins the first batch.
        runtime = next(iter(groups.values()))[0] if groups else choice.usable[0]
        groups.setdefault(runtime.name, (runtime, []))[1].extend(rootfs)
    groups = {name: (runtime, _dedupe(targets))
              for name, (runtime, targets) in groups.items() if targets}
    if not groups and not request.lists_targets:
        raise UsageError("nothing to scan: give a TARGET (image or container), --rootfs "
                         "PATH, or --images / --containers / --all")
    return Resolution(groups, choice.unusable)


def resolve(request: ScanRequest, registry: RuntimeRegistry) -> Resolution:
    """Choose the runtimes, then find the request's targets in them."""
    return find_targets(request, runtimes_to_search(registry, request.runtime))
