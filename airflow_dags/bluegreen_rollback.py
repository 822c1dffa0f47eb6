"""bluegreen_rollback: flip live traffic back to the previous version (manual trigger).

`BluegreenRollbackOperator` calls the bluegreen controller's `POST /rollback`: one flip to
the standby color, which still holds the version that was live before the last release,
after the controller checked it is ready. Fails with the controller's reason when there is
nothing to roll back to (409), without retrying; a retry first checks whether an earlier
try already flipped. Connection: `bluegreen_default` (type `bluegreen`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag

from bluegreen.airflow.operators import BluegreenRollbackOperator


@dag(
    dag_id="bluegreen_rollback",
    description="Roll the bluegreen release back to the previous version (one flip)",
    schedule=None,  # manual only: a rollback is a decision, never a schedule
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=15)},
    tags=["bluegreen", "release"],
    doc_md=__doc__,
)
def bluegreen_rollback() -> None:
    BluegreenRollbackOperator(task_id="roll_back", execution_timeout=timedelta(minutes=2))


bluegreen_rollback()
