"""The plugin manager: built-ins, then ``atomicscan`` entry points; one typed call per hook.

pluggy calls every implementation, through the hook callers of ``pm.hook``: it matches
each implementation's arguments to what it declares, runs wrappers and traces the calls.
atomicscan adds isolation around those calls. Each implementation is called alone
(``pm.subset_hook_caller``), so one that raises is named and skipped while the others still
run; each wrapper gets a call of its own in which the implementations take part as one extra
method (``HookCaller.call_extra``), nested outermost first as pluggy nests them.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import pluggy

from atomicscan import __version__, hookspecs
from atomicscan.context import ResultContext, RunContext
from atomicscan.errors import AtomicscanError
from atomicscan.formats import FormatRegistry
from atomicscan.results import Report, ScanResult
from atomicscan.runtime import RuntimeRegistry
from atomicscan.scanners import Scanner, ScannerRegistry

#: Module paths of the built-in plugins, registered exactly like third-party ones.
DEFAULT_PLUGINS = (
    "atomicscan.builtin.podman",
    "atomicscan.builtin.docker",
    "atomicscan.builtin.containerd",
    "atomicscan.builtin.definitions",
    "atomicscan.builtin.packages",
    "atomicscan.builtin.openscap",
    "atomicscan.builtin.openscap_remediation",
    "atomicscan.builtin.format_sarif",
    "atomicscan.builtin.formats",
    "atomicscan.builtin.merge",
    "atomicscan.builtin.history",
)

#: Comma-separated plugin names (entry-point names or built-in module paths) not to load.
BLOCK_ENV = "ATOMICSCAN_BLOCK_PLUGINS"

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str | None
    hooks: tuple[str, ...]


class _ImplementationFailed(Exception):
    """One implementation raised or returned the wrong type; already logged and recorded."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _is_wrapper(impl: pluggy.HookImpl) -> bool:
    return bool(impl.wrapper or impl.hookwrapper)


def _value(caller: pluggy.HookCaller, outcome: Any) -> object:
    """What one call of ``caller`` produced: firstresult hooks give it, the others a list."""
    if caller.spec is not None and caller.spec.opts.get("firstresult"):
        return outcome
    return outcome[-1] if outcome else None


class _Manager(pluggy.PluginManager):
    """pluggy's manager, except that a plugin pluggy finds invalid is refused, not fatal."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.refused: list[str] = []
        """One line per plugin refused (bad wrapper, unknown hook); the others loaded."""

    def _refuse(self, name: str, exc: pluggy.PluginValidationError) -> None:
        detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        message = f"plugin {name} refused: {detail}"
        log.warning("%s", message)
        self.refused.append(message)

    def register(self, plugin: object, name: str | None = None) -> str | None:
        try:
            return super().register(plugin, name)
        except pluggy.PluginValidationError as exc:
            # pluggy validates every hook before it registers any, so nothing is left behind.
            self._refuse(name or self.get_canonical_name(plugin), exc)
            return None

    def check_pending(self) -> None:
        """pluggy's check; each plugin implementing a hook nobody specified is unregistered."""
        while True:
            try:
                super().check_pending()
            except pluggy.PluginValidationError as exc:
                name = self.get_name(exc.plugin) or repr(exc.plugin)
                self.unregister(exc.plugin)
                self._refuse(name, exc)
            else:
                return


#: Hooks whose failures the caller reports itself; they are only logged at debug level.
_SAID_BY_CALLER = frozenset({"atomicscan_run_finished"})


