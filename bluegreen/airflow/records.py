"""What a controller answer means for an Airflow task: done, retry, or fail for good.

Pure functions over the controller's JSON (`/operations/{id}` records, error bodies), shared
by the operators and the sensor. A failure the same request cannot fix (the record's or the
error's `retryable: false`) raises `AirflowFailException`, which Airflow never retries;
anything else raises `AirflowException`, which the task's `retries` may try again.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from bluegreen.client import ControllerError, ControllerUnreachable

# Where a controller predates `retryable`: steps whose failure a retry cannot fix (a missing
# version, a failed smoke test or analysis) and refusals that stay refusals.
PERMANENT_STEPS = frozenset({"resolve", "verify", "shadow", "bake"})
PERMANENT_HTTP = frozenset({400, 401, 403, 404, 422})
FAILED = frozenset({"aborted", "rolled_back"})
RELEASE_KEYS = ("id", "status", "target_version", "from_version")
ROLLBACK_KEYS = ("id", "status", "from_color", "from_version", "to_color", "target_version")


def error_text(exc: ControllerError) -> str:
    """`409 rollback_unavailable: <detail>`, plus the failed step when a record came along."""
    text = str(exc)
    op = exc.body.get("operation") or {}
    if op.get("failed_step"):
        text += f" (failed step: {op['failed_step']}; reason: {op.get('reason')})"
    return text


def refused(what: str, exc: ControllerError) -> AirflowException:
    """The exception for an error answer: permanent unless the controller says it may heal."""
    message = f"{what}: {error_text(exc)}"
    if isinstance(exc, ControllerUnreachable):
        return AirflowException(message)
    retryable = exc.body.get("retryable")
    if retryable is None:
        retryable = (exc.body.get("operation") or {}).get("retryable")
    if retryable is False or (retryable is None and exc.status in PERMANENT_HTTP):
        return AirflowFailException(message)
    return AirflowException(message)


def aborted(op: dict[str, Any]) -> AirflowException:
    """The exception for a release that ended aborted or rolled back by its bake."""
    how = "rolled back by its bake" if op.get("status") == "rolled_back" else "aborted"
    version = op.get("target_version") or (op.get("requested") or {}).get("version")
    message = (
        f"release of v{version} {how} at step {op.get('failed_step')!r}: {op.get('reason')} "
        f"(operation {op.get('id')}; live traffic on the previous version)"
    )
    retryable = op.get("retryable")
    if retryable is False or (retryable is None and op.get("failed_step") in PERMANENT_STEPS):
        return AirflowFailException(f"{message}; not retryable ({op.get('error')})")
    return AirflowException(message)


def paused(op: dict[str, Any]) -> dict[str, Any]:
    """A paused release's summary; a release that ended without pausing fails the sensor."""
    if op.get("status") == "paused":
        return summary(op, RELEASE_KEYS)
    ended = f"release {op.get('id')} ended {op.get('status')!r} without pausing"
    if op.get("failed_step"):
        ended += f" (failed step: {op['failed_step']}; reason: {op.get('reason')})"
    raise AirflowFailException(ended)


def steps(op: dict[str, Any]) -> str:
    """`resolve ok 0.01s, stage ok 3.20s, verify FAILED 0.10s` for the task log."""
    parts = []
    for step in op.get("steps") or []:
        mark = "ok" if step.get("ok") else "FAILED" if step.get("ok") is False else "..."
        parts.append(f"{step.get('name')} {mark} {step.get('seconds') or 0:.2f}s")
    return ", ".join(parts)


def summary(op: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The few fields a task returns as its XCom."""
    return {key: op.get(key) for key in keys}


def from_event(event: dict[str, Any] | None) -> dict[str, Any]:
    """The record a trigger's event carries; its timeout or error as the task's exception."""
    if not event:
        raise AirflowException("the trigger ended without an event")
    if event.get("status") == "done":
        record: dict[str, Any] = event["record"]
        return record
    if event.get("status") == "error":
        raise refused(event["what"], ControllerError(int(event["http_status"]), event["body"]))
    raise AirflowException(str(event.get("message") or f"unexpected trigger event {event!r}"))
