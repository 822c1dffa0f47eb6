"""Release notifications over real HTTP: signed, retried, and never on the release's path."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import pytest

from controller.domain import Operation, OperationId
from controller.notify import SIGNATURE_HEADER, WebhookNotifier
from tests.support.engine_fakes import World
from tests.support.http_servers import WebhookReceiver

pytestmark = pytest.mark.unit

SECRET = "s3cret-notify-key"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver("/hook/secret-path")
    yield r
    r.close()


def op() -> Operation:
    return Operation(id=OperationId("sw-1"), kind="switch", model="iris", status="promoted")


def test_each_event_is_posted_signed(receiver: WebhookReceiver) -> None:
    notifier = WebhookNotifier([receiver.url], secret=SECRET)
    notifier.publish("release.promoted", op())
    receiver.wait(1)
    headers, body = receiver.received[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    payload = json.loads(body)
    assert payload["event"] == "release.promoted"
    assert payload["operation"]["id"] == "sw-1"
    notifier.close()


def test_a_receiver_that_fails_is_retried_with_backoff(receiver: WebhookReceiver) -> None:
    receiver.fail_first = 2
    notifier = WebhookNotifier([receiver.url], secret=SECRET, max_wait_s=0.2)
    notifier.publish("release.aborted", op())
    receiver.wait(1)
    assert json.loads(receiver.received[0][1])["event"] == "release.aborted"
    notifier.close()


def test_slack_urls_get_a_slack_message(receiver: WebhookReceiver) -> None:
    notifier = WebhookNotifier(["slack+" + receiver.url], secret=SECRET)
    notifier.publish("release.rolled_back", op())
    receiver.wait(1)
    headers, body = receiver.received[0]
    assert set(json.loads(body)) == {"text"}
    assert "release.rolled_back" in json.loads(body)["text"]
    assert SIGNATURE_HEADER not in headers
    notifier.close()


def test_a_hanging_receiver_never_delays_a_release(receiver: WebhookReceiver) -> None:
    receiver.hang_s = 3.0
    world = World()
    notifier = WebhookNotifier([receiver.url], secret=SECRET, timeout_s=10)
    release = world.engine(notifier=notifier)
    started = time.monotonic()
    assert release.switch(version="2").status == "promoted"
    assert release.rollback().status == "rolled_back"
    assert time.monotonic() - started < 1.0
    receiver.hang_s = 0.0
    receiver.wait(3, timeout=30)  # started, promoted, rolled_back
    events = [json.loads(body)["event"] for _, body in receiver.received]
    assert events[:2] == ["release.started", "release.promoted"]
    assert "release.rolled_back" in events
