"""pytest fixtures for people who write atomicscan plugins and scanners.

atomicscan registers this module as a pytest plugin (entry point ``pytest11``, name
``atomicscan``), so any test suite running in an environment where atomicscan is installed
can ask for these fixtures without importing anything:

``atomicscan_plugins(*plugins, entry_points=True)``
    A fresh :class:`atomicscan.plugins.Plugins`: the built-ins, the installed ``atomicscan``
    entry points (unless ``entry_points=False``), then ``plugins`` (modules or objects with
    ``@hookimpl`` functions). A hook that raised is listed in its ``errors``.
``atomicscan_scan(target_or_rootfs, scanner="name", ...)``
    Runs a real scan in this process and returns its :class:`atomicscan.results.Report`. A
    ``str`` names an image or container; a :class:`pathlib.Path` is a directory scanned like
    ``--rootfs``. Needs root, the runtime and the scanner image:
    ``atomicscan_scan.require(image, ...)`` skips the test, saying why, when one is missing.
``atomicscan_rootfs({"etc/os-release": "ID=demo\\n", ...})``
    A small root filesystem in ``tmp_path``: relative path to text (or bytes, or a
    :class:`Symlink`); a path ending in ``/`` is an empty directory.
``atomicscan_env``
    What the others run in: ``ATOMICSCAN_STATE_DIR``, ``ATOMICSCAN_RESULTS_DIR`` and
    ``ATOMICSCAN_CONFIG_DIR`` point into ``tmp_path`` (so the host's run state, results and
    ``/etc/atomicscan.d`` definitions are neither touched nor loaded), and
    ``CONTAINERS_CONF`` is ``/etc/atomicscan/containers.conf`` when that file exists and
    the variable is unset. Everything is undone after the test.

Usage::

    from my_scanner import plugin

    def test_registers(atomicscan_plugins):
        plugins = atomicscan_plugins(plugin, entry_points=False)
        assert "mine" in plugins.scanners.names()
        assert not plugins.errors

    def test_scans_a_directory(atomicscan_scan, atomicscan_rootfs):
        atomicscan_scan.require("localhost/mine:latest")
        root = atomicscan_rootfs({"etc/os-release": "ID=demo\\n"})
        report = atomicscan_scan(root, scanner="mine")
        assert report.successful, report.results[0].error

Nothing is imported from atomicscan until a fixture is used, and no fixture is ``autouse``:
merely having this plugin installed costs other test suites nothing and changes nothing on
the host. With an atomicscan that predates the entry point, load it with
``pytest -p atomicscan.testing`` (never together with the entry point: pytest refuses to
register one module twice).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from atomicscan.plugins import Plugins
    from atomicscan.results import Report

__all__ = [
    "AtomicscanEnv",
    "PluginsFactory",
    "RootfsFactory",
    "ScanFixture",
    "Symlink",
    "atomicscan_env",
    "atomicscan_plugins",
    "atomicscan_rootfs",
    "atomicscan_scan",
]

#: What a scan target may be: an image or container name, or a directory (``--rootfs``).
ScanTarget = str | Path


@dataclass(frozen=True)
class AtomicscanEnv:
    """The directories one test's atomicscan uses instead of the host's."""

    state_dir: Path
    """``ATOMICSCAN_STATE_DIR``: run locks, journals and mount points."""
    results_dir: Path
    """``ATOMICSCAN_RESULTS_DIR``: where reports and scanner files are kept."""
    config_dir: Path
    """``ATOMICSCAN_CONFIG_DIR``: empty; write scanner definitions (``*.toml``) here."""


@dataclass(frozen=True)
class Symlink:
    """An entry of :func:`atomicscan_rootfs` that is a symbolic link to ``target``.

    Absolute targets are kept as they are: inside the scanned root they mean that root.
    """

    target: str


class PluginsFactory:
    """``atomicscan_plugins(*plugins, entry_points=True)``: a new plugin manager each call."""

    def __init__(self, env: AtomicscanEnv) -> None:
        # Held so plugins made here read definitions from env.config_dir, never the host's.
        self.env = env

    def __call__(self, *plugins: object, entry_points: bool = True) -> Plugins:
        """The built-ins, the ``atomicscan`` entry points (unless ``entry_points`` is false),
        then ``plugins``.

        Passing a module that an installed entry point already loads registers it twice,
        which pluggy refuses: use ``entry_points=False`` to test a module from a checkout.
        """
        from atomicscan.plugins import Plugins

        return Plugins.load(plugins, entry_points=entry_points)


class ScanFixture:
    """``atomicscan_scan(...)``: a real scan, in-process, inside :class:`AtomicscanEnv`."""

    def __init__(self, env: AtomicscanEnv, plugins: PluginsFactory) -> None:
        self.env = env
        self._plugins = plugins

    def __call__(
        self,
        target_or_rootfs: ScanTarget | Sequence[ScanTarget],
        scanner: str,
        scan_type: str | None = None,
        scanner_args: Mapping[str, str] | str | None = None,
        runtime: str | None = "podman",
        plugins: Plugins | None = None,
        timeout: float | None = 600,
    ) -> Report:
        """Scan one target or several (one scanner container for them all).

        ``target_or_rootfs``: a ``str`` is an image or container (never pulled); a
        :class:`~pathlib.Path` is a directory, scanned as with ``--rootfs``. ``scanner_args``
        is a mapping or atomic scan's ``"k=v,k2=v2"``. ``runtime=None`` looks in every
        usable runtime. ``plugins`` defaults to ``atomicscan_plugins()``.

        Returns the merged report, also written to ``results_dir/<scanner>/<time>/``. A scan
        that ran but failed is a report with ``successful`` false; a scan that could not run
        (no root, unknown scanner, missing image or target) raises
        :class:`atomicscan.errors.AtomicscanError`.
        """
        from atomicscan.scan import ScanRequest, ScanRun, parse_scanner_args

        if isinstance(target_or_rootfs, str | os.PathLike):
            chosen: Sequence[ScanTarget] = [target_or_rootfs]
        else:
            chosen = list(target_or_rootfs)
        args = (parse_scanner_args(scanner_args) if isinstance(scanner_args, str)
                else dict(scanner_args or {}))
        request = ScanRequest(
            targets=tuple(item for item in chosen if isinstance(item, str)),
            rootfs=tuple(Path(item) for item in chosen if not isinstance(item, str)),
            scanner=scanner,
            scan_type=scan_type,
            scanner_args=args,
            runtime=runtime,
            timeout=timeout,
        )
        run = ScanRun(plugins if plugins is not None else self._plugins(), request)
        return run.execute()

    def require(self, *images: str, runtime: str = "podman", hint: str = "") -> None:
        """Skip the calling test unless a real scan can run here.

        That is: the test runs as root (atomicscan mounts targets), ``runtime`` is usable, and
        every image in ``images`` (scanner images, target images) is in its storage.
        ``hint`` is added to the skip reason for missing images, e.g. how to build them.
        """
        from atomicscan.errors import AtomicscanError

        __tracebackhide__ = True  # skips are reported at the calling test's line
        if os.geteuid() != 0:
            pytest.skip("atomicscan scans need root (they mount images): run the test as root")
        try:
            engine = self._plugins().runtimes.get(runtime)
            engine.check()
            missing = [image for image in images if engine.image_id(image) is None]
        except AtomicscanError as exc:
            pytest.skip(f"runtime {runtime} is not usable here: {exc}")
        if missing:
            reason = (f"not in {runtime}'s storage (atomicscan never pulls): "
                      f"{', '.join(missing)}")
            pytest.skip(f"{reason}; {hint}" if hint else reason)


class RootfsFactory:
    """``atomicscan_rootfs(files)``: a new directory tree under ``tmp_path`` each call."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._count = 0

    def __call__(self, files: Mapping[str, str | bytes | Symlink]) -> Path:
        """Create the tree and return its root.

        Keys are paths relative to the root (``"usr/bin/tool"``); a key ending in ``/`` makes
        an empty directory. Values are text (written as UTF-8), bytes, or a
        :class:`Symlink`. Directories are made ``0755`` and files ``0644``, readable by the
        scanner's unprivileged user; chmod a file afterwards for other modes.
        """
        self._count += 1
        root = self.base / f"rootfs-{self._count}"
        root.mkdir(parents=True)
        root.chmod(0o755)
        for key, content in files.items():
            relative = PurePosixPath(key)
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                raise ValueError(f"atomicscan_rootfs: {key!r} is not a path inside the root")
            path = root.joinpath(*relative.parts)
            self._make_parents(root, path.parent)
            if key.endswith("/"):
                if content:
                    raise ValueError(f"atomicscan_rootfs: directory {key!r} cannot have content")
                self._make_parents(root, path)
            elif isinstance(content, Symlink):
                path.symlink_to(content.target)
            else:
                data = content.encode("utf-8") if isinstance(content, str) else content
                path.write_bytes(data)
                path.chmod(0o644)
        return root

    @staticmethod
    def _make_parents(root: Path, directory: Path) -> None:
        for parent in (directory, *directory.parents):
            if parent == root:
                break
            if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
                raise ValueError(f"atomicscan_rootfs: {parent.relative_to(root)} is in the way "
                                 "of a directory")
        directory.mkdir(parents=True, exist_ok=True)
        for parent in (directory, *directory.parents):
            if parent == root:
                break
            parent.chmod(0o755)


