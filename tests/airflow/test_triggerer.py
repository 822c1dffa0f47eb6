"""The DAGs under a running Airflow 3: scheduler, LocalExecutor, dag-processor, triggerer.

Unlike `airflow dags test` (which runs a trigger inline), here a deferred task really leaves
its worker: the scheduler puts it in `deferred`, the triggerer claims its trigger and polls
the controller, and the scheduler resumes the task on a worker with the event. The executor
has ONE slot (`parallelism=1`), so work that runs while a task is deferred proves the
deferred task holds no slot. The tests share the session's local stack and run in order:
a paused release approved by the approval DAG → the rollback → an aborted release (after
an abort the standby holds nothing to roll back to).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bluegreen.stack import LocalStack
from tests.support.airflow_env import VENV_BIN, base_env, stack_connections
from tests.support.airflow_services import AirflowServices, Snapshot
from tests.support.ports import free_port

pytestmark = [pytest.mark.process, pytest.mark.timeout(900)]

DAGS = {"bluegreen_release", "bluegreen_approve", "bluegreen_rollback"}
TRIGGER = "bluegreen.airflow.triggers.BluegreenOperationTrigger"


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory, bluegreen_stack: tuple[LocalStack, str]
) -> Iterator[AirflowServices]:
    stack, _ = bluegreen_stack
    home = tmp_path_factory.mktemp("airflow_services")
    port = free_port()
    env = {
        **base_env(home),
        **stack_connections(stack),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "1",  # one worker slot: a deferred task must free it
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__TRIGGERER__DEFAULT_CAPACITY": "50",
    }
    migrate = subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrate.returncode == 0, (migrate.stdout + migrate.stderr)[-3000:]
    services = AirflowServices(home=home, env=env)
    try:
        services.start(port)
        services.wait_ready(f"http://127.0.0.1:{port}", DAGS)
        yield services
    finally:
        services.stop()


def _live(stack: LocalStack) -> str:
    return str(httpx.get(f"{stack.controller_url}/status", timeout=10).json()["live"]["version"])


def _explain(airflow: AirflowServices, seen: list[dict[tuple[str, str], Snapshot]]) -> str:
    last = {f"{d}": (s.states, s.tries) for (d, _), s in seen[-1].items()} if seen else {}
    return f"last snapshot {last}\n== scheduler\n{airflow.log('scheduler')[-2500:]}"


def test_a_paused_release_waits_deferred_and_the_approval_dag_promotes_it(
    airflow: AirflowServices, bluegreen_stack: tuple[LocalStack, str]
) -> None:
    stack, _ = bluegreen_stack
    before = _live(stack)
    approve = ("bluegreen_approve", airflow.trigger("bluegreen_approve"))
    # The approval waits first: its sensor must defer, or the one slot stays taken.
    airflow.watch(
        [approve], until=lambda now: now[approve].states.get("wait_for_pause") == "deferred"
    )
    release = (
        "bluegreen_release",
        airflow.trigger("bluegreen_release", {"pause": True, "shadow_s": 3, "max_iter": 250}),
    )

    seen = airflow.watch([approve, release])

    assert airflow.run_state(*release) == "success", _explain(airflow, seen)
    assert airflow.run_state(*approve) == "success", _explain(airflow, seen)
    # While the sensor was deferred, the release's tasks ran on the only worker slot.
    assert any(
        s[approve].states.get("wait_for_pause") == "deferred"
        and s[release].states.get("train") == "running"
        for s in seen
    ), _explain(airflow, seen)
    # The release's wait was deferred too, its trigger claimed by the triggerer.
    assert any(
        s[release].states.get("release_version") == "deferred"
        and s[release].claimed_triggers == [TRIGGER]
        for s in seen
    ), _explain(airflow, seen)
    assert any(s[approve].claimed_triggers == [TRIGGER] for s in seen)
    # Resumed by the trigger's event, not retried.
    assert seen[-1][release].tries["release_version"] == 1
    assert seen[-1][approve].tries["wait_for_pause"] == 1
    release_log = airflow.task_log(*release, "release_version")
    assert "paused for POST /promote" in release_log, release_log[-3000:]
    after = _live(stack)
    assert after != before, "the approval promoted the paused version"
    promote_log = airflow.task_log(*approve, "promote")
    assert f"'target_version': '{after}'" in promote_log, promote_log[-3000:]
    assert stack.token is not None and stack.token not in release_log + promote_log


def test_the_rollback_dag_flips_back_under_the_scheduler(
    airflow: AirflowServices, bluegreen_stack: tuple[LocalStack, str]
) -> None:
    stack, _ = bluegreen_stack
    history = httpx.get(f"{stack.controller_url}/history", timeout=10).json()
    promoted = next(op for op in history if op["status"] == "promoted")
    assert _live(stack) == promoted["target_version"], "runs after the approved release"
    rollback = ("bluegreen_rollback", airflow.trigger("bluegreen_rollback"))

    seen = airflow.watch([rollback])

    assert airflow.run_state(*rollback) == "success", _explain(airflow, seen)
    assert seen[-1][rollback].states == {"roll_back": "success"}
    assert _live(stack) == promoted["from_version"]
    log = airflow.task_log(*rollback, "roll_back")
    assert f"-> v{promoted['from_version']}" in log, log[-3000:]


def test_an_aborted_release_fails_its_task_without_a_retry(
    airflow: AirflowServices, bluegreen_stack: tuple[LocalStack, str]
) -> None:
    stack, _ = bluegreen_stack
    live = _live(stack)
    release = (
        "bluegreen_release",
        airflow.trigger("bluegreen_release", {"shadow_s": 120, "max_iter": 260}),
    )

    def shadowing(now: dict[tuple[str, str], Snapshot]) -> bool:
        if now[release].states.get("release_version") != "deferred":
            return False
        if not airflow.deferral_drained(*release, "release_version"):
            return False  # an abort this early meets an Airflow race (see deferral_drained)
        status = httpx.get(f"{stack.controller_url}/status", timeout=10).json()
        return (status.get("operation") or {}).get("status") == "running"

    airflow.watch([release], until=shadowing)
    aborted = httpx.post(
        f"{stack.controller_url}/abort",
        headers={"Authorization": f"Bearer {stack.token}"},
        timeout=60,
    )
    assert aborted.status_code == 200, aborted.text
    record = aborted.json()
    assert record["status"] == "aborted" and record["retryable"] is False, record

    seen = airflow.watch([release])

    assert airflow.run_state(*release) == "failed", _explain(airflow, seen)
    final = seen[-1][release]
    # DEFAULT_ARGS allow one retry: a retryable failure would be up_for_retry, try 2.
    assert final.states["release_version"] == "failed", _explain(airflow, seen)
    assert final.tries["release_version"] == 1, _explain(airflow, seen)
    assert not airflow.task_log(*release, "release_version", attempt=2)
    log = airflow.task_log(*release, "release_version")
    assert f"operation {record['id']}" in log and "not retryable (aborted)" in log, log[-3000:]
    assert _live(stack) == live


def test_the_services_logged_no_token(
    airflow: AirflowServices, bluegreen_stack: tuple[LocalStack, str]
) -> None:
    stack, _ = bluegreen_stack
    assert stack.token is not None
    logs = "".join(p.read_text(errors="replace") for p in Path(airflow.home).rglob("*.log"))
    assert logs and stack.token not in logs
