"""Following an alias on a real stack, with a real MLflow server sending real webhooks.

The session's MLflow server runs with `tests.support.mlflow_server.WEBHOOK_ENV` (http to
loopback allowed), so `MlflowClient.create_webhook` deliveries reach the controller.
Each test follows its own alias, so the shared registry's other tests are not disturbed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.entities.webhook import WebhookEvent

from bluegreen.client import ControllerClient
from bluegreen.stack import LocalStack
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN, running_stack, served_version
from tests.support.waiting import wait_for

SECRET = "whsec-live-7d2e90"
RELEASE_S = 240  # a release (stage, verify, flip) and its tag, from the event that starts it


def release_tag(iris: IrisVersions, version: str) -> str | None:
    found = iris.registry().get_model_version(iris.model, version)
    return (found.tags or {}).get("bluegreen.release")


def wait_released(stack: LocalStack, iris: IrisVersions, version: str, *, by: str) -> None:
    """`version` served and tagged promoted: the release that `by` started has finished."""
    wait_for(f"{by}'s release", lambda: served_version(stack) == version, timeout_s=RELEASE_S)
    wait_for(f"{by}'s tag", lambda: release_tag(iris, version) == "promoted", timeout_s=RELEASE_S)


def signed_delivery(payload: dict[str, Any], *, delivery: str, at: float) -> dict[str, Any]:
    body = json.dumps(payload)
    stamp = str(int(at))
    digest = hmac.new(SECRET.encode(), f"{delivery}.{stamp}.{body}".encode(), hashlib.sha256)
    return {
        "content": body,
        "headers": {
            "Content-Type": "application/json",
            "X-MLflow-Delivery-Id": delivery,
            "X-MLflow-Timestamp": stamp,
            "X-MLflow-Signature": "v1," + base64.b64encode(digest.digest()).decode(),
        },
    }


def following_stack(
    iris: IrisVersions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> Iterator[LocalStack]:
    # The stack's controller inherits BLUEGREEN_* (all but the token) from our environment.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with running_stack(iris, tmp_path / "state") as local:
        yield local


@pytest.fixture
def alias() -> str:
    return f"champion-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def webhook_stack(iris, tmp_path, monkeypatch, alias) -> Iterator[LocalStack]:
    yield from following_stack(
        iris,
        tmp_path,
        monkeypatch,
        BLUEGREEN_FOLLOW_ALIAS=alias,
        BLUEGREEN_FOLLOW_INTERVAL_S="3600",  # only a webhook can wake it within the test
        BLUEGREEN_MLFLOW_WEBHOOK_SECRET=SECRET,
    )


@pytest.fixture
def polling_stack(iris, tmp_path, monkeypatch, alias) -> Iterator[LocalStack]:
    yield from following_stack(
        iris, tmp_path, monkeypatch, BLUEGREEN_FOLLOW_ALIAS=alias, BLUEGREEN_FOLLOW_INTERVAL_S="2"
    )


def test_moving_the_alias_releases_through_the_webhook_and_forgeries_change_nothing(
    webhook_stack: LocalStack, iris: IrisVersions, alias: str
) -> None:
    stack, registry = webhook_stack, iris.registry()
    hook = registry.create_webhook(
        name=f"bluegreen-{alias}",
        url=f"{stack.controller_url}/webhooks/mlflow",
        events=[WebhookEvent("model_version_alias", "created")],
        secret=SECRET,
    )
    try:
        registry.set_registered_model_alias(iris.model, alias, iris.other)
        wait_released(stack, iris, iris.other, by="the webhook")
    finally:
        registry.delete_webhook(hook.webhook_id)
    # MLflow answers deliveries from a webhook list it caches for MLFLOW_WEBHOOK_CACHE_TTL (1 s
    # here), and a delivery that came in during the release wakes one more reconcile: both
    # must be over before the alias moves, or the deleted webhook still delivers the move.
    time.sleep(2.5)

    # No webhook now, and the loop sleeps an hour: only a delivery we send can wake it.
    registry.set_registered_model_alias(iris.model, alias, iris.third)
    url = f"{stack.controller_url}/webhooks/mlflow"
    event = {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "2026-12-07T03:00:00+00:00",
        "data": {"name": iris.model, "alias": alias, "version": iris.third},
    }
    forged = signed_delivery(event, delivery="forged", at=time.time())
    forged["headers"]["X-MLflow-Signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    stale = signed_delivery(event, delivery="stale", at=time.time() - 600)
    for attempt in (forged, stale):
        assert httpx.post(url, **attempt).status_code == 401
    time.sleep(3)
    assert served_version(stack) == iris.other

    fresh = signed_delivery(event, delivery=str(uuid.uuid4()), at=time.time())
    assert httpx.post(url, **fresh).status_code == 202  # no bearer token: the signature
    wait_released(stack, iris, iris.third, by="the signed delivery")

    # A replay of that delivery, with the alias now on a version that would abort: ignored.
    client = ControllerClient(stack.controller_url, token=TOKEN)
    before = len(client.history(100))
    registry.set_registered_model_alias(iris.model, alias, iris.broken)
    replayed = httpx.post(url, **fresh)
    assert (replayed.status_code, replayed.json()["status"]) == (200, "ignored")
    time.sleep(3)
    assert len(client.history(100)) == before
    assert served_version(stack) == iris.third
    client.close()


def test_with_webhooks_off_the_reconcile_loop_releases_and_a_failure_is_not_retried(
    polling_stack: LocalStack, iris: IrisVersions, alias: str
) -> None:
    stack, registry = polling_stack, iris.registry()
    answer = httpx.post(f"{stack.controller_url}/webhooks/mlflow", content=b"{}")
    assert answer.status_code == 404  # no secret: the webhook is off (and needs no token)

    registry.set_registered_model_alias(iris.model, alias, iris.other)
    wait_released(stack, iris, iris.other, by="the loop")

    registry.set_registered_model_alias(iris.model, alias, iris.broken)
    tag = wait_for("the abort's tag", lambda: release_tag(iris, iris.broken), timeout_s=RELEASE_S)
    assert tag.startswith("aborted: stage: "), tag
    client = ControllerClient(stack.controller_url, token=TOKEN)
    attempts = len(client.history(100))
    time.sleep(6)  # three more turns of the loop
    assert len(client.history(100)) == attempts
    assert served_version(stack) == iris.other
    client.close()
