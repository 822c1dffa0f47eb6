"""Runs `mlflow models serve` and our `python -m model_server` side by side for one model kind.

Used by `conftest.py`: one `ServerPair` per model kind, started once per session the
first time a test needs that kind. Both processes get the same registered version, the
same tracking server and `PYTHONHASHSEED=0`: MLflow lists a frame's extra columns in set
order, which otherwise varies from one process to the next.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import processes
from tests.support.model_kinds import RegisteredKind
from tests.support.model_servers import spawn_model_server
from tests.support.ports import free_port

# Small enough that one case can show the 413 against MLflow's unbounded read cheaply.
OURS_MAX_BODY_BYTES = 1024 * 1024
START_TIMEOUT_S = 180


@dataclass
class Server:
    name: str
    url: str
    process: object
    log_path: Path
    ready_path: str

    def stop(self) -> None:
        processes.stop(self.process)  # type: ignore[arg-type]


@dataclass
class ServerPair:
    """`theirs` is `mlflow models serve`, `ours` is the model server, same version."""

    kind: RegisteredKind
    theirs: Server
    ours: Server
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def client(self, side: str) -> httpx.Client:
        if side not in self.clients:
            url = self.theirs.url if side == "theirs" else self.ours.url
            # A new connection per request: MLflow drops some after a 500, and no case
            # should depend on what the previous one did to the connection.
            self.clients[side] = httpx.Client(
                base_url=url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)
            )
        return self.clients[side]

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        self.theirs.stop()
        self.ours.stop()


def start_pair(kind: RegisteredKind, tracking_uri: str, log_dir: Path) -> ServerPair:
    env = processes.venv_env(MLFLOW_TRACKING_URI=tracking_uri, PYTHONHASHSEED="0")
    theirs_port = free_port()
    theirs_log = log_dir / f"{kind.kind}-mlflow-models-serve.log"
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    theirs = Server(
        "mlflow models serve",
        f"http://127.0.0.1:{theirs_port}",
        processes.start(
            [
                mlflow_cli,
                "models",
                "serve",
                "-m",
                kind.uri,
                "-h",
                "127.0.0.1",
                "-p",
                str(theirs_port),
                "--env-manager",
                "local",
            ],
            env=env,
            log_path=theirs_log,
        ),
        theirs_log,
        "/ping",
    )
    model_server = spawn_model_server(
        tracking_uri,
        kind.model,
        kind.version,
        log_dir=log_dir,
        color="green",
        env={"PYTHONHASHSEED": "0", "MODEL_SERVER_MAX_BODY_BYTES": str(OURS_MAX_BODY_BYTES)},
    )
    ours = Server(
        "model_server",
        model_server.url,
        model_server.process,
        model_server.log_path,
        "/readyz",
    )
    pair = ServerPair(kind=kind, theirs=theirs, ours=ours)
    try:
        started = time.monotonic()
        for server in (theirs, ours):
            remaining = START_TIMEOUT_S - (time.monotonic() - started)
            processes.wait_http_ok(
                server.url + server.ready_path,
                process=server.process,  # type: ignore[arg-type]
                log_path=server.log_path,
                timeout=max(remaining, 1.0),
            )
    except BaseException:
        pair.stop()
        raise
    return pair
