"""Following an alias: the webhook's checks and the reconcile's decisions, on the real
engine over in-memory stand-ins (tests/release/test_follow_live.py runs a real MLflow)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from controller.follow import AliasFollower, WebhookVerifier
from tests.support.engine_fakes import World

pytestmark = pytest.mark.unit

SECRET = "whsec-3c1e8a"


def signed(payload: dict[str, object], *, delivery: str, at: float, secret: str = SECRET):
    """Headers and body exactly as MLflow's `_send_webhook_request` builds them."""
    body = json.dumps(payload)
    stamp = str(int(at))
    digest = hmac.new(secret.encode(), f"{delivery}.{stamp}.{body}".encode(), hashlib.sha256)
    headers = {
        "x-mlflow-delivery-id": delivery,
        "x-mlflow-timestamp": stamp,
        "x-mlflow-signature": "v1," + base64.b64encode(digest.digest()).decode(),
    }
    return headers, body.encode()


def alias_event(version: str, *, model: str = "iris", alias: str = "champion") -> dict:
    return {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "2026-12-07T03:00:00+00:00",
        "data": {"name": model, "alias": alias, "version": version},
    }


@pytest.fixture
def world() -> World:
    return World()


def follower(world: World, *, now: float | None = None) -> AliasFollower:
    clock = (lambda: now) if now is not None else time.time
    return AliasFollower(
        engine=world.engine(),
        registry=world.registry,
        model="iris",
        alias="champion",
        interval_s=3600,
        verifier=WebhookVerifier(SECRET, clock=clock),
    )


def test_the_alias_version_is_released_and_tagged_promoted(world: World) -> None:
    world.registry.aliases["champion"] = "2"
    follow = follower(world)
    assert follow.reconcile() == "promoted"
    assert world.backend.pinned[world.router.route.color] == "2"
    assert world.registry.tags["2"] == "promoted"
    assert follow.reconcile() == "live"  # idempotent: nothing more happens
    assert world.backend.pins == 1


def test_a_failed_version_is_not_retried_until_the_alias_moves(world: World) -> None:
    world.smoke.failing.add("3")
    world.registry.aliases["champion"] = "3"
    follow = follower(world)
    assert follow.reconcile() == "aborted"
    assert world.registry.tags["3"].startswith("aborted: verify: v3 predicts wrong")
    assert follow.reconcile() == "blocked"
    assert world.backend.pins == 1
    world.registry.aliases["champion"] = "2"  # moves on ...
    assert follow.reconcile() == "promoted"
    world.smoke.failing.clear()
    world.registry.aliases["champion"] = "3"  # ... and back: tried again
    assert follow.reconcile() == "promoted"
    assert world.registry.tags["3"] == "promoted"


def test_a_restart_does_not_retry_a_failed_version(world: World) -> None:
    world.smoke.failing.add("3")
    world.registry.aliases["champion"] = "3"
    assert follower(world).reconcile() == "aborted"
    pins = world.backend.pins
    restarted = follower(world)
    assert restarted.reconcile() == "blocked"
    assert world.backend.pins == pins


def test_an_alias_seen_unset_then_set_is_released_whatever_its_tag(world: World) -> None:
    world.registry.tags["2"] = "promoted"  # by an earlier controller, long ago
    follow = follower(world)
    assert follow.reconcile() == "alias unset"
    world.registry.aliases["champion"] = "2"
    assert follow.reconcile() == "promoted"


def test_a_webhook_for_the_alias_retries_even_the_same_version(world: World) -> None:
    world.smoke.failing.add("3")
    world.registry.aliases["champion"] = "3"
    follow = follower(world)
    assert follow.reconcile() == "aborted"
    world.smoke.failing.clear()
    headers, body = signed(alias_event("3"), delivery="d-1", at=time.time())
    assert follow.on_webhook(headers, body).status_code == 202
    assert follow.reconcile() == "promoted"


def test_a_rollback_by_hand_is_respected(world: World) -> None:
    world.registry.aliases["champion"] = "2"
    engine = world.engine()
    follow = AliasFollower(
        engine=engine,
        registry=world.registry,
        model="iris",
        alias="champion",
        interval_s=3600,
        verifier=None,
    )
    assert follow.reconcile() == "promoted"
    engine.rollback()
    assert follow.reconcile() == "blocked"
    assert world.registry.tags["2"] == "rolled back: v1 is live instead"
    assert world.backend.pinned[world.router.route.color] == "1"


def test_registry_down_changes_nothing_and_is_tried_again(world: World) -> None:
    world.registry.aliases["champion"] = "2"
    world.registry.down = True
    follow = follower(world)
    assert follow.reconcile() == "registry unavailable"
    world.registry.down = False
    assert follow.reconcile() == "promoted"


