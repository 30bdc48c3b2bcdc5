"""The plugin manager: built-ins, then ``atomicscan`` entry points; one typed call per hook."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pluggy

from atomicscan import __version__, hookspecs
from atomicscan.results import Report, ScanResult
from atomicscan.runtime import RuntimeRegistry
from atomicscan.scanners import Scanner, ScannerRegistry

#: Module paths of the built-in plugins, registered exactly like third-party ones.
DEFAULT_PLUGINS = (
    "atomicscan.builtin.podman",
    "atomicscan.builtin.docker",
    "atomicscan.builtin.definitions",
    "atomicscan.builtin.packages",
    "atomicscan.builtin.openscap",
    "atomicscan.builtin.merge",
)

#: Comma-separated plugin names (entry-point names or built-in module paths) not to load.
BLOCK_ENV = "ATOMICSCAN_BLOCK_PLUGINS"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str | None
    hooks: tuple[str, ...]


class Plugins:
    """A wrapped :class:`pluggy.PluginManager`; the rest of atomicscan only calls these methods."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._scanners: ScannerRegistry | None = None
        self._runtimes: RuntimeRegistry | None = None
        self.errors: list[str] = []
        """One line per plugin hook that raised; the others still ran."""

    def _failed(self, impl: Any, hook: str, exc: BaseException) -> str:
        message = f"plugin {impl.plugin_name} failed in {hook}: {type(exc).__name__}: {exc}"
        log.warning("%s", message)
        self.errors.append(message)
        return message

    def _each(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation of a collecting hook; one that raises can't stop the rest."""
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            try:
                impl.function(**kwargs)
            except Exception as exc:  # noqa: BLE001 - a third party's bug, reported by name
                self._failed(impl, hook, exc)

    @classmethod
    def load(cls, extra: Iterable[object] = (), *, entry_points: bool = True) -> Plugins:
        """Built-ins, then entry points, then ``extra`` plugin objects (tests use those)."""
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        blocked = {name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",")
                   if name.strip()}
        for name in blocked:
            pm.set_blocked(name)
        for module_path in DEFAULT_PLUGINS:
            if module_path not in blocked:
                pm.register(importlib.import_module(module_path), name=module_path)
        if entry_points:
            pm.load_setuptools_entrypoints(hookspecs.PROJECT)
        for plugin in extra:
            pm.register(plugin)
        pm.check_pending()
        return cls(pm)

    # -- one method per hook ---------------------------------------------------------

    @property
    def scanners(self) -> ScannerRegistry:
        if self._scanners is None:
            registry = ScannerRegistry()
            self._each("atomicscan_add_scanners", registry=registry)
            self._scanners = registry
        return self._scanners

    @property
    def runtimes(self) -> RuntimeRegistry:
        if self._runtimes is None:
            registry = RuntimeRegistry()
            self._each("atomicscan_add_runtimes", registry=registry)
            self._runtimes = registry
        return self._runtimes

    def process_result(self, result: ScanResult, scanner: Scanner) -> ScanResult:
        # pluggy calls the last-registered / tryfirst implementation first.
        for impl in reversed(self.pm.hook.atomicscan_process_result.get_hookimpls()):
            try:
                changed = impl.function(result=result, scanner=scanner)
            except Exception as exc:  # noqa: BLE001 - a third party's bug, reported by name
                message = self._failed(impl, "atomicscan_process_result", exc)
                result = result.replace(notes=(*result.notes, message))
                continue
            if isinstance(changed, ScanResult):
                result = changed
        return result

    def merge_results(self, results: Sequence[ScanResult], scanner: Scanner, scan_type: str,
                      run_id: str) -> Report:
        # firstresult by hand, so a plugin that raises falls through to the next (the built-in).
        for impl in reversed(self.pm.hook.atomicscan_merge_results.get_hookimpls()):
            try:
                report = impl.function(results=list(results), scanner=scanner,
                                       scan_type=scan_type, run_id=run_id)
            except Exception as exc:  # noqa: BLE001 - a third party's bug, reported by name
                self._failed(impl, "atomicscan_merge_results", exc)
                continue
            if isinstance(report, Report):
                return report
        raise RuntimeError("no plugin merged the results (atomicscan.builtin.merge blocked?)")

    def info(self) -> list[PluginInfo]:
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        infos: list[PluginInfo] = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            dist: Any = dists.get(id(plugin))
            version = getattr(dist, "version", None) if dist is not None else None
            if version is None and name in DEFAULT_PLUGINS:
                version = __version__
            hooks = tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))
            infos.append(PluginInfo(name=name, version=version, hooks=hooks))
        return infos
