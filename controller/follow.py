"""Follow a registry alias: whatever version it points at is released, once.

Two ways in lead to the same reconcile: MLflow's signed registry webhooks
(`POST /webhooks/mlflow`, checked here by `WebhookVerifier`) wake it at once, and a timer
runs it every `BLUEGREEN_FOLLOW_INTERVAL_S` so a lost delivery or a restart changes nothing.
Built by `controller.wiring` when `BLUEGREEN_FOLLOW_ALIAS` is set; talks only to the engine
(`switch`, `status`) and the `ModelRegistry` port, and writes each outcome back to the
version as the tag `bluegreen.release`.

A version whose release failed (aborted, rolled back) is not tried again until the alias
moves: to another version, or set again (a webhook delivery for the alias).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from controller.domain import Operation
from controller.errors import BluegreenError, ReleaseAborted, ReleaseInProgress
from controller.ports import ModelRegistry

log = logging.getLogger("bluegreen.follow")

PROMOTED = "promoted"
ABORTED = "aborted"
ROLLED_BACK = "rolled back"
MAX_AGE_S = 300.0
"""Deliveries signed longer ago (or further ahead) than this are refused."""
BUSY_RETRY_S = 5.0
"""How soon to look again when another operation held the release lock."""


class Releaser(Protocol):
    """What the follower needs of the release engine."""

    def switch(self, *, version: str | None = None, wait: bool = True) -> Operation: ...

    def status(self) -> dict[str, Any]: ...


# -- the webhook -------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """A verified delivery's answer: the HTTP status and body to send back."""

    status_code: int
    body: dict[str, str]


class WebhookVerifier:
    """Checks MLflow's `X-MLflow-Signature: v1,<base64 HMAC-SHA256>` over
    `{delivery_id}.{timestamp}.{payload}`, the timestamp's age, and replays by delivery id."""

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret.encode()
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, headers: dict[str, str], payload: bytes) -> str | None:
        """None for a fresh, authentic delivery; else why it is refused (`replayed` for a
        delivery id seen before, which the caller answers 200 so MLflow stops retrying)."""
        delivery_id = headers.get("x-mlflow-delivery-id", "")
        stamp = headers.get("x-mlflow-timestamp", "")
        signature = headers.get("x-mlflow-signature", "")
        if not (delivery_id and stamp and signature):
            return "missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or X-MLflow-Signature"
        version, _, given = signature.partition(",")
        try:
            given_digest = base64.b64decode(given, validate=True)
            signed_at = int(stamp)
        except (binascii.Error, ValueError):
            return "malformed signature or timestamp"
        signed = delivery_id.encode() + b"." + stamp.encode() + b"." + payload
        expected = hmac.new(self._secret, signed, hashlib.sha256).digest()
        # Compare before anything else can leak timing about the secret.
        if version != "v1" or not hmac.compare_digest(expected, given_digest):
            return "signature does not match"
        now = self._clock()
        if abs(now - signed_at) > MAX_AGE_S:
            return f"signed {int(now - signed_at)} s ago; older than {int(MAX_AGE_S)} s"
        with self._lock:
            # Ids older than the age limit need not be kept: the timestamp refuses them.
            while self._seen and next(iter(self._seen.values())) < now - 2 * MAX_AGE_S:
                self._seen.popitem(last=False)
            if delivery_id in self._seen:
                return "replayed"
            self._seen[delivery_id] = now
        return None


# -- the follower ------------------------------------------------------------------------


