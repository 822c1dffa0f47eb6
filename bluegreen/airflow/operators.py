"""`BluegreenReleaseOperator` and `BluegreenRollbackOperator`: the controller's two moves.

The release starts with `POST /switch?wait=false` (answered once resolve has found the
version) and, `deferrable=True` by default, hands the wait to `BluegreenOperationTrigger`:
stage, verify, shadow, a pause and the bake run while the task holds no worker slot. The
task ends with the release's summary as XCom, or fails with the controller's failed step
and reason (for good when the record says `retryable: false`). A release that meets
another one holding the lock (409 `release_in_progress`) waits for it the same way, then
starts.

Both are safe to retry: a version already live answers `unchanged`; a retried rollback
first looks in the history for a rollback it already did since the run started.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from bluegreen.airflow import DEFAULT_CONN_ID, records
from bluegreen.airflow.hooks import BluegreenHook
from bluegreen.airflow.triggers import BluegreenOperationTrigger
from bluegreen.airflow.waits import Until, wait_here
from bluegreen.client import ControllerClient, ControllerError

_FLOATS = ("shadow_s", "min_agreement", "bake_s")


class BluegreenReleaseOperator(BaseOperator):
    """Release exactly `version` of the controller's model, or the version `alias` names.

    :param version: a registered version (templated; an XComArg works too)
    :param alias: a registry alias instead of a version, e.g. `champion` (templated)
    :param model: the registered model; the controller refuses any other (optional)
    :param shadow_s: seconds of mirrored live traffic before the flip (0: off)
    :param min_agreement: the shadow gate, share of predictions that must agree (0..1)
    :param bake_s: seconds the new version is watched after the flip; a breach rolls back
    :param pause: stop before the flip (status `paused`) until someone promotes it
    :param deferrable: wait in the triggerer (default) rather than in a worker slot
    :param release_timeout: how long the release, including a wait for the lock, may take
    """

    template_fields: Sequence[str] = (
        "version",
        "alias",
        "model",
        "shadow_s",
        "min_agreement",
        "bake_s",
        "pause",
    )
    ui_color = "#4f8fd6"

    def __init__(
        self,
        *,
        version: str | None = None,
        alias: str | None = None,
        model: str | None = None,
        shadow_s: float | str | None = None,
        min_agreement: float | str | None = None,
        bake_s: float | str | None = None,
        pause: bool | str | None = None,
        bluegreen_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = True,
        poll_interval_s: float = 2.0,
        release_timeout: timedelta = timedelta(minutes=15),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (version is None) == (alias is None):
            raise ValueError("give exactly one of version or alias")
        self.version = version
        self.alias = alias
        self.model = model
        self.shadow_s = shadow_s
        self.min_agreement = min_agreement
        self.bake_s = bake_s
        self.pause = pause
        self.bluegreen_conn_id = bluegreen_conn_id
        self.deferrable = deferrable
        self.poll_interval_s = poll_interval_s
        self.release_timeout = release_timeout

    def execute(self, context: Context) -> dict[str, Any]:
        return self._start(context, time.time() + self.release_timeout.total_seconds())

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, *, deadline: float
    ) -> dict[str, Any]:
        """Back from the trigger: the release's record decides the task's outcome."""
        return self._conclude(records.from_event(event))

    def resume_after_lock(
        self, context: Context, event: dict[str, Any] | None = None, *, deadline: float
    ) -> dict[str, Any]:
        """Back from waiting out another release: start ours now."""
        records.from_event(event)
        return self._start(context, deadline)

    def analysis(self) -> dict[str, Any]:
        """The release-analysis options as the controller takes them (rendered values may be
        strings outside `render_template_as_native_obj`; unset and `None` are left out)."""
        options: dict[str, Any] = {}
        for key in _FLOATS:
            value = getattr(self, key)
            if value is not None and str(value).strip().lower() not in ("", "none", "null"):
                options[key] = float(value)
        if self.pause is not None and str(self.pause).strip().lower() not in ("", "none"):
            text = str(self.pause).strip().lower()
            if text not in ("true", "false"):
                raise AirflowException(f"pause={self.pause!r}: expected true or false")
            options["pause"] = text == "true"
        return options

    def _hook(self) -> BluegreenHook:
        return BluegreenHook(self.bluegreen_conn_id)

    def _target(self) -> str:
        return f"v{self.version}" if self.version is not None else f"@{self.alias}"

    def _start(self, context: Context, deadline: float) -> dict[str, Any]:
        options = self.analysis()
        with self._hook().get_conn() as client:
            try:
                op = client.switch(
                    version=str(self.version) if self.version is not None else None,
                    alias=self.alias,
                    model=self.model or None,
                    wait=False,
                    **options,
                )
            except ControllerError as exc:
                if exc.body.get("error") != "release_in_progress":
                    raise records.refused("controller refused the release", exc) from None
                if time.time() >= deadline:
                    raise AirflowException(f"controller still busy: {exc}") from None
                self.log.info("another release holds the lock (%s); waiting", exc.body["detail"])
                return self._wait(
                    context,
                    client,
                    until="idle",
                    operation_id=None,
                    deadline=deadline,
                    then="resume_after_lock",
                )
            self.log.info("release %s of %s started %s", op.get("id"), self._target(), options)
            if op.get("status") in ("running", "baking"):
                return self._wait(
                    context,
                    client,
                    until="finished",
                    operation_id=str(op["id"]),
                    deadline=deadline,
                    then="execute_complete",
                )
        return self._conclude(op)

    def _wait(
        self,
        context: Context,
        client: ControllerClient,
        *,
        until: Until,
        operation_id: str | None,
        deadline: float,
        then: str,
    ) -> dict[str, Any]:
        if self.deferrable:
            self._defer(until=until, operation_id=operation_id, deadline=deadline, then=then)
        event = wait_here(
            client,
            until=until,
            operation_id=operation_id,
            deadline=deadline,
            poll_interval_s=self.poll_interval_s,
        )
        resumed: dict[str, Any] = getattr(self, then)(context, event, deadline=deadline)
        return resumed

    def _defer(
        self, *, until: Until, operation_id: str | None, deadline: float, then: str
    ) -> NoReturn:
        trigger = BluegreenOperationTrigger(
            until=until,
            deadline=deadline,
            operation_id=operation_id,
            bluegreen_conn_id=self.bluegreen_conn_id,
            poll_interval_s=self.poll_interval_s,
        )
        # The trigger times itself out with a clear event; Airflow's timeout is the backstop.
        backstop = timedelta(seconds=max(deadline - time.time(), 0) + 120)
        self.defer(
            trigger=trigger, method_name=then, kwargs={"deadline": deadline}, timeout=backstop
        )

    def _conclude(self, op: dict[str, Any]) -> dict[str, Any]:
        self.log.info("release %s: %s [%s]", op.get("id"), op.get("status"), records.steps(op))
        if op.get("status") in records.FAILED:
            raise records.aborted(op)
        summary = records.summary(op, records.RELEASE_KEYS)
        if op.get("status") == "paused":
            self.log.info("v%s staged and verified; paused for POST /promote", op["target_version"])
            return summary
        with self._hook().get_conn() as client:
            try:
                live = client.status().get("live") or {}
            except ControllerError as exc:
                raise records.refused("cannot read the live version", exc) from None
        if live.get("version") != op.get("target_version"):  # the route is the truth
            raise AirflowException(
                f"release {op.get('status')}, yet v{live.get('version')} is live "
                f"(expected v{op.get('target_version')})"
            )
        self.log.info("v%s is live on %s", live.get("version"), live.get("color"))
        return {**summary, "live_color": live.get("color")}


class BluegreenRollbackOperator(BaseOperator):
    """Flip live traffic back to the previous version, or to `version` (one of the recent).

    Fails for good when there is nothing to roll back to (409 `rollback_unavailable`). A
    retry first reads the history: a rollback finished since the run started counts as
    done, since flipping again would undo it.
    """

    template_fields: Sequence[str] = ("version",)
    ui_color = "#d6844f"

    def __init__(
        self,
        *,
        version: str | None = None,
        bluegreen_conn_id: str = DEFAULT_CONN_ID,
        timeout_s: float = 300.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.bluegreen_conn_id = bluegreen_conn_id
        self.timeout_s = timeout_s

    def execute(self, context: Context) -> dict[str, Any]:
        ti, dag_run = context["ti"], context["dag_run"]
        with BluegreenHook(self.bluegreen_conn_id, timeout_s=self.timeout_s).get_conn() as client:
            if ti.try_number > 1 and dag_run.start_date is not None:
                done = rollback_since(client, dag_run.start_date)
                if done is not None:
                    self.log.info("rollback %s already done by an earlier try", done.get("id"))
                    return records.summary(done, records.ROLLBACK_KEYS)
            try:
                op = client.rollback(version=str(self.version) if self.version else None)
            except ControllerError as exc:
                raise records.refused("rollback refused", exc) from None
        summary = records.summary(op, records.ROLLBACK_KEYS)
        self.log.info(
            "rolled back: v%s (%s) -> v%s (%s)",
            summary["from_version"],
            summary["from_color"],
            summary["target_version"],
            summary["to_color"],
        )
        return summary


def rollback_since(client: ControllerClient, since: datetime) -> dict[str, Any] | None:
    """A rollback that finished since `since`, from the controller's history (UTC both)."""
    try:
        history = client.history(limit=20)
    except ControllerError as exc:  # unsure whether we flipped: do not risk a second flip
        raise AirflowException(f"cannot read the history: {records.error_text(exc)}") from None
    for op in history:
        started = datetime.fromisoformat(op["started_at"])
        if (
            op["kind"] == "rollback"
            and op["status"] == "rolled_back"
            and started >= since.astimezone(UTC)
        ):
            return op
    return None
