"""A throwaway user with rootless podman, for the rootless tests and the rootless benchmark.

The user is made the way an administrator would (``useradd``, subordinate IDs, a runtime
directory at /run/user/UID as a login session makes it, overlay storage), gets atomicscan
as ``scripts/install`` installs it for a host
(non-editable, world-readable), and gets the test images copied into its own storage (root
built them; the user can't run debootstrap). On exit every process of the user is killed,
which takes podman's namespaces and every mount in them along; then the user, its
subordinate IDs and every file it had are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import HOST_CONF, CliResult

from atomicscan.runtime import RUN_LABEL

ROOT = Path(__file__).resolve().parents[1]
#: The lowest subordinate ID a throwaway user may get (useradd's own pick comes first).
SUBID_FLOOR = 300_000
SUBID_COUNT = 65_536


@dataclass(frozen=True)
class RootlessUser:
    name: str
    uid: int
    gid: int
    home: Path
    runtime_dir: Path
    command: Path
    """atomicscan as installed for everyone by scripts/install."""

    @property
    def state_dir(self) -> Path:
        return self.runtime_dir / "atomicscan"

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "atomicscan"

    @property
    def config_dir(self) -> Path:
        return self.home / "atomicscan.d"

    def env(self, **extra: str) -> dict[str, str]:
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
               "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "XDG_RUNTIME_DIR": str(self.runtime_dir),
               "ATOMICSCAN_CONFIG_DIR": str(self.config_dir)}
        if HOST_CONF.is_file():
            env["CONTAINERS_CONF"] = str(HOST_CONF)
        env.update(extra)
        return {key: value for key, value in env.items() if value}

    def argv(self, *argv: str, env: dict[str, str] | None = None) -> list[str]:
        """``argv`` as this user, with exactly ``env``: no root's variable leaks in."""
        chosen = self.env() if env is None else env
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "--", "env", "-i", *(f"{k}={v}" for k, v in sorted(chosen.items())), *argv]

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 600,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*argv, env=env), capture_output=True, text=True,
                              timeout=timeout, check=check, cwd=self.home)

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*argv), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=self.home,
                                start_new_session=True)

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = self.run("podman", *args, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} as {self.name}: {done.stderr}")
        return done

    def atomicscan(self, *args: str, env: dict[str, str] | None = None,
                   timeout: float = 600) -> CliResult:
        done = self.run(str(self.command), *args, env=env, timeout=timeout)
        return CliResult(done.returncode, done.stdout, done.stderr)

    def write(self, relative: str, text: str) -> Path:
        """A file in the user's home, owned by the user."""
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        for part in [path, *path.relative_to(self.home).parents]:
            os.chown(self.home / part, self.uid, self.gid)
        return path

    def snapshot(self) -> dict[str, frozenset[str]]:
        """What a run of this user could leave: mounts in its podman namespace (under its
        run state or its storage), its labelled containers, podman's image and container
        mounts, and its run state."""
        inside = self.podman("unshare", "cat", "/proc/self/mountinfo").stdout.splitlines()
        watched = (str(self.runtime_dir / "atomicscan"), str(self.home))
        mounts = frozenset(line.split()[4] for line in inside
                           if line.split()[4].startswith(watched))
        names = self.podman("ps", "--all", "--filter", f"label={RUN_LABEL}",
                            "--format", "{{.Names}}").stdout.split()
        listed = self.podman("unshare", "sh", "-c", "podman image mount; podman mount").stdout
        state = (frozenset(str(p) for p in self.state_dir.rglob("*"))
                 if self.state_dir.exists() else frozenset())
        return {"mounts": mounts, "containers": frozenset(names),
                "podman_mounts": frozenset(listed.splitlines()), "state": state}

    def assert_no_leftovers(self, before: dict[str, frozenset[str]]) -> None:
        after = self.snapshot()
        for kind, found in after.items():
            added = found - before[kind]
            assert not added, f"{kind} left behind by {self.name}: {sorted(added)}"


def _free_subid_start() -> int:
    """A start for a range no one in /etc/subuid or /etc/subgid has."""
    end = SUBID_FLOOR
    for name in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(name).read_text(encoding="utf-8").splitlines():
                fields = line.split(":")
                if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                    end = max(end, int(fields[1]) + int(fields[2]))
    return end


def _has_subids(name: str) -> bool:
    return all(any(line.split(":")[0] == name for line in Path(f).read_text().splitlines())
               for f in ("/etc/subuid", "/etc/subgid") if Path(f).exists()) \
        and Path("/etc/subuid").exists() and Path("/etc/subgid").exists()


