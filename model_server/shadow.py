"""Shadow traffic between the two colors: the live one mirrors, the standby compares.

The controller starts a shadow session (`PUT /shadow/mirror` on the live color, naming the
standby's URL); from then on the live model server offers each answered prediction request
(its body and its own predictions) to `ShadowMirror`, which samples it and puts it on a
bounded queue without waiting: a full queue drops the request, so mirroring never adds
latency or errors to a live answer. A background task sends the queue to the standby's
`POST /shadow/compare`, where `ShadowComparer` predicts on the same body and compares its
predictions with the live ones: labels must be equal, numbers within 1 % of each other.
The controller reads `GET /shadow/report` at the end of the window.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from plumbing.auth import bearer_header

log = logging.getLogger("bluegreen.model_server.shadow")

QUEUE_SIZE = 256
SENDERS = 2
_RELATIVE_TOLERANCE = 0.01
_SESSION_TTL_S = 3600.0
_LATENCY_SAMPLES = 100_000  # a 60 s window at ~2k req/s; enough for a p99

Predict = Callable[[bytes, str, str], Awaitable[list[Any]]]
"""(body, content type, endpoint) -> the predictions this server would answer."""


@dataclass(frozen=True)
class Mirrored:
    endpoint: str
    content_type: str
    body: bytes
    live: list[Any]


@dataclass
class MirrorSession:
    session: str
    target: str
    sample: float
    mirrored: int = 0
    dropped: int = 0
    failed: int = 0


class ShadowMirror:
    """The live side: samples answered requests onto a bounded queue and sends them on."""

    def __init__(self, *, token: str | None) -> None:
        self._token = token
        self._session: MirrorSession | None = None
        self._queue: asyncio.Queue[Mirrored] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._senders: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._expires: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        return self._session is not None

    def offer(self, endpoint: str, content_type: str, body: bytes, live: list[Any]) -> None:
        """Called after a live answer was built; never blocks, never raises."""
        session = self._session
        if session is None or (session.sample < 1.0 and random.random() >= session.sample):
            return
        try:
            self._queue.put_nowait(Mirrored(endpoint, content_type, body, live))
        except asyncio.QueueFull:
            session.dropped += 1

    async def start(
        self, *, session: str, target: str, sample: float, max_seconds: float
    ) -> MirrorSession:
        await self.stop()
        self._session = MirrorSession(session=session, target=target.rstrip("/"), sample=sample)
        self._expires = asyncio.get_running_loop().call_later(max_seconds, self._expire)
        self._client = httpx.AsyncClient(timeout=5.0, headers=bearer_header(self._token))
        self._senders = [asyncio.create_task(self._send_forever()) for _ in range(SENDERS)]
        log.info("mirroring %.0f%% of requests to %s (session %s)", sample * 100, target, session)
        return self._session

    async def stop(self) -> MirrorSession | None:
        """End the session: what was not sent yet is dropped, and counted so."""
        ended, self._session = self._session, None
        if self._expires is not None:
            self._expires.cancel()
            self._expires = None
        for task in self._senders:
            task.cancel()
        for task in self._senders:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._senders = []
        while not self._queue.empty():
            self._queue.get_nowait()
            if ended is not None:
                ended.dropped += 1
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        return ended

    def _expire(self) -> None:
        log.warning("shadow session ran past its window; stopping the mirror")
        self._expires = None
        asyncio.get_running_loop().create_task(self.stop())

    async def _send_forever(self) -> None:
        while True:
            item = await self._queue.get()
            session, client = self._session, self._client
            if session is None or client is None:
                continue
            try:
                answer = await client.post(
                    f"{session.target}/shadow/compare",
                    json={
                        "session": session.session,
                        "endpoint": item.endpoint,
                        "content_type": item.content_type,
                        "body": base64.b64encode(item.body).decode(),
                        "live": item.live,
                    },
                )
                if answer.status_code == 200:
                    session.mirrored += 1
                else:
                    session.failed += 1
            except httpx.HTTPError:
                session.failed += 1


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

    async def compare(self, request: dict[str, Any]) -> dict[str, int]:
        session = str(request.get("session", ""))
        stats = self._session(session)
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
            return {"rows": 0, "agreed": 0}
        finally:
            if len(stats.latencies_ms) < _LATENCY_SAMPLES:
                stats.latencies_ms.append((time.perf_counter() - started) * 1000)
        rows, agreed, diffs = compare_predictions(live if isinstance(live, list) else [], ours)
        stats.rows += rows
        stats.agreed_rows += agreed
        stats.relative_diffs.extend(diffs)
        return {"rows": rows, "agreed": agreed}

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
