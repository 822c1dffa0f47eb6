"""A real Airflow 3 (SQLite metadata DB in a temp AIRFLOW_HOME) against the local stack.

The session starts `airflow db migrate` in the background, brings up the local stack
(a real MLflow server, blue/green model servers, the router, the controller with a
token) serving a first iris version, and defines the Airflow Connections through
`AIRFLOW_CONN_*` environment variables. DAGs run with the venv's `airflow dags test`,
which executes every task for real; task states are read from the metadata DB.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bluegreen.iris import train_and_register
from bluegreen.stack import LocalStack, StackPorts
from tests.support.airflow_env import (
    MODEL,
    VENV_BIN,
    AirflowEnv,
    base_env,
    stack_connections,
)


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("airflow_home")


@pytest.fixture(scope="session")
def bluegreen_stack(
    tmp_path_factory: pytest.TempPathFactory, airflow_home: Path
) -> Iterator[tuple[LocalStack, str]]:
    """The local stack with a token, serving a first iris version: (stack, that version)."""
    # The DB migration takes seconds; let it run while the stack comes up.
    migrate = subprocess.Popen(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        env=base_env(airflow_home),
        cwd=airflow_home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack = LocalStack(
        model=MODEL,
        state_dir=tmp_path_factory.mktemp("stack"),
        ports=StackPorts.free(),
        token=f"tok-{secrets.token_hex(16)}",
    )
    try:
        tracking_uri = stack.start_mlflow()
        first = train_and_register(tracking_uri=tracking_uri, model=MODEL, C=1.0, max_iter=200)
        stack.start(version=first.version)
        output, _ = migrate.communicate(timeout=120)
        assert migrate.returncode == 0, f"airflow db migrate failed:\n{output[-3000:]}"
        yield stack, first.version
    finally:
        if migrate.poll() is None:
            migrate.kill()
        stack.stop()


@pytest.fixture(scope="session")
def airflow_env(airflow_home: Path, bluegreen_stack: tuple[LocalStack, str]) -> AirflowEnv:
    """The migrated AIRFLOW_HOME with Connections to the stack's controller and MLflow."""
    stack, _ = bluegreen_stack
    assert stack.token is not None and stack.tracking_uri is not None
    env = {**base_env(airflow_home), **stack_connections(stack)}
    return AirflowEnv(home=airflow_home, env=env, token=stack.token)
