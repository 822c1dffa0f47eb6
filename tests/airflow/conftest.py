"""A real Airflow 3 (SQLite metadata DB in a temp AIRFLOW_HOME) against the local stack.

The session starts `airflow db migrate` in the background, brings up the local stack
(a real MLflow server, blue/green model servers, the router, the controller with a
token) serving a first iris version, and defines the Airflow Connections through
`AIRFLOW_CONN_*` environment variables. DAGs run with the venv's `airflow dags test`,
which executes every task for real; task states are read from the metadata DB.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller.iris import train_and_register
from controller.stack import LocalStack, StackPorts

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "airflow_dags"
VENV_BIN = Path(sys.executable).parent
MODEL = "iris"
DAG_TIMEOUT_S = 240


@dataclass
class DagRunResult:
    """One `airflow dags test` run: the CLI's exit code and output, and what the DB says."""

    returncode: int
    output: str
    run_id: str | None
    state: str | None
    tasks: dict[str, str | None] = field(default_factory=dict)


@dataclass
class AirflowEnv:
    """An AIRFLOW_HOME with a migrated DB and the Connections to the stack."""

    home: Path
    env: dict[str, str]
    token: str

    def airflow(
        self, *args: str, timeout: float = DAG_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "airflow"), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_dag(self, dag_id: str, conf: dict[str, Any] | None = None) -> DagRunResult:
        """`airflow dags test DAG_ID -c CONF`, then the run's task states from the DB."""
        done = self.airflow("dags", "test", dag_id, "-c", json.dumps(conf or {}))
        output = done.stdout + done.stderr
        run_id, state, tasks = self.last_run(dag_id)
        return DagRunResult(done.returncode, output, run_id, state, tasks)

    def run_task(self, dag_id: str, task_id: str, run_id: str) -> subprocess.CompletedProcess[str]:
        """`airflow tasks test`: one task of an existing run again, as a retry would run it."""
        return self.airflow("tasks", "test", dag_id, task_id, run_id)

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        """Run `code` with this Airflow's configuration and the DAG folder importable."""
        return subprocess.run(
            [sys.executable, "-c", code],
            env={**self.env, "PYTHONPATH": str(DAGS_FOLDER)},
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def last_run(self, dag_id: str) -> tuple[str | None, str | None, dict[str, str | None]]:
        """The newest run of `dag_id` in the metadata DB: run id, state, task states."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            row = db.execute(
                "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
                (dag_id,),
            ).fetchone()
            if row is None:
                return None, None, {}
            tasks = dict(
                db.execute(
                    "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                    (dag_id, row[0]),
                ).fetchall()
            )
        return row[0], row[1], tasks


def base_env(home: Path) -> dict[str, str]:
    """Airflow's configuration for the tests, isolated from the developer's own."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "MLFLOW_TRACKING"))  # the Connections decide
    }
    env.update(
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS_FOLDER),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        PYTHONWARNINGS="ignore",
    )
    return env


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
    env = base_env(airflow_home)
    env["AIRFLOW_CONN_BLUEGREEN_CONTROLLER"] = json.dumps(
        {
            "conn_type": "http",
            "host": stack.host,
            "port": stack.ports.controller,
            "schema": "http",
            "password": stack.token,
        }
    )
    env["AIRFLOW_CONN_MLFLOW_DEFAULT"] = json.dumps(
        {"conn_type": "http", "host": stack.host, "port": stack.ports.mlflow, "schema": "http"}
    )
    return AirflowEnv(home=airflow_home, env=env, token=stack.token)