def test_an_unset_alias_does_nothing(world: World) -> None:
    assert follower(world).reconcile() == "alias unset"
    assert world.backend.pins == 0


@pytest.mark.parametrize(
    ("tamper", "status"),
    [
        (lambda h, b: (h, b), 202),
        (lambda h, b: (h, b.replace(b'"2"', b'"3"')), 401),
        (lambda h, b: ({**h, "x-mlflow-signature": "v1,AAAA"}, b), 401),
        (lambda h, b: ({**h, "x-mlflow-signature": "v2," + h["x-mlflow-signature"][3:]}, b), 401),
        (lambda h, b: ({**h, "x-mlflow-delivery-id": "other"}, b), 401),
        (lambda h, b: ({k: v for k, v in h.items() if k != "x-mlflow-signature"}, b), 401),
        (lambda h, b: ({**h, "x-mlflow-signature": "v1,not base64!"}, b), 401),
    ],
    ids=[
        "authentic",
        "body-changed",
        "wrong-sig",
        "wrong-scheme",
        "id-changed",
        "unsigned",
        "junk",
    ],
)
def test_only_an_authentic_delivery_is_accepted(world: World, tamper, status) -> None:
    follow = follower(world)
    headers, body = tamper(*signed(alias_event("2"), delivery="d-1", at=time.time()))
    assert follow.on_webhook(headers, body).status_code == status


def test_a_wrong_secret_is_refused(world: World) -> None:
    headers, body = signed(alias_event("2"), delivery="d-1", at=time.time(), secret="other")
    assert follower(world).on_webhook(headers, body).status_code == 401


@pytest.mark.parametrize("age_s", [301, -301, 86400])
def test_a_stale_delivery_is_refused(world: World, age_s: float) -> None:
    now = 1_800_000_000.0
    headers, body = signed(alias_event("2"), delivery="d-1", at=now - age_s)
    answer = follower(world, now=now).on_webhook(headers, body)
    assert answer.status_code == 401
    assert "ago" in answer.body["detail"]


def test_a_replayed_delivery_is_answered_200_and_ignored(world: World) -> None:
    follow = follower(world)
    headers, body = signed(alias_event("2"), delivery="d-1", at=time.time())
    assert follow.on_webhook(headers, body).status_code == 202
    again = follow.on_webhook(headers, body)
    assert (again.status_code, again.body["status"]) == (200, "ignored")


@pytest.mark.parametrize(
    "event",
    [
        alias_event("2", model="other"),
        alias_event("2", alias="staging"),
        {"entity": "model_version", "action": "created", "data": {"name": "iris", "version": "2"}},
    ],
    ids=["other-model", "other-alias", "other-entity"],
)
def test_events_for_anything_else_are_ignored(world: World, event: dict) -> None:
    follow = follower(world)
    world.smoke.failing.add("3")
    world.registry.aliases["champion"] = "3"
    assert follow.reconcile() == "aborted"
    headers, body = signed(event, delivery="d-1", at=time.time())
    answer = follow.on_webhook(headers, body)
    assert (answer.status_code, answer.body["status"]) == (200, "ignored")
    assert follow.reconcile() == "blocked"  # not taken for an alias move


def test_without_a_secret_the_webhook_is_off(world: World) -> None:
    follow = AliasFollower(
        engine=world.engine(),
        registry=world.registry,
        model="iris",
        alias="champion",
        interval_s=3600,
        verifier=None,
    )
    headers, body = signed(alias_event("2"), delivery="d-1", at=time.time())
    assert follow.on_webhook(headers, body).status_code == 404


@pytest.mark.parametrize("following", [True, False], ids=["following", "not-following"])
def test_only_the_webhook_path_skips_the_token_and_only_when_following(
    world: World, following: bool
) -> None:
    from fastapi.testclient import TestClient

    from controller.api import create_app
    from controller.metrics import ControllerMetrics

    engine = world.engine()
    app = create_app(
        engine,
        token="tok-api",
        metrics=ControllerMetrics(),
        max_body_bytes=65536,
        follower=follower(world) if following else None,
    )
    headers, body = signed(alias_event("2"), delivery="d-api", at=time.time())
    with TestClient(app) as http:
        delivered = http.post("/webhooks/mlflow", content=body, headers=headers)
        forged = http.post(
            "/webhooks/mlflow", content=body, headers={**headers, "x-mlflow-timestamp": "1"}
        )
        switch = http.post("/switch", json={"version": "2"})
    if following:
        assert delivered.status_code == 202
        assert forged.status_code == 401
    else:
        assert delivered.status_code == 401
        assert delivered.json()["error"] == "unauthorized"
    assert switch.status_code == 401
    assert world.backend.pins == 0  # the alias is unset: nothing to release
