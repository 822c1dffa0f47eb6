"""The operator's controls on the real local stack, under client load: pause and promote,
abort, a restart while paused, rollback by version, and signed notifications over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bluegreen.client import ControllerClient, ControllerError
from bluegreen.stack import LocalStack
from bluegreen.traffic import TrafficProbe
from tests.support.http_servers import WebhookReceiver
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN, running_stack, served_version, wait_for_step

NOTIFY_SECRET = "notify-5ecret-7d1e"


def test_pause_then_promote_under_load(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions
) -> None:
    with TrafficProbe(url=f"{stack.router_url}/predict", clients=3) as traffic:
        time.sleep(0.5)
        paused = client.switch(version=iris.other, pause=True)
        assert paused["status"] == "paused"
        assert [s["name"] for s in paused["steps"]] == ["resolve", "stage", "verify"]
        time.sleep(1.0)
        held = time.monotonic()
        # The standby serves the new version on its own endpoint; live has not moved.
        standby = httpx.post(
            f"http://{stack.host}:{stack.ports.green}/predict", json=[[5.1, 3.5, 1.4, 0.2]]
        )
        assert standby.headers["x-model-version"] == iris.other
        assert client.status()["operation"]["status"] == "paused"
        with pytest.raises(ControllerError) as second:
            client.switch(version=iris.third)
        assert second.value.status == 409
        promoted = client.promote()
        moved = time.monotonic()
        time.sleep(1.0)
    assert promoted["status"] == "promoted" and promoted["id"] == paused["id"]
    records = traffic.snapshot()
    assert traffic.failed() == []
    assert {r.version for r in records if r.started < held} == {iris.good}
    assert {r.version for r in records if r.started > moved} == {iris.other}


def test_abort_while_paused_and_while_running_leave_live_untouched(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions
) -> None:
    with TrafficProbe(url=f"{stack.router_url}/predict", clients=2) as traffic:
        client.switch(version=iris.other, pause=True)
        aborted = client.abort()
        assert (aborted["status"], aborted["error"], aborted["retryable"]) == (
            "aborted",
            "aborted",
            False,
        )
        loading = client.switch(version=iris.third, wait=False)
        wait_for_step(client, loading["id"], "stage")
        asked = time.monotonic()
        cut = client.abort()  # the model server is still loading the version
        took_in_stage = time.monotonic() - asked
        assert client.status()["standby"]["version"] is None  # a half-load is not kept
        running = client.switch(version=iris.third, wait=False, shadow_s=60)
        wait_for_step(client, running["id"], "shadow")
        asked = time.monotonic()
        stopped = client.abort()
        took = time.monotonic() - asked
    assert (cut["status"], cut["failed_step"], cut["error"]) == ("aborted", "stage", "aborted")
    assert "aborted by request during stage" in cut["reason"], cut["reason"]
    assert took_in_stage < 3
    assert (stopped["status"], stopped["failed_step"]) == ("aborted", "shadow")
    assert took < 5
    assert traffic.failed() == []
    assert {r.version for r in traffic.snapshot()} == {iris.good}
    assert served_version(stack) == iris.good


def test_a_controller_restarted_while_paused_comes_back_paused(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions
) -> None:
    paused = client.switch(version=iris.other, pause=True)
    # SIGKILL to the controller alone, as a crash would (stop_controller takes its children,
    # the model servers it started, down with it).
    controller = stack.processes.pop("controller")
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait()
    stack.start_controller()
    deadline = time.monotonic() + 30
    while (client.status()["operation"] or {}).get("status") != "paused":
        assert time.monotonic() < deadline, "the paused release did not come back"
        time.sleep(0.2)
    assert client.status()["operation"]["id"] == paused["id"]
    assert client.promote()["status"] == "promoted"
    assert served_version(stack) == iris.other


def test_rollback_to_an_earlier_version_under_load(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions
) -> None:
    client.switch(version=iris.other)  # green: other, blue keeps good
    client.switch(version=iris.third)  # blue: third, green keeps other
    with TrafficProbe(url=f"{stack.router_url}/predict", clients=3) as traffic:
        time.sleep(0.5)
        with pytest.raises(ControllerError) as never:
            client.rollback(version=iris.broken)
        assert never.value.status == 409 and iris.good in never.value.body["detail"]
        back = client.rollback(version=iris.good)  # green no longer holds it: stage, verify
        done = time.monotonic()
        time.sleep(1.0)
    assert back["status"] == "rolled_back"
    assert [s["name"] for s in back["steps"]] == ["stage", "verify", "rollback"]
    assert traffic.failed() == []
    assert {r.version for r in traffic.snapshot() if r.started > done} == {iris.good}
    assert client.status()["live"]["version"] == iris.good


@pytest.fixture
def notified(
    iris: IrisVersions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LocalStack, WebhookReceiver]]:
    receiver = WebhookReceiver("/events")
    monkeypatch.setenv("BLUEGREEN_NOTIFY_URLS", receiver.url)
    monkeypatch.setenv("BLUEGREEN_NOTIFY_SECRET", NOTIFY_SECRET)
    try:
        with running_stack(iris, tmp_path / "state") as local:
            yield local, receiver
    finally:
        receiver.close()


def test_each_release_event_reaches_the_receiver_signed(
    notified: tuple[LocalStack, WebhookReceiver], iris: IrisVersions
) -> None:
    stack, receiver = notified
    with ControllerClient(stack.controller_url, token=TOKEN) as client:
        client.switch(version=iris.other, pause=True)
        client.promote()
        client.rollback()
        with pytest.raises(ControllerError):
            client.switch(
                version=iris.constant, golden={"inputs": [[6.7, 3.0, 5.2, 2.3]], "expected": [2]}
            )
    receiver.wait(6, timeout=15)
    for headers, body in receiver.received:
        want = "sha256=" + hmac.new(NOTIFY_SECRET.encode(), body, hashlib.sha256).hexdigest()
        sent = {name.lower(): value for name, value in headers.items()}
        assert hmac.compare_digest(want, sent.get("x-bluegreen-signature", ""))
    assert [json.loads(body)["event"] for _, body in receiver.received] == [
        "release.started",
        "release.paused",
        "release.promoted",
        "release.rolled_back",
        "release.started",
        "release.aborted",
    ]
    log = (stack.logs / "controller.log").read_text()
    assert NOTIFY_SECRET not in log and "/events" not in log


def register_three_column_model(uri: str, name: str) -> str:
    """A pyfunc that serves fine but no longer takes the iris column `petal width (cm)`."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from bluegreen.iris import IRIS_COLUMNS, IRIS_ROWS, serving_requirements

    class ThreeColumns(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return [0] * len(model_input)

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    frame = pd.DataFrame([row[:3] for row in IRIS_ROWS], columns=IRIS_COLUMNS[:3])
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ThreeColumns(),
            signature=infer_signature(frame, [0, 0, 0]),
            input_example=frame,
            registered_model_name=name,
            pip_requirements=serving_requirements(),
        )
    return str(info.registered_model_version)


