"""A real Airflow 3 for the tests: its home, its environment, and how DAG runs are read back.

`AirflowEnv` runs the venv's `airflow` CLI with an isolated `AIRFLOW_HOME` and reads task
states from its SQLite metadata DB. Used by `tests/airflow/`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bluegreen.stack import LocalStack

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


def stack_connections(stack: LocalStack) -> dict[str, str]:
    """`AIRFLOW_CONN_*` for the stack: the controller (type `bluegreen`) and MLflow."""
    assert stack.token is not None
    return {
        "AIRFLOW_CONN_BLUEGREEN_DEFAULT": json.dumps(
            {"conn_type": "bluegreen", "host": stack.controller_url, "password": stack.token}
        ),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
            {"conn_type": "http", "host": stack.host, "port": stack.ports.mlflow, "schema": "http"}
        ),
    }
