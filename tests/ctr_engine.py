"""containerd as a runtime under test: the docker-style commands the shared real tests give
an engine, said with ``ctr`` against the session's private containerd.

The shared tests speak docker's CLI (``run -d --name N IMAGE CMD``, ``rm --force N``...).
This engine understands the few forms they use and nothing else: anything it does not know
fails the test loudly instead of doing something else quietly. What ``ctr`` cannot do at all
(``commit``, ``--user`` on ``run``) skips the test with the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd import K8S, ctr, remove_container
from helpers import Engine

from atomicscan.state import root_tag

#: The label every atomicscan scanner container carries.
RUN_LABEL = "io.atomicscan.run"


def _address() -> str:
    address = os.environ.get("CONTAINERD_ADDRESS", "")
    assert address, "the containerd runtime's tests need the session's private containerd"
    return address


def _completed(args: list[str], stdout: str = "", returncode: int = 0,
               stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(args, returncode, stdout, stderr)


def _chain_id(diff_ids: list[str]) -> str:
    chain = diff_ids[0]
    for diff_id in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
    return chain


def _mount_dirs(text: str) -> list[Path]:
    """The directories in ``ctr snapshots mounts`` output: upper first, then the lowers."""
    dirs: list[Path] = []
    for line in text.splitlines():
        words = line.split()
        if "-o" in words:
            options = words[words.index("-o") + 1].split(",")
            upper = [o.removeprefix("upperdir=") for o in options if o.startswith("upperdir=")]
            lower = next((o.removeprefix("lowerdir=") for o in options
                          if o.startswith("lowerdir=")), "")
            dirs += [Path(p) for p in [*upper, *lower.split(":")] if p]
        if words[:3] == ["mount", "-t", "bind"]:
            dirs.append(Path(words[3]))
    assert dirs, f"no directories in: {text!r}"
    return dirs


class CtrEngine(Engine):
    """The ``Engine`` of the containerd runtime (tests/helpers.py): same methods, same forms."""

    def __init__(self, namespace: str = K8S) -> None:
        super().__init__("containerd")
        self.namespace = namespace

    def _ctr(self, *args: str, check: bool = True, namespace: str | None = None
             ) -> subprocess.CompletedProcess[str]:
        return ctr(*args, address=_address(), namespace=namespace or self.namespace,
                   check=check)

    def _namespaces(self) -> list[str]:
        return ctr("namespaces", "ls", "-q", address=_address()).stdout.split()

    # -- docker-style commands -------------------------------------------------------------

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command, rest = args[0], list(args[1:])
        if command in {"run", "create"}:
            return self._run(command, rest, check)
        if command == "rm" and rest[:1] == ["--force"]:
            for name in rest[1:]:
                remove_container(name, _address(), self.namespace)
            return _completed(list(args))
        if command == "container" and rest[:1] == ["inspect"]:
            return self._ctr("containers", "info", *rest[1:], check=check)
        if command == "inspect" and rest[:2] == ["--format", "{{.State.Running}}"]:
            status = self._task_status(rest[2])
            return _completed(list(args), f"{str(status == 'RUNNING').lower()}\n")
        if command == "tag":
            return self._ctr("images", "tag", *rest, check=check)
        if command == "rmi":
            names = [name for name in rest if not name.startswith("-")]
            return self._ctr("images", "rm", *names, check=check)
        if command == "images" and rest[-2:] == ["--format", "{{.ID}}"]:
            ids = sorted(self._all_image_ids())
            return _completed(list(args), "".join(f"{i}\n" for i in ids))
        if command == "ps" and "--all" in rest:
            return _completed(list(args), "".join(f"{c}\n" for c in self._container_ids()))
        if command == "commit":
            pytest.skip("ctr has no commit: containerd builds no images")
        raise AssertionError(f"the containerd test engine does not know: {args}")

    def _run(self, command: str, rest: list[str], check: bool
             ) -> subprocess.CompletedProcess[str]:
        flags: list[str] = []
        name = ""
        detach = False
        while rest and rest[0].startswith("-"):
            flag = rest.pop(0)
            if flag in {"-d", "--detach"}:
                detach = True
            elif flag == "--name":
                name = rest.pop(0)
            elif flag in {"--label", "--env"}:
                flags += [flag, rest.pop(0)]
            elif flag == "--user":
                pytest.skip("ctr run has no --user")
            else:
                raise AssertionError(f"the containerd test engine does not know {flag}")
        image, *argv = rest
        name = name or f"atomicscan-test-{uuid.uuid4().hex[:12]}"
        if command == "create":
            return self._ctr("containers", "create", *flags, image, name, *argv, check=check)
        # Without --detach ctr waits for the process; the container stays, stopped.
        done = self._ctr("run", *(["--detach"] if detach else []), *flags, image, name, *argv,
                         check=check)
        if not detach:
            self._ctr("tasks", "delete", name, check=False)
        return done

    # -- what the tests look at ------------------------------------------------------------

    def _task_status(self, name: str) -> str:
        for line in self._ctr("tasks", "ls").stdout.splitlines()[1:]:
            words = line.split()
            if words and words[0] == name:
                return words[-1]
        return "STOPPED"

    def _config(self, image: str, namespace: str) -> tuple[str, dict[str, object]]:
        listed = self._ctr("images", "ls", namespace=namespace).stdout.splitlines()[1:]
        digest = next((line.split()[2] for line in listed if line.split()[:1] == [image]), None)
        assert digest, f"{image} is not in containerd's {namespace} namespace"
        manifest = json.loads(self._ctr("content", "get", digest, namespace=namespace).stdout)
        config_digest = str(manifest["config"]["digest"])
        config = json.loads(self._ctr("content", "get", config_digest,
                                      namespace=namespace).stdout)
        return config_digest.removeprefix("sha256:"), config

    def _all_image_ids(self) -> set[str]:
        ids = set()
        for namespace in self._namespaces():
            for line in self._ctr("images", "ls", "-q", namespace=namespace).stdout.split():
                ids.add(self._config(line, namespace)[0])
        return ids

    def _container_ids(self) -> list[str]:
        return [cid for namespace in self._namespaces()
                for cid in self._ctr("containers", "ls", "-q", namespace=namespace).stdout.split()]

    def image_id(self, name: str) -> str:
        return self._config(name, self.namespace)[0]

    def labelled_containers(self) -> list[str]:
        """atomicscan's scanner containers: podman's (it runs the scanners when it is usable,
        docs/containerd.md) and any ``ctr`` ran."""
        found = Engine("podman").labelled_containers()
        for namespace in self._namespaces():
            listed = self._ctr("containers", "ls", "-q", f'labels."{RUN_LABEL}"',
                               namespace=namespace).stdout.split()
            found += [f"ctr:{namespace}/{cid}" for cid in listed]
        return found

    def scanner_containers(self, state_dir: Path) -> list[str]:
        found = Engine("podman").scanner_containers(state_dir)
        suffix = "@" + root_tag(state_dir)
        for namespace in self._namespaces():
            for cid in self._ctr("containers", "ls", "-q", f'labels."{RUN_LABEL}"',
                                 namespace=namespace).stdout.split():
                info = json.loads(self._ctr("containers", "info", cid,
                                            namespace=namespace).stdout)
                if str(info.get("Labels", {}).get(RUN_LABEL, "")).endswith(suffix):
                    found.append(cid)
        return found

    @contextlib.contextmanager
    def _snapshot_dirs(self, key: str) -> Iterator[list[Path]]:
        yield _mount_dirs(self._ctr("snapshots", "mounts", "/mnt", key).stdout)

    @contextlib.contextmanager
    def image_root(self, name: str) -> Iterator[list[Path]]:
        """The image's unpacked layers, through a view of our own removed after."""
        _image_id, config = self._config(name, self.namespace)
        rootfs = config["rootfs"]
        assert isinstance(rootfs, dict)
        key = f"test-view-{uuid.uuid4().hex}"
        self._ctr("snapshots", "view", key, _chain_id(list(rootfs["diff_ids"])))
        try:
            with self._snapshot_dirs(key) as dirs:
                yield dirs
        finally:
            self._ctr("snapshots", "rm", key, check=False)

    @contextlib.contextmanager
    def container_root(self, name: str) -> Iterator[list[Path]]:
        """The container's writable layer and its image's layers."""
        info = json.loads(self._ctr("containers", "info", name).stdout)
        with self._snapshot_dirs(str(info["SnapshotKey"])) as dirs:
            yield dirs
