"""Colors as local model-server processes: the backend of the one-machine stack.

Pinning a version into a color stops that color's process and starts a new
`bluegreen serve model` on the color's port, then waits for `/readyz`. Processes are
started in their own session and recorded in the state dir, so they outlive a
controller restart (live traffic keeps flowing) and a new controller adopts them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from controller.errors import StageFailed, StageTimeout
from controller.journal_file import write_atomically
from controller.model import COLORS, Color

log = logging.getLogger("bluegreen.backend.local")


class LocalProcessBackend:
    def __init__(
        self,
        *,
        state_dir: Path,
        tracking_uri: str,
        ports: dict[Color, int],
        host: str = "127.0.0.1",
        python: str = sys.executable,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self._state_dir = state_dir
        self._log_dir = state_dir / "logs"
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._state_file = state_dir / "colors.json"
        self._tracking_uri = tracking_uri
        self._ports = ports
        self._host = host
        self._python = python
        self._extra_env = extra_env or {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # -- ColorBackend ----------------------------------------------------------------------

    def pinned_version(self, color: Color) -> str | None:
        entry = self._entries().get(color)
        if entry is None or not self._alive(entry["pid"]):
            return None
        return str(entry["version"])

    def is_ready(self, color: Color) -> bool:
        version = self.pinned_version(color)
        if version is None:
            return False
        try:
            answer = httpx.get(f"{self.endpoint(color)}/readyz", timeout=1.0)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and answer.json().get("version") == version

    def pin(self, color: Color, *, model: str, version: str, timeout: float) -> None:
        self.stop(color)
        process = self._start(color, model=model, version=version)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._reap(process.pid, timeout=0)
                self._forget(color)
                raise StageFailed(
                    f"{color} model server for v{version} exited with {process.returncode}: "
                    f"{self._last_error(color)}"
                )
            if self.is_ready(color):
                return
            time.sleep(0.2)
        self.stop(color)
        raise StageTimeout(f"{color} did not turn ready with v{version} within {timeout:.0f} s")

    def endpoint(self, color: Color) -> str:
        return f"http://{self._host}:{self._ports[color]}"

    # -- process management -------------------------------------------------------------

    def _start(self, color: Color, *, model: str, version: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            **self._extra_env,
            "MLFLOW_TRACKING_URI": self._tracking_uri,
            "MODEL_NAME": model,
            "MODEL_VERSION": version,
            "SERVING_COLOR": color,
        }
        command = [
            self._python,
            "-m",
            "controller.cli",
            "serve",
            "model",
            "--host",
            self._host,
            "--port",
            str(self._ports[color]),
        ]
        log_file = open(self._log_path(color), "wb")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        self._children[process.pid] = process
        entries = self._entries()
        entries[color] = {"pid": process.pid, "version": version, "model": model}
        write_atomically(self._state_file, json.dumps(entries))
        log.info("started %s with v%s (pid %d)", color, version, process.pid)
        return process

    def stop(self, color: Color, *, grace: float = 10.0) -> None:
        """Stop the color's process, if any (SIGTERM, then SIGKILL after `grace`)."""
        entry = self._entries().get(color)
        if entry is None:
            return
        pid = int(entry["pid"])
        if self._alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._reap(pid, timeout=5)
        self._forget(color)

    def stop_all(self) -> None:
        for color in COLORS:
            self.stop(color)

    def _forget(self, color: Color) -> None:
        entries = self._entries()
        if entries.pop(color, None) is not None:
            write_atomically(self._state_file, json.dumps(entries))

    def _entries(self) -> dict[str, dict[str, object]]:
        try:
            return json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return {}

    def _alive(self, pid: object) -> bool:
        pid = int(pid)  # type: ignore[call-overload]
        child = self._children.get(pid)
        if child is not None:  # our own child: poll() also reaps it, no zombie lingers
            return child.poll() is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _is_zombie(pid)

    def _reap(self, pid: int, *, timeout: float) -> None:
        child = self._children.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=timeout)

    def _log_path(self, color: Color) -> Path:
        return self._log_dir / f"model-server-{color}.log"

    def _last_error(self, color: Color) -> str:
        """The model server's one-line reason, from the end of its log."""
        try:
            lines = self._log_path(color).read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "no log"
        for line in reversed(lines):
            if "cannot serve" in line or "bad configuration" in line:
                return line.split(" ", 4)[-1] if "cannot serve" in line else line
        return lines[-1] if lines else "no output"


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return False
