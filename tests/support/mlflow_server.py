"""Starts a real `mlflow server` (SQLite store, local artifacts) for the tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from bluegreen.stack import MLFLOW_SERVER_ENV, mlflow_server_command
from plumbing.processes import child_env, spawn, stop, wait_http_ok
from tests.support.ports import free_port


@dataclass
class MlflowServer:
    url: str
    process: subprocess.Popen[bytes]
    root: Path
    port: int

    def stop(self) -> None:
        stop(self.process, grace_s=15)

    def start_again(self) -> None:
        """Restart on the same port and store (for 'MLflow was down' tests)."""
        self.process = _spawn(self.root, self.port)
        wait_http_ok(f"{self.url}/health", timeout_s=90, process=self.process, what="mlflow")


def _spawn(root: Path, port: int) -> subprocess.Popen[bytes]:
    return spawn(
        mlflow_server_command(root, host="127.0.0.1", port=port),
        env=child_env(**MLFLOW_SERVER_ENV),
        log_path=root / "mlflow-server.log",
    )


def start_mlflow_server(root: Path) -> MlflowServer:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = _spawn(root, port)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/health", timeout_s=90, process=process, what="mlflow server")
    return MlflowServer(url=url, process=process, root=root, port=port)
