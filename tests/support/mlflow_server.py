"""A real `mlflow server` (SQLite store, local artifacts) with the iris versions registered.

The fixtures `mlflow_server` and `iris` are the session's registry (registered by
`tests/conftest.py`); `start_mlflow_server` starts one more (the cluster tier's own). It
listens on loopback unless given another host: the cluster tier puts it on the
kube-sandbox's host address so pods reach it, and lets that address through MLflow's
Host-header check (which admits only loopback and private ranges by default).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bluegreen.stack import MLFLOW_SERVER_ENV, mlflow_server_command
from plumbing.processes import child_env, spawn, stop, wait_http_ok
from tests.support.iris import IrisVersions
from tests.support.models import (
    register_constant_model,
    register_iris,
    register_slow_model,
    remove_artifacts,
)
from tests.support.ports import free_port


@dataclass
class MlflowServer:
    url: str
    process: subprocess.Popen[bytes]
    root: Path
    port: int
    host: str = "127.0.0.1"

    def stop(self) -> None:
        stop(self.process, grace_s=15)

    def start_again(self) -> None:
        """Restart on the same port and store (for 'MLflow was down' tests)."""
        self.process = _spawn(self.root, self.host, self.port)
        wait_http_ok(f"{self.url}/health", timeout_s=90, process=self.process, what="mlflow")


# Registry webhooks to the tests' controllers: plain http on loopback (MLflow allows only
# https to public addresses by default), the webhook list not cached for a minute (an
# event before a test registers its webhook would hide it), a fixed key for the secrets.
WEBHOOK_ENV = {
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": "bGVhcm4tYmx1ZWdyZWVuLXRlc3Qta2V5LTMyYnl0ZXM=",
}


def _spawn(root: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    allowed = {} if host == "127.0.0.1" else {"MLFLOW_SERVER_ALLOWED_HOSTS": f"{host},{host}:*"}
    return spawn(
        mlflow_server_command(root, host=host, port=port),
        env=child_env(**MLFLOW_SERVER_ENV, **WEBHOOK_ENV, **allowed),
        log_path=root / "mlflow-server.log",
    )


def start_mlflow_server(root: Path, *, host: str = "127.0.0.1") -> MlflowServer:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    process = _spawn(root, host, port)
    url = f"http://{host}:{port}"
    wait_http_ok(f"{url}/health", timeout_s=90, process=process, what="mlflow server")
    return MlflowServer(url=url, process=process, root=root, port=port, host=host)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


def register_release_versions(server: MlflowServer, name: str = "iris") -> dict[str, str]:
    """The versions every tier releases, by role: `good`, `other` (underfit, still serves),
    `broken` (its artifacts removed), `constant` (always class 0: fails a golden test)."""
    uri = server.url
    versions = {
        "good": register_iris(uri, name, C=1.0, max_iter=300),
        "other": register_iris(uri, name, C=0.05, max_iter=100),
        "broken": register_iris(uri, name, C=1.0, max_iter=300),
        "constant": register_constant_model(uri, name),
    }
    remove_artifacts(server, name, versions["broken"])
    return versions


@pytest.fixture(scope="session")
def iris(mlflow_server: MlflowServer) -> IrisVersions:
    """The iris versions the tests release, good and bad, registered once per session."""
    uri, name = mlflow_server.url, "iris"
    return IrisVersions(
        tracking_uri=uri,
        model=name,
        **register_release_versions(mlflow_server, name),
        third=register_iris(uri, name, C=0.5, max_iter=300),
        slow=register_slow_model(uri, name, delay_s=1.5),
        no_example=register_iris(uri, name, C=1.0, max_iter=300, input_example=False),
    )
