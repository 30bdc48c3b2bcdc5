"""Debian's Chromium, headless, driven over DevTools: the real tier's browser for pages.

Chromium runs with ``--no-sandbox`` because the real tier runs as root, where Chromium's
sandbox refuses to start. It talks DevTools over ``--remote-debugging-pipe`` (fd 3 in, fd 4
out): no port, no extra Python package. The ``browser`` fixture ends every process of it
(its own process group) and removes its profile.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium")

#: The child re-opens the two pipe ends as fds 3 and 4, where Chromium expects them.
_ON_FDS_3_4 = ("import os, sys\n"
               "os.dup2(int(sys.argv[1]), 3)\n"
               "os.dup2(int(sys.argv[2]), 4)\n"
               "os.execv(sys.argv[3], sys.argv[3:])\n")

class DevTools:
    """One headless Chromium and its DevTools pipe: commands in, replies and events out."""

    def __init__(self, profile: Path, log: Path) -> None:
        assert CHROMIUM is not None
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--hide-scrollbars", "--mute-audio", "about:blank"]
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ON_FDS_3_4, str(commands_read), str(replies_write),
                 *argv],
                pass_fds=(commands_read, replies_write), stdin=subprocess.DEVNULL,
                stdout=stderr, stderr=stderr, start_new_session=True)
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.profile = profile

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            # A bound so a wedged browser fails the test instead of hanging it.
            ready, _, _ = select.select([self._replies], [], [], 120)
            assert ready, "chromium stopped answering on the DevTools pipe"
            chunk = os.read(self._replies, 1 << 16)
            assert chunk, "chromium closed the DevTools pipe"
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def _write(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        return self._next_id

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        wanted = self._write(method, params or {}, session)
        while True:
            reply = self._receive()
            if reply.get("id") == wanted:
                assert "error" not in reply, f"{method}: {reply['error']}"
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._event(reply)

    def _event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event["method"] == "Page.javascriptDialogOpening":
            # Answer it (without waiting), or the page stays blocked; the test fails on the
            # event itself.
            self._write("Page.handleJavaScriptDialog", {"accept": True}, event.get("sessionId"))

    def wait_for(self, method: str) -> dict[str, Any]:
        start = len(self.events)
        while True:
            for event in self.events[start:]:
                if event["method"] == method:
                    self.events.remove(event)
                    return event
            start = len(self.events)
            self._event(self._receive())

    def open_page(self, page: Path) -> str:
        """A new tab at 1280x900 that reports console, log and network events, with ``page``
        loaded; returns its DevTools session."""
        target_id = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session: str = self.send("Target.attachToTarget",
                                 {"targetId": target_id, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", {}, session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                  session)
        self.send("Page.navigate", {"url": page.as_uri()}, session)
        self.wait_for("Page.loadEventFired")
        return session

    def evaluate(self, expression: str, session: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True}, session)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return json.loads(result["result"]["value"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._write("Browser.close", {}, None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        # Renderers and helpers share the browser's new process group: end all of them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


def _processes_using(profile: Path) -> list[int]:
    """PIDs whose command line names ``profile``: Chromium's processes all carry it."""
    marker = str(profile).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed; run scripts/setup", pytrace=False)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    devtools = DevTools(profile, tmp_path / "chromium.log")
    try:
        yield devtools
    finally:
        devtools.close()
        for _ in range(100):  # zombies are reaped by init a moment after the group died
            if not _processes_using(profile):
                break
            time.sleep(0.1)
        left = _processes_using(profile)
        shutil.rmtree(profile, ignore_errors=True)
        assert not left, f"chromium processes left behind: {left}"
        assert not profile.exists()


def is_problem(event: dict[str, Any]) -> bool:
    """A console error, an uncaught exception, a dialog, a CSP report, or a request."""
    method, params = event["method"], event.get("params", {})
    if method == "Runtime.consoleAPICalled":
        return params.get("type") in {"error", "assert", "warning"}
    if method == "Log.entryAdded":
        return params.get("entry", {}).get("level") in {"error", "warning"}
    if method == "Network.requestWillBeSent":
        return not params.get("request", {}).get("url", "").startswith("file://")
    return method in {"Runtime.exceptionThrown", "Page.javascriptDialogOpening"}
