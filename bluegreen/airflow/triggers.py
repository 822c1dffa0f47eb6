"""`BluegreenOperationTrigger`: the triggerer waits on the controller, not a worker.

Polls `/operations/{id}` (or `/status`) every `poll_interval_s` until the wait described in
`bluegreen.airflow.waits` is over, then fires one event; the deferred task resumes on a
worker with it. Holds only plain values, as `serialize()` must: the Connection is read
again in the triggerer, and the deadline is wall-clock time, true in any process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from bluegreen.airflow import DEFAULT_CONN_ID
from bluegreen.airflow.hooks import BluegreenHook
from bluegreen.airflow.waits import UNTIL, Until, done, error, look, timeout
from bluegreen.client import ControllerError


class BluegreenOperationTrigger(BaseTrigger):
    """Fires once: `done` with the record, `error` with the controller's refusal, `timeout`."""

    def __init__(
        self,
        *,
        until: Until,
        deadline: float,
        operation_id: str | None = None,
        bluegreen_conn_id: str = DEFAULT_CONN_ID,
        poll_interval_s: float = 2.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's is untyped
        if until not in UNTIL:
            raise ValueError(f"until must be one of {UNTIL}, not {until!r}")
        self.until: Until = until
        self.deadline = deadline
        self.operation_id = operation_id
        self.bluegreen_conn_id = bluegreen_conn_id
        self.poll_interval_s = poll_interval_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "until": self.until,
                "deadline": self.deadline,
                "operation_id": self.operation_id,
                "bluegreen_conn_id": self.bluegreen_conn_id,
                "poll_interval_s": self.poll_interval_s,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = await BluegreenHook(self.bluegreen_conn_id, timeout_s=30.0).aget_conn()
        what = f"operation {self.operation_id}" if self.operation_id else "the controller"
        self.log.info("waiting until %s is %s", what, self.until)
        try:
            while True:
                # The client is synchronous (the one the CLI uses): in a thread, the
                # triggerer's event loop keeps serving every other trigger meanwhile.
                try:
                    record = await asyncio.to_thread(
                        look, client, until=self.until, operation_id=self.operation_id
                    )
                except ControllerError as exc:
                    yield _event(error(f"waiting until {self.until}", exc))
                    return
                if record is not None:
                    self.log.info("%s is %s", what, self.until)
                    yield _event(done(record))
                    return
                if time.time() >= self.deadline:
                    yield _event(timeout(until=self.until, operation_id=self.operation_id))
                    return
                await asyncio.sleep(self.poll_interval_s)
        finally:
            client.close()


def _event(payload: dict[str, Any]) -> TriggerEvent:
    """The one event a run yields (Airflow's constructor is untyped)."""
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]
