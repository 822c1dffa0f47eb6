"""The shadow's cost bound, in this process: the mirror's rate cap (a token bucket on a clock
the test moves), its batches to the standby, the flush at the session's end, and the
standby comparing one batch at a time. The standby is an `httpx.MockTransport`;
tests/model_server/test_shadow.py runs the same on real model servers."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from typing import Any

import httpx
import pytest

from model_server.shadow import (
    BATCH_MAX_ITEMS,
    BURST_S,
    FLUSH_S,
    MirrorOutcome,
    ShadowComparer,
    ShadowMirror,
    TokenBucket,
    bucket_for,
)

pytestmark = pytest.mark.unit

ROW = b"[[5.1, 3.5, 1.4, 0.2]]"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Standby:
    """Counts what reaches `POST /shadow/compare`; `hang` never answers, `refuse` answers
    503 that many times first."""

    def __init__(self, *, hang: bool = False, refuse: int = 0) -> None:
        self.hang = hang
        self.refuse = refuse
        self.posts: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.hang:
            await asyncio.sleep(3600)
        if self.refuse:
            self.refuse -= 1
            return httpx.Response(503)
        body = json.loads(request.content)
        self.posts.append(body)
        return httpx.Response(200, json={"compared": len(body["requests"])})

    @property
    def items(self) -> int:
        return sum(len(post["requests"]) for post in self.posts)


def _mirror(standby: Standby, clock: Clock, outcomes: Counter[str]) -> ShadowMirror:
    def observe(outcome: MirrorOutcome, count: int) -> None:
        outcomes[outcome] += count

    return ShadowMirror(
        token="t", observe=observe, clock=clock, transport=httpx.MockTransport(standby)
    )


def _burst(mirror: ShadowMirror, clock: Clock, *, per_s: float, seconds: float) -> int:
    """Offer `per_s` requests a second for `seconds` of the test's clock; how many."""
    offered = int(per_s * seconds)
    for _ in range(offered):
        mirror.offer("/predict", "application/json", ROW, [0])
        clock.now += 1 / per_s
    return offered


def test_the_bucket_lets_through_the_cap_a_second_and_one_burst() -> None:
    clock = Clock()
    bucket = bucket_for(50, clock)
    assert bucket.burst == 50 * BURST_S
    taken = 0
    for _ in range(2000):  # 1000 a second for 2 s: 20 times the cap
        taken += bucket.take()
        clock.now += 0.001
    assert 50 * 2 <= taken <= 50 * 2 + bucket.burst


def test_the_bucket_refills_no_further_than_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    clock.now += 3600  # an hour idle saves no more than the burst
    assert sum(bucket.take() for _ in range(100)) == 3
    clock.now += 0.1
    assert bucket.take() and not bucket.take()