@pytest.fixture
def atomicscan_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AtomicscanEnv:
    """Point atomicscan's state, results and definitions into ``tmp_path`` for this test."""
    from atomicscan.isolation import host_containers_conf

    base = tmp_path / "atomicscan"
    env = AtomicscanEnv(state_dir=base / "state", results_dir=base / "results",
                        config_dir=base / "atomicscan.d")
    env.config_dir.mkdir(parents=True)
    monkeypatch.setenv("ATOMICSCAN_STATE_DIR", str(env.state_dir))
    monkeypatch.setenv("ATOMICSCAN_RESULTS_DIR", str(env.results_dir))
    monkeypatch.setenv("ATOMICSCAN_CONFIG_DIR", str(env.config_dir))
    conf = host_containers_conf()
    if conf is not None:
        monkeypatch.setenv("CONTAINERS_CONF", str(conf))
    return env


@pytest.fixture
def atomicscan_plugins(atomicscan_env: AtomicscanEnv) -> PluginsFactory:
    """A factory: ``atomicscan_plugins(*plugins, entry_points=True)`` -> ``Plugins``."""
    return PluginsFactory(atomicscan_env)


@pytest.fixture
def atomicscan_scan(atomicscan_env: AtomicscanEnv,
                    atomicscan_plugins: PluginsFactory) -> ScanFixture:
    """A factory: ``atomicscan_scan(target_or_rootfs, scanner="name", ...)`` -> ``Report``."""
    return ScanFixture(atomicscan_env, atomicscan_plugins)


@pytest.fixture
def atomicscan_rootfs(tmp_path: Path) -> RootfsFactory:
    """A factory: ``atomicscan_rootfs({"relative/path": "content", ...})`` -> root ``Path``."""
    return RootfsFactory(tmp_path / "atomicscan-rootfs")
