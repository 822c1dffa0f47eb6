"""One look at the controller, and the wait built from it: is the thing we wait for there?

A wait is over when, for `until`:
- `finished`: the operation `operation_id` left `running`/`baking` (promoted, unchanged,
  paused, aborted, rolled back);
- `paused`: that operation left `running` (paused, or ended without pausing), or without an
  id, `/status` shows a paused release;
- `idle`: `/status` shows no release holding the lock (so a new one may start).

The trigger runs `look` in a thread of the triggerer; an operator with `deferrable=False`
runs `wait_here` in its worker slot. Both end with the same event: `done` with the record,
`error` with the controller's refusal, or `timeout`. A controller that is restarting (no
answer, 5xx) is looked at again: its journal survives the restart.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from bluegreen.client import ControllerClient, ControllerError, ControllerUnreachable

Until = Literal["finished", "paused", "idle"]
UNTIL: tuple[Until, ...] = ("finished", "paused", "idle")
RUNNING = frozenset({"running", "baking"})

log = logging.getLogger(__name__)


def look(
    client: ControllerClient, *, until: Until, operation_id: str | None
) -> dict[str, Any] | None:
    """The record that ends the wait, or None to look again; a 4xx raises `ControllerError`."""
    try:
        if operation_id is not None:
            op = client.operation(operation_id)
            still = RUNNING if until == "finished" else {"running"}
            return None if op.get("status") in still else op
        status = client.status()
    except ControllerError as exc:
        if isinstance(exc, ControllerUnreachable) or exc.status >= 500:
            log.warning("controller did not answer (%s); looking again", exc)
            return None
        raise
    current = status.get("operation")
    if until == "idle":
        return status if current is None else None
    if until == "paused":
        return current if current is not None and current.get("status") == "paused" else None
    raise ValueError(f"waiting until {until!r} needs an operation id")


def done(record: dict[str, Any]) -> dict[str, Any]:
    return {"status": "done", "record": record}


def error(what: str, exc: ControllerError) -> dict[str, Any]:
    return {"status": "error", "what": what, "http_status": exc.status, "body": exc.body}


def timeout(*, until: Until, operation_id: str | None) -> dict[str, Any]:
    what = f"operation {operation_id}" if operation_id else "the controller"
    see = f"; see GET /operations/{operation_id}" if operation_id else ""
    return {"status": "timeout", "message": f"{what} not {until} at the deadline{see}"}


def wait_here(
    client: ControllerClient,
    *,
    until: Until,
    operation_id: str | None,
    deadline: float,
    poll_interval_s: float,
) -> dict[str, Any]:
    """Look every `poll_interval_s` until the wait is over or `deadline` (epoch seconds)."""
    while True:
        try:
            record = look(client, until=until, operation_id=operation_id)
        except ControllerError as exc:
            return error(f"waiting until {until}", exc)
        if record is not None:
            return done(record)
        if time.time() >= deadline:
            return timeout(until=until, operation_id=operation_id)
        time.sleep(poll_interval_s)
