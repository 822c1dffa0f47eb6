"""Helpers shared by the bluegreen DAGs: Connections, the controller calls, the iris data.

Import-cheap on purpose: the DAG processor imports this on every parse, so only the
standard library and `airflow.sdk` load at module level; `httpx`, `mlflow` and
`sklearn` are imported inside the functions that the tasks call.

Connections (never a URL in code):
- `bluegreen_controller`: host, port, schema `http`/`https` (default `http`); the
  controller's bearer token as the password (optional).
- `mlflow_default`: the MLflow tracking server as host, port, schema; or
  `{"tracking_uri": "..."}` in the extra. Login/password, when set, become MLflow's
  basic-auth credentials. Without this Connection, `MLFLOW_TRACKING_URI` is used.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException

if TYPE_CHECKING:
    import httpx
    import pandas as pd

log = logging.getLogger(__name__)

CONTROLLER_CONN_ID = "bluegreen_controller"
MLFLOW_CONN_ID = "mlflow_default"
EXPERIMENT = "bluegreen"

# Bounded waits. The controller's own stage timeout is 180 s; the release deadline
# leaves room for verify, promote and a queue behind another release.
HTTP_TIMEOUT_S = 30.0
RELEASE_DEADLINE_S = 900.0
POLL_INTERVAL_S = 2.0

# Release steps whose failure a retry cannot fix: a missing version, a failed smoke test.
# stage/promote failures may be transient (a slow pod, a route conflict): those retry.
PERMANENT_STEPS = frozenset({"resolve", "verify", "shadow", "bake"})
PERMANENT_HTTP = frozenset({400, 401, 403, 404, 422})


# -- Connections ---------------------------------------------------------------------------


def _base_url(conn: Any) -> str:
    """`scheme://host:port` from an HTTP-style Connection (host may carry its scheme)."""
    host = (conn.host or "").rstrip("/")
    if not host:
        raise AirflowFailException(f"Connection {conn.conn_id!r} has no host")
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    return f"{host}:{conn.port}" if conn.port else host


def mlflow_tracking_uri() -> str:
    """The tracking URI from the `mlflow_default` Connection, else `MLFLOW_TRACKING_URI`."""
    try:
        conn = BaseHook.get_connection(MLFLOW_CONN_ID)
    except AirflowNotFoundException:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise AirflowFailException(
                f"define the Connection {MLFLOW_CONN_ID!r} (or set MLFLOW_TRACKING_URI) "
                "to reach the MLflow tracking server"
            ) from None
        return uri
    if conn.login:
        # MLflow reads basic-auth credentials from the environment only; each Airflow
        # task runs in its own process, so this stays within the task.
        os.environ["MLFLOW_TRACKING_USERNAME"] = conn.login
        os.environ["MLFLOW_TRACKING_PASSWORD"] = conn.password or ""
    return conn.extra_dejson.get("tracking_uri") or _base_url(conn)


def controller_client(timeout_s: float = HTTP_TIMEOUT_S) -> httpx.Client:
    """An HTTP client for the controller named by the `bluegreen_controller` Connection."""
    import httpx

    conn = BaseHook.get_connection(CONTROLLER_CONN_ID)
    # The token goes only into the header; Airflow masks Connection passwords in logs.
    headers = {"Authorization": f"Bearer {conn.password}"} if conn.password else {}
    return httpx.Client(
        base_url=_base_url(conn), headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)
    )


# -- controller answers ---------------------------------------------------------------------


def _body(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {"error": "http_error", "detail": answer.text[:300]}
    return body if isinstance(body, dict) else {"error": "http_error", "detail": str(body)[:300]}


def _error_text(status: int, body: dict[str, Any]) -> str:
    """`409 rollback_unavailable: <detail>` plus the failed step when a record came along."""
    text = f"{status} {body.get('error', 'error')}: {body.get('detail', '')}"
    op = body.get("operation") or {}
    if op.get("failed_step"):
        text += f" (failed step: {op['failed_step']}; reason: {op.get('reason')})"
    return text


def _steps(op: dict[str, Any]) -> str:
    parts = []
    for step in op.get("steps") or []:
        mark = "ok" if step.get("ok") else "FAILED" if step.get("ok") is False else "..."
        parts.append(f"{step.get('name')} {mark} {step.get('seconds') or 0:.2f}s")
    return ", ".join(parts)


def _aborted(op: dict[str, Any]) -> AirflowException:
    """The exception for an aborted release: the record's `retryable` says whether to retry
    (older controllers without it: permanent unless the failed step may heal)."""
    how = "rolled back by its bake" if op.get("status") == "rolled_back" else "aborted"
    message = (
        f"release of v{op.get('target_version') or op.get('requested', {}).get('version')} "
        f"{how} at step {op.get('failed_step')!r}: {op.get('reason')} "
        f"(operation {op.get('id')}; live traffic on the previous version)"
    )
    retryable = op.get("retryable")
    if retryable is False or (retryable is None and op.get("failed_step") in PERMANENT_STEPS):
        return AirflowFailException(f"{message}; not retryable ({op.get('error')})")
    return AirflowException(message)


# -- release and rollback -------------------------------------------------------------------


def release(
    *,
    model: str,
    version: str,
    analysis: dict[str, Any] | None = None,
    deadline_s: float = RELEASE_DEADLINE_S,
) -> dict[str, Any]:
    """Release exactly `version` via `POST /switch?wait=false`, then poll the operation.

    `analysis` adds the release-analysis knobs (`shadow_s`, `min_agreement`, `bake_s`,
    `pause`); a release rolled back by its bake fails the task with the breached check. A
    paused release ends the task successfully with status `paused`: someone promotes it.
    Safe to retry: a version already live answers `unchanged`; a release still held by
    an earlier attempt (409 release_in_progress) is waited out, within the deadline.
    """
    deadline = time.monotonic() + deadline_s
    body = {"version": version, "model": model, **(analysis or {})}
    with controller_client() as http:
        op = _submit(http, body=body, deadline=deadline)
        log.info("release %s of v%s started", op.get("id"), version)
        op = _wait(http, op, deadline=deadline)
        log.info("release %s: %s [%s]", op.get("id"), op.get("status"), _steps(op))
        if op.get("status") in ("aborted", "rolled_back"):
            raise _aborted(op)
        if op.get("status") == "paused":
            log.info("v%s staged and verified; paused for POST /promote", version)
            return {k: op.get(k) for k in ("id", "status", "target_version", "from_version")}
        live = _body(http.get("/status")).get("live") or {}
    if live.get("version") != version:  # the route is the truth, not the record
        raise AirflowException(f"release {op.get('status')}, yet v{live.get('version')} is live")
    log.info("v%s is live on %s", version, live.get("color"))
    keys = ("id", "status", "target_version", "from_version")
    return {**{k: op.get(k) for k in keys}, "live_color": live.get("color")}


def _submit(http: httpx.Client, *, body: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Start the release; wait out another release's lock (409) until the deadline."""
    while True:
        answer = http.post("/switch", params={"wait": "false"}, json=body)
        body = _body(answer)
        if answer.status_code in (200, 202):
            return body
        if answer.status_code == 409 and body.get("error") == "release_in_progress":
            if time.monotonic() > deadline:
                raise AirflowException(f"controller still busy: {body.get('detail')}")
            log.info("another release holds the lock; waiting (%s)", body.get("detail"))
            time.sleep(POLL_INTERVAL_S)
            continue
        error = f"controller refused the release: {_error_text(answer.status_code, body)}"
        if answer.status_code in PERMANENT_HTTP:
            raise AirflowFailException(error)
        raise AirflowException(error)