class Plugins:
    """A wrapped :class:`pluggy.PluginManager`; the rest of atomicscan only calls these methods."""

    def __init__(self, pm: pluggy.PluginManager, refused: Iterable[str] = ()) -> None:
        self.pm = pm
        self._scanners: ScannerRegistry | None = None
        self._runtimes: RuntimeRegistry | None = None
        self._formats: FormatRegistry | None = None
        self.errors: list[str] = list(refused)
        """One line per plugin refused at load or hook that failed; the others still ran."""

    @classmethod
    def load(cls, extra: Iterable[object] = (), *, entry_points: bool = True,
             block: Iterable[str] = ()) -> Plugins:
        """Built-ins, then entry points, then ``extra`` plugin objects (tests use those);
        none of ``block`` nor of ``$ATOMICSCAN_BLOCK_PLUGINS``."""
        pm = _Manager()
        pm.add_hookspecs(hookspecs)
        blocked = {name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",")
                   if name.strip()} | set(block)
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
        return cls(pm, pm.refused)

    # -- calling implementations through pluggy, one at a time ---------------------------

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        """``hook``'s implementations in pluggy's call order: wrappers, then the rest."""
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        return list(reversed(caller.get_hookimpls()))

    def _alone(self, hook: str, impl: pluggy.HookImpl) -> pluggy.HookCaller:
        """A caller of ``hook`` that reaches ``impl``'s plugin and no other."""
        others = [other.plugin for other in self._impls(hook) if other.plugin is not impl.plugin]
        return self.pm.subset_hook_caller(hook, remove_plugins=others)

    def _failed(self, impl: pluggy.HookImpl, hook: str, problem: str,
                exc: BaseException | None = None) -> _ImplementationFailed:
        message = f"plugin {impl.plugin_name} failed in {hook}: {problem}"
        # A finished run's failures are the caller's to print (as errors, exit 1).
        log.log(logging.DEBUG if hook in _SAID_BY_CALLER else logging.WARNING, "%s", message)
        if exc is not None:
            log.debug("traceback of %s", message, exc_info=exc)
        self.errors.append(message)
        return _ImplementationFailed(message)

    def _checked(self, impl: pluggy.HookImpl, hook: str, value: object,
                 expect: type | None) -> object:
        """``value`` if it is ``None`` or an ``expect``; else the plugin is reported."""
        if value is None or expect is None or isinstance(value, expect):
            return value
        problem = f"returned {type(value).__name__}, not a {expect.__name__} or None"
        raise self._failed(impl, hook, problem)

    def _call_one(self, hook: str, impl: pluggy.HookImpl, kwargs: Mapping[str, object],
                  expect: type | None = None) -> object:
        """pluggy calls ``impl`` alone; raises :class:`_ImplementationFailed` if it failed."""
        caller = self._alone(hook, impl)
        try:
            outcome = caller(**kwargs)
        except AtomicscanError as exc:  # a failure the plugin explains itself
            raise self._failed(impl, hook, exc.message, exc) from exc
        except Exception as exc:  # a third party's bug, reported by name
            raise self._failed(impl, hook, f"{type(exc).__name__}: {exc}", exc) from exc
        return self._checked(impl, hook, _value(caller, outcome), expect)

    def _links(self, hook: str) -> list[pluggy.HookImpl]:
        """The implementations that are not wrappers, in call order (``tryfirst`` first)."""
        return [impl for impl in self._impls(hook) if not _is_wrapper(impl)]

    def _wrapped(self, hook: str, inner: Callable[[], _T], kwargs: Mapping[str, object],
                 expect: type | None = None) -> tuple[_T, list[str]]:
        """``inner()`` (which calls the implementations) run inside every wrapper of ``hook``.

        Returns its value, as the wrappers changed it, and the messages of the wrappers that
        failed: one that raises, or returns the wrong type, is skipped and the value from
        inside it is kept.
        """
        failures: list[str] = []
        call = inner
        for wrapper in reversed([impl for impl in self._impls(hook) if _is_wrapper(impl)]):
            call = self._around(hook, wrapper, call, expect, kwargs, failures)
        return call(), failures

    def _around(self, hook: str, wrapper: pluggy.HookImpl, inner: Callable[[], _T],
                expect: type | None, kwargs: Mapping[str, object],
                failures: list[str]) -> Callable[[], _T]:
        """One level of :meth:`_wrapped`: ``wrapper`` alone, with ``inner`` as its hook."""
        def call() -> _T:
            done: list[_T] = []

            def inside() -> _T:
                # Once only: a wrapper that fails after its yield must not rerun what it wraps.
                if not done:
                    done.append(inner())
                return done[0]

            caller = self._alone(hook, wrapper)
            try:
                value = _value(caller, caller.call_extra([inside], kwargs))
                value = self._checked(wrapper, hook, value, expect)
            except _ImplementationFailed as failure:
                failures.append(failure.message)
                return inside()
            except Exception as exc:  # noqa: BLE001 - a third party's bug, reported by name
                failed = self._failed(wrapper, hook, f"{type(exc).__name__}: {exc}", exc)
                failures.append(failed.message)
                return inside()
            # A wrapper that returns nothing leaves the value as it was; _checked typed the rest.
            return inside() if value is None else cast(_T, value)
        return call

    # -- one method per hook ---------------------------------------------------------

    def _collect(self, hook: str, **kwargs: object) -> None:
        """Call every implementation of a collecting hook; one that raises can't stop the rest."""
        def each() -> None:
            for impl in self._links(hook):
                try:
                    self._call_one(hook, impl, kwargs)
                except _ImplementationFailed:
                    continue
        self._wrapped(hook, each, kwargs)

    @property
    def scanners(self) -> ScannerRegistry:
        if self._scanners is None:
            registry = ScannerRegistry()
            self._collect("atomicscan_add_scanners", registry=registry)
            self._scanners = registry
        return self._scanners

    @property
    def runtimes(self) -> RuntimeRegistry:
        if self._runtimes is None:
            registry = RuntimeRegistry()
            self._collect("atomicscan_add_runtimes", registry=registry)
            self._runtimes = registry
        return self._runtimes

    @property
    def formats(self) -> FormatRegistry:
        if self._formats is None:
            registry = FormatRegistry()
            self._collect("atomicscan_add_formats", registry=registry)
            self._formats = registry
        return self._formats

    def process_result(self, result: ScanResult, scanner: Scanner,
                       context: ResultContext | None = None) -> ScanResult:
        """The chain of ``atomicscan_process_result``; a failing plugin's message becomes a note."""
        hook = "atomicscan_process_result"
        around = context if context is not None else ResultContext()

        def chain() -> ScanResult:
            current = result
            for impl in self._links(hook):
                try:
                    changed = self._call_one(hook, impl, {"result": current, "scanner": scanner,
                                                          "context": around}, ScanResult)
                except _ImplementationFailed as failure:
                    current = current.replace(notes=(*current.notes, failure.message))
                    continue
                if isinstance(changed, ScanResult):
                    current = changed
            return current

        final, failures = self._wrapped(hook, chain, {"result": result, "scanner": scanner,
                                                      "context": around}, ScanResult)
        if failures:
            final = final.replace(notes=(*final.notes, *failures))
        return final

    def describe_result(self, result: ScanResult) -> list[str]:
        """Every plugin's phrase about ``result`` for the summary, in call order."""
        hook = "atomicscan_describe_result"
        kwargs: dict[str, object] = {"result": result}

        def each() -> list[str]:
            phrases: list[str] = []
            for impl in self._links(hook):
                try:
                    phrase = self._call_one(hook, impl, kwargs, str)
                except _ImplementationFailed:
                    continue
                if isinstance(phrase, str) and phrase:
                    phrases.append(phrase)
            return phrases

        phrases, _ = self._wrapped(hook, each, kwargs, list)
        return [str(phrase) for phrase in phrases]

    def run_finished(self, report: Report, context: RunContext) -> list[str]:
        """Every ``atomicscan_run_finished``; returns one line per implementation that failed."""
        hook = "atomicscan_run_finished"
        kwargs: dict[str, object] = {"report": report, "context": context}
        failures: list[str] = []

        def each() -> None:
            for impl in self._links(hook):
                try:
                    self._call_one(hook, impl, kwargs)
                except _ImplementationFailed as failure:
                    failures.append(failure.message)
        _, wrapper_failures = self._wrapped(hook, each, kwargs)
        return [*failures, *wrapper_failures]

    def merge_results(self, results: Sequence[ScanResult], scanner: Scanner, scan_type: str,
                      run_id: str, started_at: str = "") -> Report:
        """The first merge that returns a report; one that raises falls through to the next."""
        hook = "atomicscan_merge_results"
        kwargs: dict[str, object] = {"results": list(results), "scanner": scanner,
                                     "scan_type": scan_type, "run_id": run_id,
                                     "started_at": started_at}

        def first() -> Report | None:
            for impl in self._links(hook):
                try:
                    report = self._call_one(hook, impl, kwargs, Report)
                except _ImplementationFailed:
                    continue
                if isinstance(report, Report):
                    return report
            return None

        report, _ = self._wrapped(hook, first, kwargs, Report)
        if report is None:
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
            if version is None and name in DEFAULT_PLUGINS:
                version = __version__
            hooks = tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))
            infos.append(PluginInfo(name=name, version=version, hooks=hooks))
        return infos
