"""bluegreen_approve: wait for a paused release, then promote it (manual trigger).

A release started with `pause` (the release DAG's `pause` param, the CLI, the alias
follower) stops before its flip. Triggering this DAG is the approval: `BluegreenPausedSensor`
waits, deferred in the triggerer, until a release is paused, then `promote` flips it live.
With the `version` param it promotes only that version and fails otherwise. Trigger it
before or after the release: the sensor holds no worker slot while it waits.
Connection: `bluegreen_default` (type `bluegreen`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from bluegreen.airflow.hooks import BluegreenHook
from bluegreen.airflow.sensors import BluegreenPausedSensor


@dag(
    dag_id="bluegreen_approve",
    description="Wait for a paused bluegreen release, then promote it",
    schedule=None,  # manual only: an approval is a decision
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "mlops", "retries": 0},
    tags=["bluegreen", "release"],
    params={
        "version": Param(
            None,
            type=["null", "string"],
            description="Promote only this version (null: whichever release pauses)",
        ),
    },
    doc_md=__doc__,
)
def bluegreen_approve() -> None:
    paused = BluegreenPausedSensor(task_id="wait_for_pause", timeout=3600, poke_interval=2)

    @task(execution_timeout=timedelta(minutes=20))
    def promote(paused: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Flip the paused release live (its bake, if any, runs before this returns)."""
        wanted = (params or {}).get("version")
        if wanted and str(wanted) != str(paused["target_version"]):
            raise AirflowFailException(
                f"v{paused['target_version']} is paused, not v{wanted}: not promoting it"
            )
        with BluegreenHook().get_conn() as client:
            op = client.promote(wait=True)
        if op.get("status") != "promoted":
            raise AirflowFailException(
                f"promote of v{paused['target_version']} ended {op.get('status')!r}: "
                f"{op.get('failed_step')} {op.get('reason')}"
            )
        return {key: op.get(key) for key in ("id", "status", "target_version", "from_version")}

    promote(paused.output)  # type: ignore[arg-type]  # an XComArg, resolved at run time


bluegreen_approve()
