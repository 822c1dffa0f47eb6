"""Release events to webhooks: signed JSON POSTs, delivered off the release's path.

The engine calls `WebhookNotifier.publish` (the `Notifier` port), which only queues; one
daemon thread delivers each event to every URL with the shared retry policy and a
per-request timeout, so a receiver that is down, slow or hanging never delays or fails a
release. The body is `{"event", "operation"}` signed `X-Bluegreen-Signature: sha256=<hex
HMAC-SHA256 of the body>` with the notify secret. A URL written `slack+https://...` gets
a Slack incoming-webhook message instead (Slack does not check our signature).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
from dataclasses import dataclass

import httpx

from controller.domain import Operation
from plumbing.retry import retry_transient

log = logging.getLogger("bluegreen.notify")

SIGNATURE_HEADER = "X-Bluegreen-Signature"
_SLACK_PREFIX = "slack+"
_QUEUE_LIMIT = 1000  # a receiver down for long drops the oldest news, never blocks a release


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for `body`: what a receiver recomputes and compares."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _Event:
    event: str
    operation: Operation


class _Temporary(Exception):
    """A delivery that may succeed when tried again (a 5xx, a timeout, a refused connection)."""


class WebhookNotifier:
    def __init__(
        self,
        urls: list[str],
        *,
        secret: str | None,
        timeout_s: float = 5.0,
        attempts: int = 4,
        max_wait_s: float = 5.0,
    ) -> None:
        self._urls = urls
        self._secret = secret
        self._attempts = attempts
        self._max_wait_s = max_wait_s
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._queue: queue.Queue[_Event | None] = queue.Queue(maxsize=_QUEUE_LIMIT)
        self._thread = threading.Thread(target=self._deliver_all, name="notify", daemon=True)
        self._thread.start()

    def publish(self, event: str, operation: Operation) -> None:
        try:
            self._queue.put_nowait(_Event(event, operation))
        except queue.Full:
            log.error("notification queue full: %s for %s dropped", event, operation.id)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (bounded), then stop."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout=timeout_s)

    def _deliver_all(self) -> None:
        while (item := self._queue.get()) is not None:
            for url in self._urls:
                try:
                    self._deliver(url, item)
                except Exception as exc:  # delivery never takes the thread down
                    log.warning(
                        "notification %s for %s not delivered to %s: %s",
                        item.event,
                        item.operation.id,
                        _shown(url),
                        exc,
                    )

    def _deliver(self, url: str, item: _Event) -> None:
        slack = url.startswith(_SLACK_PREFIX)
        target = url.removeprefix(_SLACK_PREFIX)
        body = json.dumps(
            _slack_message(item) if slack else {"event": item.event, **_payload(item)},
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "bluegreen-controller"}
        if self._secret and not slack:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        for attempt in retry_transient(
            lambda exc: isinstance(exc, _Temporary),
            attempts=self._attempts,
            first_wait_s=0.5,
            max_wait_s=self._max_wait_s,
            log=log,
            what=f"notification {item.event} to {_shown(url)}",
        ):
            with attempt:
                self._post(target, body, headers)

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            answer = self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _Temporary(f"{type(exc).__name__}") from None
        if answer.status_code >= 500 or answer.status_code == 429:
            raise _Temporary(f"answered {answer.status_code}")
        if answer.status_code >= 300:
            log.warning("notification refused by %s: %s", _shown(url), answer.status_code)


def _payload(item: _Event) -> dict[str, object]:
    return {"operation": item.operation.model_dump(mode="json")}


def _slack_message(item: _Event) -> dict[str, str]:
    op = item.operation
    moved = f"{op.from_color} (v{op.from_version}) -> {op.to_color} (v{op.target_version})"
    why = f": {op.reason}" if op.reason else ""
    return {"text": f"bluegreen {op.model}: {item.event} {op.kind} {op.id}, {moved}{why}"}


def _shown(url: str) -> str:
    """A URL fit for a log: scheme and host only (webhook paths often hold a secret)."""
    parsed = httpx.URL(url.removeprefix(_SLACK_PREFIX))
    return f"{parsed.scheme}://{parsed.host}{':' + str(parsed.port) if parsed.port else ''}"
