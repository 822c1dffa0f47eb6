"""Shadow traffic between the two colors: the live one mirrors, the standby compares.

The controller starts a shadow session (`PUT /shadow/mirror` on each live pod, naming the
standby's URL and the pod's share of the mirror rate cap); from then on the live model
server offers each answered prediction request (its body and its own predictions) to
`ShadowMirror`, which samples it, holds it to the cap and puts it on a bounded queue
without waiting: over the cap the request is skipped (`skipped_by_cap`), on a full queue it
is dropped (`dropped`), so mirroring never adds latency or errors to a live answer. One
background task sends the queue to the standby's `POST /shadow/compare` in batches, where
`ShadowComparer` predicts on the same bodies and compares its predictions with the live
ones: labels must be equal, numbers within 1 %. The controller reads `DELETE
/shadow/mirror` (what the live side sent) and `GET /shadow/report` at the end of the window.

What a session costs is bounded by design, not by how fast the senders can go: the cap
bounds the mirrored requests per second whatever the live traffic; a batch carries up to
`BATCH_MAX_ITEMS` of them in one POST, because one HTTP exchange costs the live loop more
CPU than serving a small model's request; and the standby compares one batch at a time,
whose predictions share one call of the model (the adaptive batcher merges them).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson

from plumbing.auth import bearer_header

log = logging.getLogger("bluegreen.model_server.shadow")

QUEUE_SIZE = 256
BATCH_MAX_ITEMS = 64
BATCH_MAX_BYTES = 1024 * 1024  # of request bodies: base64 and JSON keep a batch near 1.4 MB
LINGER_S = 0.5
"""How long the sender waits for a batch to fill: at a 50/s cap, two dozen requests a POST."""
BURST_S = 0.25
"""The token bucket holds this many seconds of the cap: random arrivals lose no tokens, and
no second mirrors more than 1.25 times the cap."""
FLUSH_S = 1.0
"""At the end of a session, how long the queue may take to go out (the controller's DELETE
waits for it)."""
MAX_MIRROR_RPS = 10_000.0
"""The largest cap a live pod accepts: beyond what one model server serves, no cap at all."""
_RELATIVE_TOLERANCE = 0.01
_SESSION_TTL_S = 3600.0
_ENDED_KEPT = 16
_LATENCY_SAMPLES = 100_000  # a 60 s window at ~2k req/s; enough for a p99

Predict = Callable[[bytes, str, str], Awaitable[list[Any]]]
"""(body, content type, endpoint) -> the predictions this server would answer."""
MirrorOutcome = Literal["mirrored", "skipped_by_cap", "dropped", "failed"]
ObserveMirror = Callable[[MirrorOutcome, int], None]
"""Told how many offered requests ended each way (the live color's metrics)."""


def _ignore(outcome: MirrorOutcome, count: int) -> None:
    return None


@dataclass(frozen=True)
class Mirrored:
    endpoint: str
    content_type: str
    body: bytes
    live: list[Any]


class TokenBucket:
    """At most `rate` takes a second on average and `burst` at once (a full bucket)."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def bucket_for(max_rps: float, clock: Callable[[], float] = time.monotonic) -> TokenBucket:
    return TokenBucket(max_rps, max(1.0, max_rps * BURST_S), clock)


@dataclass
class MirrorSession:
    session: str
    target: str
    sample: float
    max_rps: float
    mirrored: int = 0
    skipped_by_cap: int = 0
    dropped: int = 0
    failed: int = 0

    def counts(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "max_rps": self.max_rps,
            "mirrored": self.mirrored,
            "skipped_by_cap": self.skipped_by_cap,
            "dropped": self.dropped,
            "failed": self.failed,
        }


class ShadowMirror:
    """The live side: samples answered requests, holds them to the cap, sends them on."""

    def __init__(
        self,
        *,
        token: str | None,
        observe: ObserveMirror = _ignore,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`clock` paces the cap; `transport` carries the batches (None: the network)."""
        self._token = token
        self._observe = observe
        self._clock = clock
        self._transport = transport
        self._session: MirrorSession | None = None
        self._bucket = bucket_for(1.0, clock)
        self._queue: deque[Mirrored] = deque()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._client: httpx.AsyncClient | None = None
        self._expires: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        self._ended: OrderedDict[str, MirrorSession] = OrderedDict()

    @property
    def active(self) -> bool:
        return self._session is not None

    def offer(self, endpoint: str, content_type: str, body: bytes, live: list[Any]) -> None:
        """Called after a live answer was built; never blocks, never raises."""
        session = self._session
        if session is None or (session.sample < 1.0 and random.random() >= session.sample):
            return
        if not self._bucket.take():
            session.skipped_by_cap += 1
            self._observe("skipped_by_cap", 1)
            return
        if len(self._queue) >= QUEUE_SIZE:
            session.dropped += 1
            self._observe("dropped", 1)
            return
        self._queue.append(Mirrored(endpoint, content_type, body, live))
        self._wake.set()

    def counts(self, session: str) -> dict[str, Any] | None:
        """What the live side did in `session` (running or recently ended), if it mirrored it."""
        current = self._session
        if current is not None and current.session == session:
            return current.counts()
        ended = self._ended.get(session)
        return ended.counts() if ended is not None else None

    async def start(
        self, *, session: str, target: str, sample: float, max_rps: float, max_seconds: float
    ) -> MirrorSession:
        async with self._lock:
            await self._stop()
            started = MirrorSession(
                session=session, target=target.rstrip("/"), sample=sample, max_rps=max_rps
            )
            self._bucket = bucket_for(max_rps, self._clock)
            self._wake, self._closing = asyncio.Event(), asyncio.Event()
            self._client = httpx.AsyncClient(
                timeout=5.0, headers=bearer_header(self._token), transport=self._transport
            )
            self._sender = asyncio.create_task(self._send_forever(started, self._client))
            self._expires = asyncio.get_running_loop().call_later(max_seconds, self._expire)
            self._session = started
        log.info(
            "mirroring %.0f%% of requests, at most %g a second, to %s (session %s)",
            sample * 100,
            max_rps,
            target,
            session,
        )
        return started

    async def stop(self) -> MirrorSession | None:
        """End the session: the queue goes out within `FLUSH_S`; what does not is dropped,
        and counted so."""
        async with self._lock:
            return await self._stop()

    async def _stop(self) -> MirrorSession | None:
        ended, self._session = self._session, None
        if self._expires is not None:
            self._expires.cancel()
            self._expires = None
        sender, self._sender = self._sender, None
        if sender is not None:
            self._closing.set()
            self._wake.set()
            await asyncio.wait({sender}, timeout=FLUSH_S)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        unsent = len(self._queue) + self._in_flight
        self._queue.clear()
        self._in_flight = 0
        if ended is not None and unsent:
            ended.dropped += unsent
            self._observe("dropped", unsent)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if ended is not None:
            self._ended[ended.session] = ended
            while len(self._ended) > _ENDED_KEPT:
                self._ended.popitem(last=False)
        return ended

    def _expire(self) -> None:
        log.warning("shadow session ran past its window; stopping the mirror")
        self._expires = None
        asyncio.get_running_loop().create_task(self.stop())

    async def _send_forever(self, session: MirrorSession, client: httpx.AsyncClient) -> None:
        url = f"{session.target}/shadow/compare"
        while True:
            if not self._queue:
                if self._closing.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._queue) < BATCH_MAX_ITEMS and not self._closing.is_set():
                # Let the batch fill: one POST costs the live loop as much as a dozen
                # mirrored requests do inside it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), LINGER_S)
            batch = self._take_batch()
            encoded = [body for body in map(_encoded, batch) if body is not None]
            if len(encoded) < len(batch):  # a prediction JSON cannot carry: that one only
                session.failed += len(batch) - len(encoded)
                self._observe("failed", len(batch) - len(encoded))
            if not encoded:
                continue
            self._in_flight = len(encoded)
            outcome: MirrorOutcome = "failed"
            try:
                answer = await client.post(
                    url,
                    content=_batch_body(session.session, encoded),
                    headers={"content-type": "application/json"},
                )
                if answer.status_code == 200:
                    outcome = "mirrored"
            except httpx.HTTPError as exc:  # counted, never raised: the sender goes on
                log.debug("a shadow batch did not reach the standby: %s", exc)
            self._in_flight = 0
            if outcome == "mirrored":
                session.mirrored += len(encoded)
            else:
                session.failed += len(encoded)
            self._observe(outcome, len(encoded))

    def _take_batch(self) -> list[Mirrored]:
        batch = [self._queue.popleft()]
        size = len(batch[0].body)
        while self._queue and len(batch) < BATCH_MAX_ITEMS:
            size += len(self._queue[0].body)
            if size > BATCH_MAX_BYTES:
                break
            batch.append(self._queue.popleft())
        return batch


