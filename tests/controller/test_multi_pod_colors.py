"""The engine with a backend whose colors run several pods (as on Kubernetes).

The engine's own logic, with the in-memory fakes of `tests/support/engine_fakes.py` plus a
`ColorPods` fake: two pods per color. The Kubernetes adapters behind the same port are
exercised in `tests/kubernetes/` (EndpointSlices, replicas, the Lease fence).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from controller.domain import Color, Golden, ResolvedVersion
from controller.engine import ReleaseEngine
from controller.errors import ReleaseAborted, ReleaseInProgress, VerifyFailed
from controller.ports import Cancel
from tests.support.engine_fakes import Smoke, World


class Pods:
    """Two ready pods per color; records the replica matching it was asked for."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.urls: dict[Color, list[str]] = {
            "blue": ["http://10.0.0.1:8080", "http://10.0.0.2:8080"],
            "green": ["http://10.0.1.1:8080", "http://10.0.1.2:8080"],
        }
        self.matched: list[tuple[Color, Color, str]] = []  # (color, like, live then)

    def ready_endpoints(self, color: Color) -> list[str]:
        return list(self.urls[color])

    def match_replicas(
        self, color: Color, *, like: Color, timeout: float, cancel: Cancel = None
    ) -> str | None:
        self.matched.append((color, like, self.world.router.route.color))
        return None


class PickySmoke(Smoke):
    """Verifies per endpoint; a pod in `bad` still serves the old version."""

    def __init__(self) -> None:
        super().__init__()
        self.verified: list[str] = []
        self.bad: set[str] = set()

    def verify(self, endpoint: str, *, target: ResolvedVersion, golden: Golden | None) -> str:
        self.verified.append(endpoint)
        if endpoint in self.bad:
            raise VerifyFailed(f"{endpoint} serves v1, expected v{target.version}")
        return f"v{target.version}: ok"


def engine_with_pods(world: World) -> tuple[ReleaseEngine, Pods]:
    """`World.engine`, with the optional `ColorPods` port wired in as `wiring` does."""
    pods = Pods(world)
    return world.engine(pods=pods), pods


@pytest.fixture
def world() -> World:
    world = World()
    world.smoke = PickySmoke()
    return world


def smoke(world: World) -> PickySmoke:
    assert isinstance(world.smoke, PickySmoke)
    return world.smoke


def test_verify_smoke_tests_every_ready_pod_of_the_standby(world: World) -> None:
    engine, pods = engine_with_pods(world)
    op = engine.switch(version="2")
    assert op.status == "promoted"
    assert smoke(world).verified == pods.urls["green"]
    assert op.steps[2].detail == "2 pods, each v2: ok"


def test_one_stale_pod_fails_the_verify_step(world: World) -> None:
    """Through the Service, a keep-alive connection would have reached one pod, maybe the
    good one; every pod is tested, so the stale one stops the release."""
    engine, pods = engine_with_pods(world)
    smoke(world).bad = {pods.urls["green"][1]}
    with pytest.raises(ReleaseAborted) as caught:
        engine.switch(version="2")
    assert caught.value.operation["failed_step"] == "verify"
    assert world.router.route.color == "blue"


def test_every_pod_of_both_colors_is_told_its_role_after_the_flip(world: World) -> None:
    engine, pods = engine_with_pods(world)
    engine.switch(version="2")
    told = dict(world.smoke.announced)
    assert {url: told[url] for url in pods.urls["green"]} == dict.fromkeys(pods.urls["green"], True)
    assert {url: told[url] for url in pods.urls["blue"]} == dict.fromkeys(pods.urls["blue"], False)


def test_the_role_keeper_heals_a_pod_that_missed_its_notice(world: World) -> None:
    engine, pods = engine_with_pods(world)
    engine.switch(version="2")
    world.smoke.announced.clear()
    told = engine.roles.refresh()
    assert told == {"blue": 2, "green": 2}
    assert sorted(world.smoke.announced) == sorted(
        [(u, True) for u in pods.urls["green"]] + [(u, False) for u in pods.urls["blue"]]
    )


def test_the_standby_is_matched_to_the_live_replicas_before_the_flip(world: World) -> None:
    engine, pods = engine_with_pods(world)
    engine.switch(version="2")
    # after staging, and again right before the flip (the live color may have autoscaled)
    assert pods.matched == [("green", "blue", "blue"), ("green", "blue", "blue")]


class LostLease:
    """A lock whose proof fails the fence: the lease was taken over during the release."""

    class Handle:
        def check(self) -> None:
            raise ReleaseInProgress("lost the release lock (now held by ctl-b); not flipping")

    @contextmanager
    def hold(self, holder: str) -> Iterator[LostLease.Handle]:
        yield LostLease.Handle()


def test_a_lost_lock_refuses_the_flip(world: World) -> None:
    world.lock = LostLease()  # type: ignore[assignment]
    engine, _ = engine_with_pods(world)
    with pytest.raises(ReleaseAborted) as caught:
        engine.switch(version="2")
    assert caught.value.operation["failed_step"] == "promote"
    assert "not flipping" in caught.value.detail
    assert world.router.route.color == "blue"


def test_pods_port_is_optional(world: World) -> None:
    """Without it (one process per color) the color's endpoint is its one pod."""
    op = world.engine().switch(version="2")
    assert op.status == "promoted"
    assert smoke(world).verified == ["http://green"]


def test_a_controller_rereads_the_journal_once_it_holds_the_lock(world: World) -> None:
    """Issue 12 item 9: controller A loaded the journal at start; B released since. Once A
    takes the lock it works from B's journal (history, rollback point), not its stale copy."""
    a, b = world.engine(), world.engine()  # both loaded the same (empty) journal
    released = b.switch(version="2")
    assert released.status == "promoted"
    op = a.rollback()  # A knew no earlier release; the stored journal does
    assert op.status == "rolled_back", op.reason
    assert world.router.route.color == "blue"
    assert [o.id for o in a.history()] == [op.id, released.id]
