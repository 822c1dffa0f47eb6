"""Faults leave live traffic untouched and the state consistent (real processes throughout)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bluegreen.client import ControllerClient, ControllerError
from bluegreen.iris import train_and_register
from bluegreen.stack import LocalStack
from bluegreen.traffic import TrafficProbe
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN, make_stack, served_version, wait_for_step
from tests.support.mlflow_server import MlflowServer, start_mlflow_server


def test_controller_killed_mid_release_comes_back_consistent(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions
) -> None:
    with TrafficProbe(url=f"{stack.router_url}/predict", clients=2) as traffic:
        started = client.switch(version=iris.other, wait=False)
        wait_for_step(client, started["id"], "stage", timeout_s=30)
        stack.stop_controller(kill=True)  # SIGKILL while the standby is loading
        stack.start_controller()
        status = client.status()
    assert traffic.failed() == []
    assert {r.version for r in traffic.snapshot()} == {iris.good}
    assert status["operation"] is None
    assert status["live"] == {"color": "blue", "version": iris.good, "ready": True}
    settled = client.operation(started["id"])
    assert settled["status"] == "aborted"
    assert settled["failed_step"] == "stage"
    assert "controller stopped during stage" in settled["reason"]
    # the lock died with the process, and the next release works
    assert client.switch(version=iris.third)["status"] == "promoted"
    assert served_version(stack) == iris.third


def test_journal_and_rollback_target_survive_a_restart(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions
) -> None:
    switch = client.switch(version=iris.other)
    stack.stop_controller()
    stack.start_controller()
    assert client.history()[0]["id"] == switch["id"]
    assert client.rollback()["status"] == "rolled_back"
    assert served_version(stack) == iris.good


@pytest.fixture
def own_mlflow(tmp_path: Path) -> Iterator[MlflowServer]:
    server = start_mlflow_server(tmp_path / "mlflow")
    yield server
    server.stop()


def test_mlflow_down_fails_clearly_and_traffic_is_still_served(
    own_mlflow: MlflowServer, iris: IrisVersions, tmp_path: Path
) -> None:
    v1 = train_and_register(tracking_uri=own_mlflow.url, model=iris.model).version
    v2 = train_and_register(tracking_uri=own_mlflow.url, model=iris.model, C=0.3).version
    local = make_stack(iris, tmp_path / "state", tracking_uri=own_mlflow.url)
    try:
        local.start(version=v1)
        api = ControllerClient(local.controller_url, token=TOKEN)
        own_mlflow.stop()
        with TrafficProbe(url=f"{local.router_url}/predict", clients=2) as traffic:
            started = time.monotonic()
            with pytest.raises(ControllerError) as caught:
                api.switch(version=v2)
            took = time.monotonic() - started
        assert caught.value.status == 503
        assert caught.value.body["error"] == "registry_unavailable"
        assert caught.value.body["operation"]["failed_step"] == "resolve"
        assert took < 60  # bounded retries, not MLflow's own minutes of backoff
        assert traffic.failed() == [] and len(traffic.snapshot()) > 0
        assert api.status()["live"]["version"] == v1
        own_mlflow.start_again()
        assert api.switch(version=v2)["status"] == "promoted"
    finally:
        local.stop()
