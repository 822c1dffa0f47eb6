"""`BluegreenPausedSensor`: wait until a release is `paused`, for a person or a check to approve.

A release started with `pause` stops before its flip; this sensor lets a DAG (an approval
flow, an external evaluation) go on from there, e.g. to `POST /promote` or `/abort`. With
`operation_id` it watches that release, and fails for good if it ends without pausing;
without one, it waits for any release the controller pauses (one started by the alias
follower, the CLI or another DAG). Deferrable by default: the triggerer does the waiting.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue

from bluegreen.airflow import DEFAULT_CONN_ID, records
from bluegreen.airflow.hooks import BluegreenHook
from bluegreen.airflow.triggers import BluegreenOperationTrigger
from bluegreen.airflow.waits import look
from bluegreen.client import ControllerError


class BluegreenPausedSensor(BaseSensorOperator):
    """Done when the release is paused; its summary (`id`, `target_version`, ...) is the XCom.

    :param operation_id: the release to watch (templated; e.g. the release task's XCom
        `id`); unset: any paused release
    :param deferrable: wait in the triggerer (default) rather than poke from a worker
    """

    template_fields: Sequence[str] = ("operation_id",)
    ui_color = "#e0c34f"

    def __init__(
        self,
        *,
        operation_id: str | None = None,
        bluegreen_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 5.0)
        super().__init__(**kwargs)
        self.operation_id = operation_id
        self.bluegreen_conn_id = bluegreen_conn_id
        self.deferrable = deferrable

    def poke(self, context: Context) -> bool | PokeReturnValue:
        with BluegreenHook(self.bluegreen_conn_id).get_conn() as client:
            try:
                record = look(client, until="paused", operation_id=self.operation_id or None)
            except ControllerError as exc:
                raise records.refused("cannot read the release", exc) from None
        if record is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=records.paused(record))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        outcome = self.poke(context)  # already paused: no need to defer at all
        if isinstance(outcome, PokeReturnValue):
            return outcome.xcom_value
        trigger = BluegreenOperationTrigger(
            until="paused",
            deadline=time.time() + float(self.timeout),
            operation_id=self.operation_id or None,
            bluegreen_conn_id=self.bluegreen_conn_id,
            poll_interval_s=float(self.poke_interval),
        )
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout) + 120),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        return records.paused(records.from_event(event))