def _encoded(item: Mirrored) -> bytes | None:
    """One mirrored request as a `MirroredOne`; None when its predictions are no JSON."""
    try:
        return orjson.dumps(
            {
                "endpoint": item.endpoint,
                "content_type": item.content_type,
                "body": base64.b64encode(item.body).decode(),
                "live": item.live,
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
    except orjson.JSONEncodeError:
        return None


def _batch_body(session: str, encoded: Sequence[bytes]) -> bytes:
    """The batch as `POST /shadow/compare` reads it (`MirroredBatch`)."""
    return b'{"session":%s,"requests":[%s]}' % (orjson.dumps(session), b",".join(encoded))


@dataclass
class CompareSession:
    """What the standby compared in one session."""

    started: float = field(default_factory=time.monotonic)
    compared: int = 0
    rows: int = 0
    agreed_rows: int = 0
    relative_diffs: list[float] = field(default_factory=list)
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def report(self, session: str) -> dict[str, Any]:
        latencies = sorted(self.latencies_ms)
        return {
            "session": session,
            "compared": self.compared,
            "rows": self.rows,
            "agreed_rows": self.agreed_rows,
            "mean_relative_diff": (
                sum(self.relative_diffs) / len(self.relative_diffs) if self.relative_diffs else None
            ),
            "standby_errors": self.errors,
            "standby_p50_ms": _quantile(latencies, 0.5),
            "standby_p99_ms": _quantile(latencies, 0.99),
        }


class ShadowComparer:
    """The standby side: predicts on mirrored requests and compares with the live answers."""

    def __init__(self, predict: Predict) -> None:
        self._predict = predict
        self._sessions: dict[str, CompareSession] = {}
        # One batch at a time, whichever live pod sent it: the live pods' batches queue here
        # instead of running side by side, so the compare's share of the standby stays what
        # the cap lets through.
        self._one_batch = asyncio.Semaphore(1)

    async def compare_batch(
        self, session: str, requests: Sequence[dict[str, Any]]
    ) -> dict[str, int]:
        """Compare a batch of mirrored requests; their predictions run side by side, so the
        adaptive batcher merges them into one call of the model."""
        stats = self._session(session)
        async with self._one_batch:
            results = await asyncio.gather(*(self._compare(stats, one) for one in requests))
        return {
            "compared": len(results),
            "rows": sum(rows for rows, _ in results),
            "agreed": sum(agreed for _, agreed in results),
        }

    async def compare(self, request: dict[str, Any]) -> dict[str, int]:
        """One mirrored request (`session` in it), as a live pod of an earlier release sends."""
        result = await self.compare_batch(str(request.get("session", "")), [request])
        return {"rows": result["rows"], "agreed": result["agreed"]}

    async def _compare(self, stats: CompareSession, request: dict[str, Any]) -> tuple[int, int]:
        live = request.get("live")
        try:
            body = base64.b64decode(str(request.get("body", "")), validate=True)
        except ValueError:
            body = b""
        started = time.perf_counter()
        stats.compared += 1
        try:
            ours = await self._predict(
                body, str(request.get("content_type", "")), str(request.get("endpoint", ""))
            )
        except Exception as exc:  # the standby's own failure is what this step measures
            stats.errors += 1
            log.info("shadow request failed on the standby: %s", exc)
            return 0, 0
        finally:
            if len(stats.latencies_ms) < _LATENCY_SAMPLES:
                stats.latencies_ms.append((time.perf_counter() - started) * 1000)
        rows, agreed, diffs = compare_predictions(live if isinstance(live, list) else [], ours)
        stats.rows += rows
        stats.agreed_rows += agreed
        stats.relative_diffs.extend(diffs)
        return rows, agreed

    def report(self, session: str) -> dict[str, Any]:
        return self._session(session).report(session)

    def _session(self, session: str) -> CompareSession:
        now = time.monotonic()
        for old in [k for k, v in self._sessions.items() if now - v.started > _SESSION_TTL_S]:
            del self._sessions[old]
        return self._sessions.setdefault(session, CompareSession())


def compare_predictions(live: list[Any], ours: list[Any]) -> tuple[int, int, list[float]]:
    """(rows, rows that agree, relative differences of numeric rows)."""
    rows = max(len(live), len(ours))
    agreed = 0
    diffs: list[float] = []
    for theirs, mine in zip(live, ours, strict=False):
        if _is_number(theirs) and _is_number(mine) and not _is_label(theirs, mine):
            diff = abs(float(mine) - float(theirs)) / max(abs(float(theirs)), 1e-12)
            diffs.append(diff)
            agreed += diff <= _RELATIVE_TOLERANCE
        else:
            agreed += theirs == mine
    return rows, agreed, diffs


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_label(a: Any, b: Any) -> bool:
    """Integer class labels compare as labels (equal or not), never as relative distances."""
    return isinstance(a, int) and isinstance(b, int)


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)
