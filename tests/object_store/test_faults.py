"""Faults of MLflow as users run it (PostgreSQL + S3): each release aborts at the step that
needs what is missing, says why in words a user can act on (no stack trace, no secret), and
leaves live traffic untouched; `retryable` says whether trying again can help."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from object_store import server as object_store_server

from bluegreen.client import ControllerClient, ControllerError
from bluegreen.stack import LocalStack, StackPorts
from bluegreen.traffic import TrafficProbe
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN, served_version, wait_for_step
from tests.support.mlflow_s3 import MlflowS3Server, start_mlflow_s3
from tests.support.models import register_iris
from tests.support.object_store import s3_env, start_object_store
from tests.support.postgres import Postgres, wait_accepting

WRONG_SECRET = "wrong-secret-7c1e9a44d2b3f5"  # distinctive, so a leak is easy to find


def _refused(api: ControllerClient, version: str) -> dict[str, Any]:
    with pytest.raises(ControllerError) as caught:
        api.switch(version=version)
    body = caught.value.body
    assert isinstance(body, dict)
    return {"status": caught.value.status, **body}


def _no_trace_no_secret(text: str, *secrets: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text
    for secret in secrets:
        assert secret not in text


def test_wrong_credentials_abort_at_resolve_not_retryable(
    stack: LocalStack,
    client: ControllerClient,
    iris_s3: IrisVersions,
    mlflow_s3: MlflowS3Server,
    s3_env_vars: pytest.MonkeyPatch,
) -> None:
    # The controller (and the model servers it starts) now hold a wrong secret.
    s3_env_vars.setenv("AWS_SECRET_ACCESS_KEY", WRONG_SECRET)
    stack.stop_controller()
    stack.start_controller()
    with TrafficProbe(url=f"{stack.router_url}/predict", clients=2) as traffic:
        answer = _refused(client, iris_s3.other)
    assert answer["error"] == "artifact_store_refused", answer
    assert answer["retryable"] is False
    assert answer["operation"]["failed_step"] == "resolve"
    assert answer["operation"]["retryable"] is False
    assert "AWS_SECRET_ACCESS_KEY" in answer["detail"]
    assert "refused the credentials" in answer["detail"]
    _no_trace_no_secret(str(answer), WRONG_SECRET, mlflow_s3.store.secret_key)
    assert traffic.failed() == [] and {r.version for r in traffic.snapshot()} == {iris_s3.good}
    assert client.status()["live"]["version"] == iris_s3.good


def test_model_file_gone_aborts_at_stage_not_retryable(
    stack: LocalStack, client: ControllerClient, iris_s3: IrisVersions
) -> None:
    with TrafficProbe(url=f"{stack.router_url}/predict", clients=2) as traffic:
        answer = _refused(client, iris_s3.broken)
    assert answer["operation"]["failed_step"] == "stage", answer
    assert answer["retryable"] is False
    assert "model.skops is missing" in answer["detail"], answer["detail"]
    _no_trace_no_secret(str(answer))
    assert traffic.failed() == [] and {r.version for r in traffic.snapshot()} == {iris_s3.good}
    assert served_version(stack) == iris_s3.good


def test_postgres_restart_mid_release_is_ridden_out(
    stack: LocalStack,
    client: ControllerClient,
    iris_s3: IrisVersions,
    postgres: Postgres,
) -> None:
    with TrafficProbe(url=f"{stack.router_url}/predict", clients=2) as traffic:
        deadline = time.monotonic() + 300
        started = client.switch(version=iris_s3.third, wait=False)
        wait_for_step(client, started["id"], "stage")
        postgres.restart()  # every connection of MLflow's pool is cut
        wait_accepting(postgres)
        done = client.operation(started["id"])
        while done["status"] == "running":
            assert time.monotonic() < deadline, done
            time.sleep(0.2)
            done = client.operation(started["id"])
    assert done["status"] == "promoted", done
    assert served_version(stack) == iris_s3.third
    assert traffic.failed() == []


@pytest.fixture
def outage_store(
    tmp_path: Path, postgres: Postgres, s3_env_vars: pytest.MonkeyPatch
) -> Iterator[tuple[MlflowS3Server, list[str]]]:
    """An object store of this test's own (it goes down), an MLflow server on it, two
    versions of `iris-outage` in it; this process's S3 variables point at it."""
    store = start_object_store(tmp_path / "store")
    mlflow = start_mlflow_s3(tmp_path / "mlflow", postgres=postgres, store=store)
    try:
        for key, value in mlflow.env().items():
            s3_env_vars.setenv(key, value)
        with s3_env(mlflow.env()):
            versions = [
                register_iris(mlflow.url, "iris-outage", C=c, max_iter=300) for c in (1.0, 0.3)
            ]
        yield mlflow, versions
    finally:
        mlflow.stop()
        object_store_server.down(store.root)


def test_object_store_down_aborts_at_resolve_retryable(
    outage_store: tuple[MlflowS3Server, list[str]], tmp_path: Path
) -> None:
    mlflow, (v1, v2) = outage_store
    local = LocalStack(
        model="iris-outage",
        state_dir=tmp_path / "state",
        ports=StackPorts.free(),
        tracking_uri=mlflow.url,
        token=TOKEN,
    )
    try:
        local.start(version=v1)
        api = ControllerClient(local.controller_url, token=TOKEN)
        object_store_server.down(mlflow.store.root)
        with TrafficProbe(url=f"{local.router_url}/predict", clients=2) as traffic:
            started = time.monotonic()
            answer = _refused(api, v2)
            took = time.monotonic() - started
        assert answer["status"] == 503, answer
        assert answer["error"] == "artifact_store_unavailable"
        assert answer["retryable"] is True
        assert answer["operation"]["failed_step"] == "resolve"
        assert mlflow.store.endpoint in answer["detail"]
        _no_trace_no_secret(str(answer), mlflow.store.secret_key)
        assert took < 90  # bounded retries
        assert traffic.failed() == [] and len(traffic.snapshot()) > 0
        assert api.status()["live"]["version"] == v1
    finally:
        local.stop()