def test_a_burst_above_the_cap_mirrors_the_cap_and_counts_the_rest_as_skipped() -> None:
    async def run() -> None:
        clock, standby, outcomes = Clock(), Standby(), Counter[str]()
        mirror = _mirror(standby, clock, outcomes)
        await mirror.start(
            session="s", target="http://standby", sample=1.0, max_rps=20, max_seconds=60
        )
        offered = _burst(mirror, clock, per_s=400, seconds=3)
        ended = await mirror.stop()
        assert ended is not None
        bound = 20 * 3 + 20 * BURST_S
        assert 20 * 3 <= ended.mirrored <= bound
        assert ended.skipped_by_cap == offered - ended.mirrored
        assert (ended.dropped, ended.failed) == (0, 0)
        # what was mirrored reached the standby, in batches rather than one POST each
        assert standby.items == ended.mirrored
        assert len(standby.posts) <= -(-ended.mirrored // BATCH_MAX_ITEMS) + 1
        # and the same counts reach the metrics
        assert outcomes == {"mirrored": ended.mirrored, "skipped_by_cap": ended.skipped_by_cap}
        assert mirror.counts("s") == ended.counts()

    asyncio.run(run())


def test_sampling_comes_before_the_cap() -> None:
    """Only sampled requests spend tokens or count as skipped."""

    async def run() -> None:
        clock, standby = Clock(), Standby()
        mirror = _mirror(standby, clock, Counter())
        await mirror.start(
            session="s", target="http://standby", sample=0.1, max_rps=5, max_seconds=60
        )
        offered = _burst(mirror, clock, per_s=1000, seconds=4)
        ended = await mirror.stop()
        assert ended is not None
        assert ended.mirrored <= 5 * 4 + 5 * BURST_S + 1
        sampled = ended.mirrored + ended.skipped_by_cap
        assert 0.05 * offered < sampled < 0.15 * offered

    asyncio.run(run())


def test_the_end_of_a_session_flushes_the_queue() -> None:
    async def run() -> None:
        clock, standby = Clock(), Standby()
        mirror = _mirror(standby, clock, Counter())
        await mirror.start(
            session="s", target="http://standby", sample=1.0, max_rps=100, max_seconds=60
        )
        _burst(mirror, clock, per_s=10, seconds=1)  # under the cap, under a batch
        ended = await mirror.stop()  # at once: the sender is still waiting for more
        assert ended is not None
        assert (ended.mirrored, ended.skipped_by_cap, ended.dropped) == (10, 0, 0)
        assert standby.items == 10
        first = standby.posts[0]["requests"][0]
        assert base64.b64decode(first["body"]) == ROW and first["live"] == [0]

    asyncio.run(run())


def test_a_standby_that_never_answers_costs_a_flush_and_drops() -> None:
    async def run() -> None:
        clock, standby, outcomes = Clock(), Standby(hang=True), Counter[str]()
        mirror = _mirror(standby, clock, outcomes)
        await mirror.start(
            session="s", target="http://standby", sample=1.0, max_rps=10_000, max_seconds=60
        )
        offered = _burst(mirror, clock, per_s=1000, seconds=0.4)
        await asyncio.sleep(0)  # the sender takes its first batch and hangs on it
        loop = asyncio.get_running_loop()
        began = loop.time()
        ended = await mirror.stop()
        assert loop.time() - began < FLUSH_S + 0.5
        assert ended is not None
        assert ended.mirrored == 0
        assert ended.dropped == offered  # queued, in flight or over the queue: none sent
        assert outcomes == {"dropped": offered}

    asyncio.run(run())


def test_a_request_that_cannot_be_sent_fails_alone() -> None:
    async def run() -> None:
        clock, standby = Clock(), Standby()
        mirror = _mirror(standby, clock, Counter())
        await mirror.start(
            session="s", target="http://standby", sample=1.0, max_rps=100, max_seconds=60
        )
        mirror.offer("/predict", "application/json", ROW, [object()])  # no JSON for it
        mirror.offer("/predict", "application/json", ROW, [0])
        ended = await mirror.stop()  # one batch: the bad request fails alone
        assert ended is not None
        assert (ended.mirrored, ended.failed, ended.dropped) == (1, 1, 0)
        assert standby.items == 1
        assert mirror.active is False

    asyncio.run(run())


def test_a_refused_batch_is_counted_failed_and_the_next_goes_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("model_server.shadow.LINGER_S", 0.0)  # a batch a request

    async def run() -> None:
        clock, standby = Clock(), Standby(refuse=1)
        mirror = _mirror(standby, clock, Counter())
        await mirror.start(
            session="s", target="http://standby", sample=1.0, max_rps=100, max_seconds=60
        )
        for _ in range(3):
            mirror.offer("/predict", "application/json", ROW, [0])
            await asyncio.sleep(0.05)
        ended = await mirror.stop()
        assert ended is not None
        assert (ended.mirrored, ended.failed) == (2, 1)

    asyncio.run(run())


def test_the_standby_compares_one_batch_at_a_time() -> None:
    running = 0
    most = 0

    async def predict(body: bytes, content_type: str, endpoint: str) -> list[Any]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return [0, 1, 2]

    def batch(n: int) -> list[dict[str, Any]]:
        one = {"endpoint": "/predict", "body": base64.b64encode(ROW).decode(), "live": [0, 1, 1]}
        return [one] * n

    async def run() -> list[dict[str, int]]:
        comparer = ShadowComparer(predict)
        return list(
            await asyncio.gather(
                comparer.compare_batch("s", batch(5)), comparer.compare_batch("s", batch(5))
            )
        )

    results = asyncio.run(run())
    # a batch's predictions run side by side (the batcher merges them), two batches never
    assert most == 5
    assert results == [{"compared": 5, "rows": 15, "agreed": 10}] * 2