def _wait(http: httpx.Client, op: dict[str, Any], *, deadline: float) -> dict[str, Any]:
    """Poll `GET /operations/{id}` until the operation finished, or the deadline."""
    import httpx

    while op.get("status") in ("running", "baking"):
        if time.monotonic() > deadline:
            raise AirflowException(
                f"release {op.get('id')} still running at the deadline; "
                f"see GET /operations/{op.get('id')}"
            )
        time.sleep(POLL_INTERVAL_S)
        try:
            answer = http.get(f"/operations/{op['id']}")
        except httpx.TransportError as exc:  # a controller restart: its journal survives
            log.warning("controller unreachable while polling (%s); retrying", exc)
            continue
        if answer.status_code >= 500:
            log.warning("controller answered %s while polling; retrying", answer.status_code)
            continue
        if answer.status_code >= 400:
            raise AirflowException(_error_text(answer.status_code, _body(answer)))
        op = _body(answer)
    return op


def rollback(*, not_before: datetime | None = None) -> dict[str, Any]:
    """`POST /rollback`; fail with the controller's reason when there is nothing to go back to.

    With `not_before` (a retry), a rollback the controller already finished since then
    counts as done: flipping again would undo it.
    """
    with controller_client() as http:
        if not_before is not None:
            done = _rollback_since(http, not_before)
            if done is not None:
                log.info("rollback %s already done by an earlier try", done.get("id"))
                return _rollback_summary(done)
        answer = http.post("/rollback")
        body = _body(answer)
        if answer.status_code == 409 and body.get("error") == "rollback_unavailable":
            # Permanent until someone releases again: retrying cannot help.
            raise AirflowFailException(f"rollback refused: {_error_text(409, body)}")
        if answer.status_code >= 400:
            error = _error_text(answer.status_code, body)
            if answer.status_code in PERMANENT_HTTP:
                raise AirflowFailException(f"rollback refused: {error}")
            raise AirflowException(f"rollback failed: {error}")
    summary = _rollback_summary(body)
    log.info(
        "rolled back: v%s (%s) -> v%s (%s)",
        summary["from_version"],
        summary["from_color"],
        summary["target_version"],
        summary["to_color"],
    )
    return summary


def _rollback_since(http: httpx.Client, since: datetime) -> dict[str, Any] | None:
    """A rollback that finished since `since` (both clocks UTC), from the controller's history."""
    answer = http.get("/history", params={"limit": 20})
    if answer.status_code != 200:  # unsure whether we flipped: do not risk a second flip
        raise AirflowException(
            f"cannot read the history: {_error_text(answer.status_code, _body(answer))}"
        )
    for op in answer.json():
        started = datetime.fromisoformat(op["started_at"])
        if op["kind"] == "rollback" and op["status"] == "rolled_back" and started >= since:
            return op
    return None


def _rollback_summary(op: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "status", "from_color", "from_version", "to_color", "target_version")
    return {k: op.get(k) for k in keys}


def utc(moment: datetime | None) -> datetime | None:
    """Airflow dates are aware; the controller's are UTC ISO strings."""
    return moment.astimezone(UTC) if moment is not None else None


# -- data -----------------------------------------------------------------------------------


def iris_split() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """The iris train/holdout split, the same one in train and evaluate (fixed seed)."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    features, labels = load_iris(return_X_y=True, as_frame=True)
    return train_test_split(features, labels, test_size=0.3, random_state=7, stratify=labels)
