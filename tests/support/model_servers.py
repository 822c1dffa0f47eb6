"""Real model-server processes for the tests: `python -m model_server` on a free port.

The one launcher of every test that needs a real model server (tests/model_server,
tests/router, tests/security, tests/conformance). Its output goes to a log file, never to a
pipe nobody reads (a chatty server would fill it and block); its environment is ours
without the caller's `MODEL_*`, `MLFLOW_*` and `SERVING_*` settings; a failed start says
why with the log's tail. The `model_server` fixture is one such server for the session,
serving the good iris version as blue; registered by `tests/conftest.py`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from plumbing import processes
from tests.support.iris import IrisVersions
from tests.support.ports import free_port
from tests.support.processes import ServerProcess

START_TIMEOUT_S = 120.0
_INHERITED_NOT = ("MODEL_", "MLFLOW_", "SERVING_")


class ModelServerProcess(ServerProcess):
    """One `python -m model_server`."""

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        try:
            processes.wait_http_ok(
                f"{self.url}/readyz", timeout_s=timeout_s, process=self.process, what="model server"
            )
        except processes.ProcessDidNotStart as exc:
            tail = "\n".join(self.output().splitlines()[-30:])
            raise processes.ProcessDidNotStart(f"{exc}\n{tail}") from None

    def wait_exit(self, timeout_s: float = START_TIMEOUT_S) -> int:
        """The exit code of a server expected to give up (killed after `timeout_s`)."""
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            processes.stop(self.process, kill=True)
            raise


def spawn_model_server(
    tracking_uri: str,
    model: str,
    version: str,
    *,
    log_dir: Path,
    color: str = "blue",
    env: dict[str, str] | None = None,
    wrapper: Sequence[str] = (),
) -> ModelServerProcess:
    """Start one; `env` goes on top of the serving settings, `wrapper` before the command
    (`prlimit ...`). Not waited for: see `ModelServerProcess.wait_ready`."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_NOT)}
    settings = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODEL_NAME": model,
        "MODEL_VERSION": version,
        "SERVING_COLOR": color,
        **(env or {}),
    }
    log_path = log_dir / f"model-server-{model}-{version}-{port}.log"
    process = processes.spawn(
        [*wrapper, *processes.python_module_command("model_server", "--port", str(port))],
        env=processes.child_env(clean, **settings),
        log_path=log_path,
    )
    return ModelServerProcess(process, port, log_path)


def spawn_iris_server(
    iris: IrisVersions, version: str, *, log_dir: Path, env: dict[str, str] | None = None
) -> ModelServerProcess:
    """`spawn_model_server` for a version of the session's iris model."""
    return spawn_model_server(iris.tracking_uri, iris.model, version, log_dir=log_dir, env=env)


@contextmanager
def running_model_server(
    iris: IrisVersions, version: str, *, log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[ModelServerProcess]:
    """An iris version served and ready for the `with` block, stopped after it."""
    server = spawn_iris_server(iris, version, log_dir=log_dir, env=env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def model_server(
    iris: IrisVersions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelServerProcess]:
    """The good iris version served as blue, for the whole session."""
    with running_model_server(
        iris, iris.good, log_dir=tmp_path_factory.mktemp("model-server")
    ) as server:
        yield server
