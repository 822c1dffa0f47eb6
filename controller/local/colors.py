"""Colors as local model-server processes: the color backend of the one-machine stack.

Pinning a version into a color stops that color's process and starts a new
`python -m model_server` on the color's port, then waits for `/readyz`. Processes lead
their own sessions and are recorded (pid, start time, command line) in the state dir, so
they outlive a controller restart (live traffic keeps flowing) and a new controller
adopts them; a recorded pid that now belongs to another process is never signalled.
With `warm_preparer`, one more process is kept the same way: `python -m
model_server.prepare_service`, which has imported MLflow once and prepares each color's
cache miss in a fork, so a first stage skips those imports.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from controller.domain import COLORS, Color
from controller.errors import StageCancelled, StageFailed, StageTimeout
from controller.ports import Cancel
from plumbing.files import write_atomically
from plumbing.processes import (
    ProcessIdentity,
    child_env,
    identity,
    python_module_command,
    spawn,
    stop,
)

log = logging.getLogger("bluegreen.local.colors")

# The controller's own credentials never reach a model server: it unpickles registry
# models, and whatever it can read, such a model can too.
_PRIVATE_PREFIXES = ("BLUEGREEN_", "ROUTER_")
# How long a stage waits for a warm preparer that is still importing MLflow (it takes
# seconds; a cold child would take as long and more).
PREPARER_START_S = 30.0


class CorruptState(ValueError):
    """A state file the backend cannot trust; the controller refuses to start on it."""


class LocalProcessBackend:
    def __init__(
        self,
        *,
        state_dir: Path,
        tracking_uri: str,
        ports: Mapping[Color, int],
        host: str,
        model_server_token: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        warm_preparer: bool = False,
    ) -> None:
        self._log_dir = state_dir / "logs"
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._state_file = state_dir / "colors.json"
        self._preparer_file = state_dir / "preparer.json"
        self._preparer_socket = _socket_path(state_dir) if warm_preparer else None
        self._tracking_uri = tracking_uri
        self._ports = dict(ports)
        self._host = host
        self._model_server_token = model_server_token
        self._extra_env = dict(extra_env or {})
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # reaped when stopped
        self._entries()  # refuse a corrupt record now, not on the first /status

    # -- ColorBackend ----------------------------------------------------------------------

    def pinned_version(self, color: Color) -> str | None:
        entry = self._entries().get(color)
        if entry is None or not _process(entry).alive():
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

    def pin(
        self, color: Color, *, model: str, version: str, timeout: float, cancel: Cancel = None
    ) -> None:
        self.stop(color)
        if self._preparer_socket is not None:
            self._await_preparer(self._preparer_socket, cancel)
        process = spawn(
            python_module_command(
                "model_server", "--host", self._host, "--port", str(self._ports[color])
            ),
            env=self._model_server_env(color, model=model, version=version),
            log_path=self._log_path(color),
            append=False,
        )
        self._children[process.pid] = process
        self._record(color, identity(process), model=model, version=version)
        log.info("started %s with v%s (pid %d)", color, version, process.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._children.pop(process.pid, None)
                self._forget(color)
                raise StageFailed(
                    f"{color} model server for v{version} exited with {process.returncode}: "
                    f"{self._last_error(color)}"
                )
            if self.is_ready(color):
                return
            if (cancel or threading.Event()).wait(0.2):
                # A half-loaded standby would hold nothing anyone asked for: it holds nothing.
                self.stop(color)
                raise StageCancelled(f"{color} stopped while loading v{version}")
        self.stop(color)
        raise StageTimeout(f"{color} did not turn ready with v{version} within {timeout:.0f} s")

    def endpoint(self, color: Color) -> str:
        return f"http://{self._host}:{self._ports[color]}"

    def scale_down(self, color: Color, *, replicas: int = 0) -> None:
        """A local color is one process: to 0 stops it, any more keeps it."""
        if replicas == 0:
            self.stop(color)

    # -- process management -------------------------------------------------------------

    def stop(self, color: Color, *, grace_s: float = 10.0) -> None:
        """Stop the color's process, if the recorded one is still running, and forget it."""
        entry = self._entries().get(color)
        if entry is None:
            return
        recorded = _process(entry)
        own = self._children.pop(recorded.pid, None)
        stop(own if own is not None else recorded, grace_s=grace_s)  # own: reaped too
        self._forget(color)

    def stop_all(self) -> None:
        for color in COLORS:
            self.stop(color)
        preparer = self._recorded_preparer()
        if preparer is not None:
            own = self._children.pop(preparer.pid, None)
            stop(own if own is not None else preparer)  # own: reaped too
        self._preparer_file.unlink(missing_ok=True)

    # -- the warm preparer ---------------------------------------------------------------

    def start_preparer(self) -> None:
        """Start the warm preparer now, so it has imported MLflow by the first stage (a
        stage starts it too, if it is not running)."""
        if self._preparer_socket is not None:
            self._ensure_preparer(self._preparer_socket)

    def _ensure_preparer(self, socket_path: Path) -> None:
        """Start the warm preparer unless the one recorded is still running (a restarted
        controller keeps it, as it keeps the colors' processes)."""
        if self._recorded_preparer() is not None:
            return
        process = spawn(
            python_module_command("model_server.prepare_service", "--socket", str(socket_path)),
            env=child_env(self._shared_env(), MLFLOW_TRACKING_URI=self._tracking_uri),
            log_path=self._log_dir / "preparer.log",
            append=False,
        )
        self._children[process.pid] = process
        write_atomically(self._preparer_file, json.dumps(identity(process).as_json()))
        log.info("started the warm preparer on %s (pid %d)", socket_path, process.pid)

    def _await_preparer(self, socket_path: Path, cancel: Cancel) -> None:
        """Restart the preparer if it died, and give one still importing time to listen: a
        model server started before would pay the same imports in a child of its own."""
        self._ensure_preparer(socket_path)
        deadline = time.monotonic() + PREPARER_START_S
        while not socket_path.exists() and time.monotonic() < deadline:
            if self._recorded_preparer() is None:
                return  # it died: the model server prepares in its own child
            if (cancel or threading.Event()).wait(0.1):
                return  # the stage sees the cancel itself
        if not socket_path.exists():
            log.warning("the warm preparer is not listening after %.0f s", PREPARER_START_S)

    def _recorded_preparer(self) -> ProcessIdentity | None:
        try:
            recorded = ProcessIdentity.from_json(json.loads(self._preparer_file.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            return None
        return recorded if recorded.alive() else None

    def _shared_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_PREFIXES)}
        env.update(self._extra_env)
        return env

    def _model_server_env(self, color: Color, *, model: str, version: str) -> dict[str, str]:
        own = {"MODEL_SERVER_ADMIN_TOKEN": self._model_server_token or ""}
        warm = {"MODEL_SERVER_PREPARE_SOCKET": str(self._preparer_socket)}
        return child_env(
            self._shared_env(),
            MLFLOW_TRACKING_URI=self._tracking_uri,
            MODEL_NAME=model,
            MODEL_VERSION=version,
            SERVING_COLOR=color,
            **(own if self._model_server_token else {}),
            **(warm if self._preparer_socket is not None else {}),
        )

    def _record(self, color: Color, process: ProcessIdentity, *, model: str, version: str) -> None:
        entries = self._entries()
        entries[color] = {"process": process.as_json(), "version": version, "model": model}
        write_atomically(self._state_file, json.dumps(entries))

    def _forget(self, color: Color) -> None:
        entries = self._entries()
        if entries.pop(color, None) is not None:
            write_atomically(self._state_file, json.dumps(entries))

    def _entries(self) -> dict[str, dict[str, object]]:
        try:
            raw = json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptState(
                f"{self._state_file} is not valid JSON ({exc}); "
                "stop the model servers and remove it to start afresh"
            ) from None
        if not isinstance(raw, dict) or not all(
            color in COLORS and _is_entry(entry) for color, entry in raw.items()
        ):
            raise CorruptState(
                f"{self._state_file} does not hold process records by color; "
                "stop the model servers and remove it to start afresh"
            )
        return raw

    def _log_path(self, color: Color) -> Path:
        return self._log_dir / f"model-server-{color}.log"

    def _last_error(self, color: Color) -> str:
        """The model server's one-line reason, from the end of its log."""
        try:
            lines = self._log_path(color).read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "no log"
        for line in reversed(lines):
            if "cannot serve" in line:
                return line.split(" ", 4)[-1]
            if "bad configuration" in line:
                return line
        return lines[-1] if lines else "no output"


def _is_entry(entry: object) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("version"), str):
        return False
    raw = entry.get("process")
    if raw is None:
        return isinstance(entry.get("pid"), int)  # an older record: a bare pid
    try:
        ProcessIdentity.from_json(raw)
    except (ValueError, AttributeError):
        return False
    return True


def _process(entry: Mapping[str, object]) -> ProcessIdentity:
    """The recorded process; a bare pid from an older record matches no process at all."""
    raw = entry.get("process")
    if not isinstance(raw, dict):
        return ProcessIdentity(pid=int(str(entry.get("pid", 0))), started=0.0, cmdline=())
    return ProcessIdentity.from_json(raw)


def _socket_path(state_dir: Path) -> Path:
    """The preparer's socket: in the state dir, unless that path is too long for a Unix
    socket (108 bytes on Linux), then a name in the temp dir derived from the state dir."""
    path = state_dir.resolve() / "prepare.sock"
    if len(str(path).encode()) < 100:
        return path
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"bluegreen-prepare-{digest}.sock"
