"""The MLflow side of the end-to-end tests, prepared in the background.

A real MLflow server with two trained iris versions and one broken version (registered,
but its model files do not exist). Starting the server and training take most of a
minute, so `conftest.py` starts this at collection time when the end-to-end tests are
selected, and the faster tests run meanwhile.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from controller.iris import train_and_register
from tests.support.mlflow_server import MlflowServer, start_mlflow_server


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    good: tuple[str, str]  # versions "1" and "2"
    broken: str


class PreparedRegistry:
    """Starts the server and registers the versions in a thread; `get()` waits for it."""

    def __init__(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="bluegreen-k8s-mlflow-"))
        self._server: MlflowServer | None = None
        self._result: Registry | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._prepare, name="mlflow-prep", daemon=True)

    def start(self) -> PreparedRegistry:
        self._thread.start()
        return self

    def get(self, timeout: float = 300) -> Registry:
        self._thread.join(timeout)
        if self._error is not None:
            raise RuntimeError(f"preparing MLflow failed: {self._error!r}") from self._error
        if self._result is None:
            raise RuntimeError(f"MLflow was not ready within {timeout:g} s")
        return self._result

    def close(self) -> None:
        self._thread.join(120)  # never stop the server under a training run
        if self._server is not None:
            self._server.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def _prepare(self) -> None:
        try:
            self._server = start_mlflow_server(self._root / "mlflow")
            uri = self._server.url
            first = train_and_register(tracking_uri=uri, model="iris", C=1.0)
            second = train_and_register(tracking_uri=uri, model="iris", C=0.05)
            broken = register_broken_version(uri, run_id=first.run_id)
            self._result = Registry(uri, (first.version, second.version), broken)
        except BaseException as exc:  # reported by get(), in the test that needs it
            self._error = exc


def register_broken_version(tracking_uri: str, *, run_id: str) -> str:
    """A registered version whose model files do not exist: its pods can never load it."""
    from mlflow import MlflowClient

    created = MlflowClient(tracking_uri=tracking_uri).create_model_version(
        "iris", source=f"runs:/{run_id}/no-such-model", run_id=run_id
    )
    return str(created.version)
