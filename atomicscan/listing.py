"""What podman and docker share: targets found in their container and image listings.

Both runtimes answer the same questions the same way: which containers and images exist
(two listings), what a reference names (matched against those listings), and what a
target's configuration is (its inspect). Only the commands and the shape of their output
differ; :class:`ListingRuntime` keeps the rest in one place.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from atomicscan import targetconfig
from atomicscan.errors import AtomicscanError
from atomicscan.runtime import Runtime, Target, TargetType
from atomicscan.targets import (
    Candidate,
    match_container,
    match_image,
    normalize_image_ref,
    not_found,
)

log = logging.getLogger(__name__)


class CandidateIndex:
    """Candidates by ID and by name, so that matching many references against a long
    listing costs a look-up each, not a pass over the listing each.

    Only the exact rules (an ID, a name) are looked up; a reference neither finds goes
    through the full matching (:func:`match_image`, :func:`match_container`), whose first
    rules then find nothing, so the answer and the errors are the same as without it.
    """

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.candidates = candidates
        self.by_id: dict[str, list[Candidate]] = {}
        self.by_name: dict[str, list[Candidate]] = {}
        for candidate in candidates:
            self.by_id.setdefault(candidate.id, []).append(candidate)
            for name in dict.fromkeys(candidate.names):
                self.by_name.setdefault(name, []).append(candidate)

    def _exact(self, ref: str, kind: str, names: Sequence[str]) -> Candidate | None:
        plain = ref.removeprefix("sha256:")
        by_id = self.by_id.get(plain, [])
        by_name = [c for name in dict.fromkeys(names) for c in self.by_name.get(name, [])]
        for matches in (by_id, by_name):
            if matches:
                return (match_container if kind == "container" else match_image)(
                    ref, matches)
        return None

    def image(self, ref: str) -> Candidate | None:
        found = self._exact(ref, "image", (ref, normalize_image_ref(ref)))
        return found if found is not None else match_image(ref, self.candidates)

    def container(self, ref: str) -> Candidate | None:
        found = self._exact(ref, "container", (ref,))
        return found if found is not None else match_container(ref, self.candidates)


class ListingRuntime(Runtime):
    """A runtime that resolves references against one listing of each kind per call.

    Subclasses implement the listings and the batched inspect; they override
    :meth:`resolve_all` and :meth:`target_configs` (not :meth:`resolve` or
    :meth:`target_config`, which only delegate to them) to change how targets are found.
    """

    @property
    def _image_inspects(self) -> dict[str, dict[str, Any]]:
        """Image inspects made during the current run, by image ID (created on first use,
        so a subclass need not call ``__init__``). An image ID names fixed content, but its
        tags and storage paths can change between runs: each run starts with it empty."""
        cache: dict[str, dict[str, Any]] = self.__dict__.setdefault("_image_inspect_cache", {})
        return cache

    @property
    def _container_inspects(self) -> dict[str, dict[str, Any]]:
        """Container inspects made during the current run, by container ID: a runtime that
        inspects a container to mount it stores the answer here, and ``/scanmeta`` reuses it."""
        cache: dict[str, dict[str, Any]] = self.__dict__.setdefault(
            "_container_inspect_cache", {})
        return cache

    def _new_run(self) -> None:
        """Forget what earlier runs inspected: names, state and storage paths change."""
        self._image_inspects.clear()
        self._container_inspects.clear()

    # -- what each runtime provides -------------------------------------------------------

    @abc.abstractmethod
    def _containers(self) -> list[Candidate]:
        """Every container, running or not, with the names users give it."""

    @abc.abstractmethod
    def _images(self) -> list[Candidate]:
        """Every image (dangling ones with no names), with its names as the runtime shows them."""

    @abc.abstractmethod
    def _inspect_many(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``KIND inspect`` (``image`` or ``container``) of all of ``ids`` at once, by full
        ID; ones that no longer exist are left out."""

    def _matchable(self, image: Candidate) -> Candidate:
        """``image`` with its names spelt the way references are matched against."""
        return image

    def _images_by_name(self, refs: Sequence[str]) -> dict[str, Candidate]:
        """A cheaper way to find some of ``refs`` than the image listing (none by default)."""
        return {}

    @staticmethod
    def _created_from(inspect: Mapping[str, Any]) -> str | None:
        """The image a container was created from, as its inspect names it."""
        return None

    # -- the shared logic -----------------------------------------------------------------

    def _target(self, ref: str, found: Candidate, kind: TargetType) -> Target:
        return Target(ref=ref, id=found.id, type=kind, runtime=self.name, key=found.id,
                      names=found.names, running=found.running)

    def resolve_all(self, refs: Sequence[str]) -> dict[str, Target]:
        # One container listing for every reference; the image listing (the slow one on
        # a busy host) only for what the cheaper look-up left over.
        self._new_run()  # a run starts here or in list_targets
        containers = CandidateIndex(self._containers())
        found: dict[str, Target] = {}
        image_refs: list[str] = []
        for ref in refs:
            container = containers.container(ref)
            if container is not None:
                found[ref] = self._target(ref, container, "container")
            else:
                image_refs.append(ref)
        by_name = self._images_by_name(image_refs)
        listed: dict[str, Candidate] | None = None
        matchable = CandidateIndex([])
        for ref in image_refs:
            image = by_name.get(ref)
            if image is None:
                if listed is None:
                    listed = {image.id: image for image in self._images()}
                    matchable = CandidateIndex([self._matchable(image)
                                                for image in listed.values()])
                match = matchable.image(ref)
                image = listed[match.id] if match is not None else None
            if image is not None:
                found[ref] = self._target(ref, image, "image")
        return found

    def resolve(self, ref: str) -> Target:
        target = self.resolve_all([ref]).get(ref)
        if target is None:
            raise not_found(ref, self.name, self.listing_hint)
        return target

    def list_targets(self, *, images: bool, containers: bool,
                     dangling: bool = False) -> list[Target]:
        found: list[Target] = []
        self._new_run()
        if containers:
            found += [self._target((c.names or (c.id[:12],))[0], c, "container")
                      for c in self._containers()]
        if images:
            found += [self._target((i.names or (i.id[:12],))[0], i, "image")
                      for i in self._images() if i.names or dangling]
        return found

    def _inspect_images(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found = self._inspect_many("image", ids)
        self._image_inspects.update(found)
        return found

    def _inspect_each(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """:meth:`_inspect_many`, then one by one for what it left out: a runtime may print
        nothing at all when one of several IDs fails, and a target that vanished since it
        was mounted must cost only its own configuration."""
        found: dict[str, dict[str, Any]] = {}
        if not ids:
            return found
        try:
            found.update(self._inspect_many(kind, ids))
            if len(ids) > 1:
                for missing in [i for i in ids if i not in found]:
                    found.update(self._inspect_many(kind, [missing]))
        except AtomicscanError as exc:
            # A runtime that hangs: the configuration is best effort, the scan goes on.
            log.info("%s %s inspect failed: %s", self.name, kind, exc)
        return found

    def target_configs(self, targets: Sequence[Target]) -> dict[str, dict[str, Any] | None]:
        self._image_inspects.update(self._inspect_each(
            "image", [t.id for t in targets
                      if t.type == "image" and t.id not in self._image_inspects]))
        self._container_inspects.update(self._inspect_each(
            "container", [t.id for t in targets
                          if t.type == "container" and t.id not in self._container_inspects]))
        containers = self._container_inspects
        configs: dict[str, dict[str, Any] | None] = {}
        for target in targets:
            inspect = (containers.get(target.id) if target.type == "container"
                       else self._image_inspects.get(target.id))
            if inspect is None:
                configs[target.key] = None
                continue
            names = list(target.names)
            origin = self._created_from(inspect) if target.type == "container" else None
            if origin:
                names.append(origin)  # what a container was created from
            configs[target.key] = targetconfig.normalize(inspect, names)
        return configs

    def target_config(self, target: Target) -> dict[str, Any] | None:
        return self.target_configs([target])[target.key]

    def image_user(self, image: str) -> str:
        # Remediation asks after the scan: the run's inspect of that image answers.
        inspect = self._image_inspects.get(image) or self._inspect_images([image]).get(image)
        if inspect is None:
            raise AtomicscanError(f"{self.name} cannot inspect image {image}")
        config = inspect.get("Config")
        user = config.get("User") if isinstance(config, Mapping) else None
        return user.strip() if isinstance(user, str) else ""
