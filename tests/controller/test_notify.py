"""Release notifications over real HTTP: signed, retried, and never on the release's path."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.domain import Operation, OperationId
from controller.notify import SIGNATURE_HEADER, WebhookNotifier
from tests.support.engine_fakes import World

pytestmark = pytest.mark.unit

SECRET = "s3cret-notify-key"


class Receiver:
    """A real HTTP server on loopback recording what it is sent; can fail or hang on demand."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        self.hang_s = 0.0
        self.got = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.hang_s:
                    time.sleep(receiver.hang_s)
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append((dict(self.headers), body))
                receiver.got.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-path"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"got {len(self.received)} of {count}"
            time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def op() -> Operation:
    return Operation(id=OperationId("sw-1"), kind="switch", model="iris", status="promoted")


def test_each_event_is_posted_signed(receiver: Receiver) -> None:
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


def test_a_receiver_that_fails_is_retried_with_backoff(receiver: Receiver) -> None:
    receiver.fail_first = 2
    notifier = WebhookNotifier([receiver.url], secret=SECRET, max_wait_s=0.2)
    notifier.publish("release.aborted", op())
    receiver.wait(1)
    assert json.loads(receiver.received[0][1])["event"] == "release.aborted"
    notifier.close()


def test_slack_urls_get_a_slack_message(receiver: Receiver) -> None:
    notifier = WebhookNotifier(["slack+" + receiver.url], secret=SECRET)
    notifier.publish("release.rolled_back", op())
    receiver.wait(1)
    headers, body = receiver.received[0]
    assert set(json.loads(body)) == {"text"}
    assert "release.rolled_back" in json.loads(body)["text"]
    assert SIGNATURE_HEADER not in headers
    notifier.close()


def test_a_hanging_receiver_never_delays_a_release(receiver: Receiver) -> None:
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
