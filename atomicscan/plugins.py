"""The plugin manager: built-ins, then ``atomicscan`` entry points; one typed call per hook."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pluggy

from atomicscan import hookspecs
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
            self.pm.hook.atomicscan_add_scanners(registry=registry)
            self._scanners = registry
        return self._scanners

    @property
    def runtimes(self) -> RuntimeRegistry:
        if self._runtimes is None:
            registry = RuntimeRegistry()
            self.pm.hook.atomicscan_add_runtimes(registry=registry)
            self._runtimes = registry
        return self._runtimes

    def process_result(self, result: ScanResult, scanner: Scanner) -> ScanResult:
        # pluggy calls the last-registered / tryfirst implementation first.
        for impl in reversed(self.pm.hook.atomicscan_process_result.get_hookimpls()):
            changed = impl.function(result=result, scanner=scanner)
            if isinstance(changed, ScanResult):
                result = changed
        return result

    def merge_results(self, results: Sequence[ScanResult], scanner: Scanner, scan_type: str,
                      run_id: str) -> Report:
        report: Report | None = self.pm.hook.atomicscan_merge_results(
            results=list(results), scanner=scanner, scan_type=scan_type, run_id=run_id)
        if report is None:  # only when the built-in merge was blocked
            raise RuntimeError("no plugin merged the results (atomicscan.builtin.merge blocked?)")
        return report

    def info(self) -> list[PluginInfo]:
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        infos: list[PluginInfo] = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            dist: Any = dists.get(id(plugin))
            version = getattr(dist, "version", None) if dist is not None else None
            hooks = tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))
            infos.append(PluginInfo(name=name, version=version, hooks=hooks))
        return infos