class AliasFollower:
    """Releases the version `alias` points at; one background thread does every release."""

    def __init__(
        self,
        *,
        engine: Releaser,
        registry: ModelRegistry,
        model: str,
        alias: str,
        interval_s: float,
        verifier: WebhookVerifier | None,
    ) -> None:
        self._engine = engine
        self._registry = registry
        self.model = model
        self.alias = alias
        self._interval_s = interval_s
        self._verifier = verifier
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._state = threading.Lock()
        self._thread: threading.Thread | None = None
        self._seen: str | None = None  # the version the alias pointed at last time we looked
        self._alias_set = False  # a delivery said the alias was set (again) since we looked
        self._blocked: str | None = None  # failed; not retried until the alias moves
        self._pending: str | None = None  # met a running operation; owed another attempt

    # -- the two ways in -----------------------------------------------------------------

    def on_webhook(self, headers: dict[str, str], payload: bytes) -> Delivery:
        """Answer one MLflow delivery; a relevant one wakes the reconcile at once."""
        if self._verifier is None:
            return Delivery(
                404, {"error": "not_found", "detail": "BLUEGREEN_MLFLOW_WEBHOOK_SECRET is unset"}
            )
        problem = self._verifier.check(headers, payload)
        if problem == "replayed":
            return Delivery(200, {"status": "ignored", "detail": "delivery seen before"})
        if problem is not None:
            log.warning("webhook delivery refused: %s", problem)
            return Delivery(401, {"error": "unauthorized", "detail": problem})
        try:
            event = json.loads(payload)
            entity, action, data = event["entity"], event["action"], event["data"]
            name, alias = data["name"], data.get("alias")
        except (ValueError, KeyError, TypeError):
            return Delivery(
                400, {"error": "bad_request", "detail": "not an MLflow webhook payload"}
            )
        if entity != "model_version_alias" or name != self.model or alias != self.alias:
            return Delivery(200, {"status": "ignored", "detail": f"{entity}.{action}"})
        log.info("webhook: %s@%s %s (v%s)", name, alias, action, data.get("version"))
        with self._state:
            self._alias_set = action == "created"
        self._wake.set()
        return Delivery(202, {"status": "accepted", "detail": f"{name}@{alias} {action}"})

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="follow-alias", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait_s = self._interval_s
            try:
                if self.reconcile() == "busy":
                    wait_s = min(wait_s, BUSY_RETRY_S)
            except Exception:  # the loop must outlive any one failure
                log.exception("following %s@%s failed; trying again", self.model, self.alias)
            self._wake.wait(wait_s)
            self._wake.clear()

    # -- the reconcile -------------------------------------------------------------------

    def reconcile(self) -> str:
        """One look at the alias, releasing its version if it needs it; what happened."""
        try:
            target = self._registry.alias_target(self.model, self.alias)
        except BluegreenError as exc:
            log.warning("cannot read %s@%s: %s", self.model, self.alias, exc.detail)
            return "registry unavailable"
        if target is None:
            with self._state:
                self._seen = ""  # seen unset: whatever it is set to next is a move
            return "alias unset"
        version, tag = target
        with self._state:
            moved = (
                (self._seen is not None and version != self._seen)
                or self._alias_set
                or self._pending == version
            )
            if moved:
                self._blocked = None  # the alias moved: a failed version may be tried again
            self._seen, self._alias_set, self._pending = version, False, None
        live = self._engine.status()["live"].get("version")
        if live == version:
            if tag != PROMOTED:
                self._tag(version, PROMOTED)
            return "live"
        with self._state:
            if self._blocked == version:
                return "blocked"
        if not moved and tag is not None:
            # Released before (failed, paused, or promoted and since replaced) and the alias
            # did not move since: leave it until it does; a restart changes nothing.
            if tag == PROMOTED:
                self._tag(version, f"{ROLLED_BACK}: v{live} is live instead")
            with self._state:
                self._blocked = version
            return "blocked"
        return self._release(version)

    def _release(self, version: str) -> str:
        log.info("%s@%s points at v%s: releasing it", self.model, self.alias, version)
        try:
            op = self._engine.switch(version=version, wait=True)
        except ReleaseInProgress:
            with self._state:
                self._pending = version  # still owed an attempt, whatever its tag says
            return "busy"
        except ReleaseAborted as exc:
            op = Operation.model_validate(exc.operation)
            if exc.retryable and op.failed_step == "resolve":
                return "unavailable"  # the registry was down: nothing was tried yet
        except BluegreenError as exc:
            if exc.retryable:
                return "unavailable"
            self._tag(version, f"{ABORTED}: {exc.detail}")
            with self._state:
                self._blocked = version
            return "failed"
        outcome = describe(op)
        self._tag(version, outcome)
        if outcome != PROMOTED:
            with self._state:
                self._blocked = version
        return op.status

    def _tag(self, version: str, outcome: str) -> None:
        try:
            self._registry.tag_release(self.model, version=version, outcome=outcome)
        except BluegreenError as exc:
            log.warning("could not tag v%s %r: %s", version, outcome, exc.detail)


def describe(op: Operation) -> str:
    """The `bluegreen.release` tag for what the release returned."""
    if op.status in ("promoted", "unchanged"):
        return PROMOTED
    where = f"{op.failed_step}: " if op.failed_step else ""
    if op.status == "aborted":
        return f"{ABORTED}: {where}{op.reason or op.error or 'no reason given'}"
    if op.status == "rolled_back":
        return f"{ROLLED_BACK}: {where}{op.reason or 'no reason given'}"
    return f"{op.status}: operation {op.id}"  # paused: tagged promoted once it is live
