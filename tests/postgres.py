"""A throwaway PostgreSQL server for the real tier: its own directory, socket and port.

``initdb`` refuses to run as root, so the server runs as the ``postgres`` user (``runuser``),
with trust authentication, listening on 127.0.0.1 and a private socket directory, fsync off.
It is stopped by its PID (``pg_ctl -m immediate``) and its directory removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from daemons import wait_gone

PG_ROOT = Path("/usr/lib/postgresql")


def bindir() -> Path:
    """The newest installed server's bin directory (15 on Debian 12)."""
    versions = sorted((path for path in PG_ROOT.glob("*/bin") if (path / "initdb").is_file()),
                      key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)
    if not versions:
        raise RuntimeError("PostgreSQL server not installed (package postgresql; scripts/setup)")
    return versions[-1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_postgres(*argv: str | Path) -> None:
    done = subprocess.run(["runuser", "-u", "postgres", "--", *map(str, argv)],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")


def _stop(bin_dir: Path, data: Path, pid: int) -> None:
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
        _as_postgres(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    if not wait_gone(pid, step=0.05):
        # pg_ctl could not stop it: SIGQUIT is PostgreSQL's immediate shutdown
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
    if not wait_gone(pid, step=0.05):
        raise RuntimeError(f"postmaster {pid} is still running after pg_ctl -m immediate stop")


@contextlib.contextmanager
def throwaway_postgresql() -> Iterator[str]:
    """Start a private server; yields a URL of its ``postgres`` database (trust auth)."""
    bin_dir = bindir()
    base = Path(tempfile.mkdtemp(prefix="atomicscan-pg-"))
    try:
        shutil.chown(base, "postgres")
        data = base / "data"
        port = _free_port()
        _as_postgres(bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust",
                     "--no-sync", "--encoding=UTF8", "--locale=C")
        _as_postgres(bin_dir / "pg_ctl", "-D", data, "-w", "-t", "60", "-l", base / "server.log",
                     "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                     "-c max_connections=100", "start")
        pid = int((data / "postmaster.pid").read_text().split()[0])
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            _stop(bin_dir, data, pid)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server; returns its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
