"""A running Airflow 3: api-server, scheduler (LocalExecutor), dag-processor and triggerer.

What `airflow standalone` starts, as four processes of the venv's `airflow`, each in its own
process group with its output in `AIRFLOW_HOME/<name>.log`; only the API listens, on
127.0.0.1. DAG runs
are started with `airflow dags trigger` and read back from the SQLite metadata DB, so a
test sees the states the scheduler writes (`deferred` included) while the run goes on.
Used by `tests/airflow/test_triggerer.py`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.airflow_env import VENV_BIN

SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
FINISHED = frozenset({"success", "failed"})


@dataclass
class Snapshot:
    """One look at a run: task states and try numbers, and the triggers a triggerer holds."""

    at: float
    states: dict[str, str | None]
    tries: dict[str, int]
    claimed_triggers: list[str]


@dataclass
class AirflowServices:
    home: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, api_port: int) -> None:
        # The task logs are files here: no log servers (they would listen on every address).
        args_of = {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(api_port)],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }
        for name, args in args_of.items():
            with (self.home / f"{name}.log").open("wb") as out:
                self.processes[name] = subprocess.Popen(
                    [str(VENV_BIN / "airflow"), *args],
                    env=self.env,
                    cwd=self.home,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its workers and children stop with it
                )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")

    def wait_ready(self, api_url: str, dag_ids: set[str], timeout_s: float = 180) -> None:
        """The API answers, the DAGs are parsed into the DB, the triggerer heartbeats."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                assert process.poll() is None, f"{name} exited:\n{self.log(name)[-3000:]}"
            try:
                healthy = httpx.get(f"{api_url}/api/v2/monitor/health", timeout=5)
            except httpx.TransportError:
                healthy = None
            if healthy is not None and healthy.status_code == 200:
                health = healthy.json()
                parsed = set(self.query("SELECT dag_id FROM serialized_dag"))
                beats = (health.get("triggerer") or {}).get("status") == "healthy"
                if dag_ids <= parsed and beats:
                    return
            time.sleep(1)
        logs = "\n".join(f"== {n}\n{self.log(n)[-1500:]}" for n in SERVICES)
        raise AssertionError(f"Airflow not ready in {timeout_s:.0f} s\n{logs}")

    def query(self, sql: str, *params: Any) -> list[Any]:
        """First column of each row (the scheduler writes meanwhile: retry a locked DB)."""
        for _ in range(20):
            try:
                with sqlite3.connect(self.home / "airflow.db", timeout=10) as db:
                    return [row[0] if len(row) == 1 else row for row in db.execute(sql, params)]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                time.sleep(0.2)
        raise AssertionError(f"the metadata DB stayed locked: {sql}")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """`airflow dags trigger`: a new run for the scheduler; its run id."""
        run_id = f"test__{dag_id}__{time.time_ns()}"
        args = ["dags", "trigger", dag_id, "--run-id", run_id, "-c", json.dumps(conf or {})]
        done = subprocess.run(
            [str(VENV_BIN / "airflow"), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        states = self.query(
            "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id
        )
        return states[0] if states else None

    def snapshot(self, dag_id: str, run_id: str) -> Snapshot:
        rows = self.query(
            "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?",
            dag_id,
            run_id,
        )
        claimed = self.query(
            "SELECT t.classpath FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
            "WHERE ti.dag_id = ? AND ti.run_id = ? AND t.triggerer_id IS NOT NULL",
            dag_id,
            run_id,
        )
        return Snapshot(
            at=time.monotonic(),
            states={task: state for task, state, _ in rows},
            tries={task: tries for task, _, tries in rows},
            claimed_triggers=claimed,
        )

    def watch(
        self,
        runs: list[tuple[str, str]],
        *,
        until: Callable[[dict[tuple[str, str], Snapshot]], bool] | None = None,
        timeout_s: float = 300,
    ) -> list[dict[tuple[str, str], Snapshot]]:
        """Snapshots of `runs` every 0.3 s until they all finished (or `until` holds)."""
        seen: list[dict[tuple[str, str], Snapshot]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = {run: self.snapshot(*run) for run in runs}
            seen.append(now)
            if until is not None and until(now):
                return seen
            if until is None and all(self.run_state(*run) in FINISHED for run in runs):
                return seen
            time.sleep(0.3)
        last = {f"{d}/{r}": (self.run_state(d, r), s.states) for (d, r), s in seen[-1].items()}
        raise AssertionError(f"runs not finished in {timeout_s:.0f} s: {last}")

    def deferral_drained(self, dag_id: str, run_id: str, task_id: str) -> bool:
        """The scheduler has processed the executor's event for the worker that deferred.

        Airflow 3.3 fails a resumed task when that stale event arrives after the resumed
        attempt started (apache/airflow#72716, fix open): a wait must not end before it.
        """
        key = f"TaskInstanceKey(dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}'"
        return f"Received executor event with state success for task instance {key}" in self.log(
            "scheduler"
        )

    def task_log(self, dag_id: str, run_id: str, task_id: str, attempt: int = 1) -> str:
        path = (
            self.home
            / "logs"
            / f"dag_id={dag_id}"
            / f"run_id={run_id}"
            / f"task_id={task_id}"
            / f"attempt={attempt}.log"
        )
        return path.read_text(errors="replace") if path.exists() else ""