def test_the_schema_gate_refuses_a_dropped_column_before_any_load(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions
) -> None:
    narrow = register_three_column_model(iris.tracking_uri, iris.model)
    with TrafficProbe(url=f"{stack.router_url}/predict", clients=2) as traffic:
        with pytest.raises(ControllerError) as refused:
            client.switch(version=narrow)
        standby_after_refusal = client.status()["standby"]["version"]
    # Allowed, it is released: and the live clients' four-column rows are what it refuses.
    allowed = client.switch(version=narrow, allow_schema_change=True)
    body = refused.value.body
    assert (refused.value.status, body["error"], body["retryable"]) == (
        422,
        "schema_incompatible",
        False,
    )
    assert "petal width (cm)" in body["detail"]
    assert body["operation"]["failed_step"] == "resolve"
    assert standby_after_refusal is None  # nothing was staged
    assert allowed["status"] == "promoted"
    assert traffic.failed() == []


@pytest.fixture
def windowed(
    iris: IrisVersions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalStack]:
    monkeypatch.setenv("BLUEGREEN_SCALE_DOWN_DELAY_S", "2")
    with running_stack(iris, tmp_path / "state") as local:
        yield local


def test_the_standby_stops_after_the_warm_window_and_rollback_restages_it(
    windowed: LocalStack, iris: IrisVersions
) -> None:
    client = ControllerClient(windowed.controller_url, token=TOKEN)
    try:
        with TrafficProbe(url=f"{windowed.router_url}/predict", clients=3) as traffic:
            assert client.switch(version=iris.other)["status"] == "promoted"
            assert client.status()["standby"]["scale_down_at"] is not None
            deadline = time.monotonic() + 60
            while not client.status()["standby"]["scaled_down"]:
                assert time.monotonic() < deadline, "the standby was never scaled down"
                time.sleep(0.2)
            standby = client.status()["standby"]
            with pytest.raises(httpx.ConnectError):  # its process is gone
                httpx.get(f"http://{windowed.host}:{windowed.ports.blue}/readyz", timeout=2)
            back = client.rollback()
            done = time.monotonic()
            time.sleep(1.0)
    finally:
        client.close()
    assert (standby["color"], standby["ready"]) == ("blue", False)
    assert back["status"] == "rolled_back" and back["target_version"] == iris.good
    assert [s["name"] for s in back["steps"]] == ["stage", "verify", "rollback"]
    assert traffic.failed() == []
    assert {r.version for r in traffic.snapshot() if r.started > done} == {iris.good}
