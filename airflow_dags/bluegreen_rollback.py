"""bluegreen_rollback: flip live traffic back to the previous version (manual trigger).

Calls the bluegreen controller's `POST /rollback`: one flip to the standby color, which
still holds the version that was live before the last release, after the controller
checked it is ready. Fails with the controller's reason when there is nothing to roll
back to (409). Connection: `bluegreen_controller` (see `_bluegreen_common.py`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from _bluegreen_common import rollback, utc
from airflow.sdk import dag, get_current_context, task


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
    @task(execution_timeout=timedelta(minutes=2))
    def roll_back() -> dict[str, Any]:
        """Flip back; a retry first checks whether an earlier try already did."""
        context = get_current_context()
        ti, dag_run = context["ti"], context["dag_run"]
        # A retry must not flip twice: the first try's flip may have landed unseen.
        not_before = utc(dag_run.start_date) if ti.try_number > 1 else None
        return rollback(not_before=not_before)

    roll_back()


bluegreen_rollback()