def _install(base: Path) -> Path:
    """atomicscan as a host gets it, somewhere every user can read."""
    subprocess.run([str(ROOT / "scripts" / "install"), "--prefix", str(base / "opt"),
                    "--config-dir", str(base / "etc"), "--unit-dir", str(base / "units"),
                    "--bin-dir", "", "--no-packages", "--no-images"],
                   check=True, capture_output=True, text=True, timeout=900)
    return base / "opt" / "bin" / "atomicscan"


def copy_images(user: RootlessUser, images: Sequence[str]) -> None:
    """Root's images into the user's storage: one archive, streamed through a pipe."""
    save = subprocess.Popen(["podman", "save", "--multi-image-archive", *images],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_root_podman_env())
    load = subprocess.run(user.argv("podman", "load"), stdin=save.stdout, capture_output=True,
                          text=True, timeout=900, check=False, cwd=user.home)
    assert save.stdout is not None
    save.stdout.close()
    _, save_err = save.communicate(timeout=900)
    assert save.returncode == 0, save_err
    assert load.returncode == 0, load.stderr
    # An archive of several images keeps each one's names: check every one arrived.
    for image in images:
        user.podman("image", "exists", image)


def _root_podman_env() -> dict[str, str]:
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env and HOST_CONF.is_file():
        env["CONTAINERS_CONF"] = str(HOST_CONF)
    return env


def _kill_everything_of(uid: int) -> None:
    """Kill every process of ``uid``: podman's pause process holds its namespaces and
    mounts, which go with it."""
    for _attempt in range(50):
        if subprocess.run(["pkill", "-KILL", "-U", str(uid)], check=False).returncode == 1:
            return  # no process matched
        time.sleep(0.2)
    raise AssertionError(f"processes of uid {uid} survived SIGKILL")


@contextlib.contextmanager
def throwaway_user(images: Sequence[str]) -> Iterator[RootlessUser]:
    """A fresh user with rootless podman, atomicscan and ``images``; gone afterwards."""
    base = Path(tempfile.mkdtemp(prefix="atomicscan-rootless-", dir="/var/tmp"))
    base.chmod(0o755)
    name = f"asrl-{secrets.token_hex(4)}"
    home = base / "home"
    created = False
    made_run_user = not Path("/run/user").exists()
    try:
        subprocess.run(["useradd", "--home-dir", str(home), "--create-home", "--shell",
                        "/bin/sh", "--user-group", "--comment", "atomicscan rootless test",
                        name], check=True, capture_output=True, text=True)
        created = True
        if not _has_subids(name):
            start = _free_subid_start()
            span = f"{start}-{start + SUBID_COUNT - 1}"
            subprocess.run(["usermod", "--add-subuids", span, "--add-subgids", span, name],
                           check=True, capture_output=True, text=True)
        entry = pwd.getpwnam(name)
        # Where a login session puts it. A longer path (over 50 characters for podman's run
        # root) makes podman 4.3's container cleanup refuse, and every `podman run` wait 20 s.
        runtime_dir = Path("/run/user") / str(entry.pw_uid)
        shutil.rmtree(runtime_dir, ignore_errors=True)  # a deleted user's, of the same uid
        runtime_dir.mkdir(mode=0o700, parents=True)
        os.chown(runtime_dir, entry.pw_uid, entry.pw_gid)
        user = RootlessUser(name, entry.pw_uid, entry.pw_gid, home, runtime_dir,
                            _install(base))
        # What `atomicscan doctor` tells a user whose podman fell back to vfs.
        user.write(".config/containers/storage.conf", '[storage]\ndriver = "overlay"\n')
        user.config_dir.mkdir()
        os.chown(user.config_dir, user.uid, user.gid)
        if images:
            copy_images(user, images)
        yield user
    finally:
        if created:
            uid = pwd.getpwnam(name).pw_uid
            _kill_everything_of(uid)
            # With no usable runtime directory (the doctor test takes it away) podman keeps
            # its state in these instead.
            for place in (Path("/run/user") / str(uid), Path(f"/var/tmp/containers-user-{uid}"),
                          Path(f"/var/tmp/podman-run-{uid}")):
                shutil.rmtree(place, ignore_errors=True)
        if made_run_user:
            with contextlib.suppress(OSError):
                Path("/run/user").rmdir()
            subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)
            for path in ("/etc/subuid", "/etc/subgid"):
                _drop_lines_of(Path(path), name)
        shutil.rmtree(base, ignore_errors=True)


def _drop_lines_of(path: Path, name: str) -> None:
    """userdel leaves subordinate ranges behind on some shadow versions: drop them."""
    with contextlib.suppress(FileNotFoundError):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if line.split(":")[0] != name]
        if kept != lines:
            path.write_text("".join(kept), encoding="utf-8")


def results_of(run: CliResult) -> dict[str, Any]:
    """The report's results by target name, from ``--json``."""
    document = json.loads(run.stdout)
    return {result["target"]: result for result in document["results"]}
