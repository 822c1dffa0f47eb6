"""The operator's controls around a release, on the engine's in-memory stand-ins.

Pause and promote, abort (paused, running, baking), the pause timeout, a restart while
paused, rollback by version and the one flip path's fence (the `error`/`retryable` pair of
each abort: tests/controller/test_engine.py). End to end on the local stack: tests/release.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from controller.analysis.analyzer import Probes
from controller.domain import Operation, Route
from controller.domain.analysis import AnalysisPolicy, PrometheusCheck, ShadowReport
from controller.engine import ReleaseEngine
from controller.errors import (
    NotPaused,
    ReleaseAborted,
    ReleaseInProgress,
    RollbackUnavailable,
)
from tests.controller.test_analysis import FAST, GOOD, Metrics, Shadow, keep_serving
from tests.support.engine_fakes import World, soon, wait_for_status, wait_for_step

pytestmark = pytest.mark.unit


def engine(world: World, **policy: Any) -> ReleaseEngine:
    return world.engine(policy, probes=world.probes, notifier=world.events)  # type: ignore[attr-defined]


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def publish(self, event: str, operation: Operation) -> None:
        self.seen.append((event, operation.status))

    def names(self) -> list[str]:
        return [event for event, _ in self.seen]


@pytest.fixture
def world() -> World:
    w = World()
    w.probes = Probes(metrics=Metrics(), shadow=Shadow(ShadowReport()))  # type: ignore[attr-defined]
    w.events = Events()  # type: ignore[attr-defined]
    return w


def test_pause_holds_before_the_flip_and_promote_moves_traffic(world: World) -> None:
    release = engine(world)
    paused = release.switch(version="2", pause=True)
    assert paused.status == "paused"
    assert [s.name for s in paused.steps] == ["resolve", "stage", "verify"]
    assert world.router.route == Route(color="blue", revision="1")
    assert world.backend.pinned["green"] == "2"  # the standby serves it on its own endpoint
    assert release.status()["operation"]["status"] == "paused"
    with pytest.raises(ReleaseInProgress, match="paused"):
        release.switch(version="3")
    with pytest.raises(ReleaseInProgress):
        release.rollback()
    done = release.promote()
    assert done.status == "promoted" and done.id == paused.id
    assert [s.name for s in done.steps] == ["resolve", "stage", "verify", "promote"]
    assert world.router.route.color == "green"
    assert world.events.names() == ["release.started", "release.paused", "release.promoted"]  # type: ignore[attr-defined]
    with pytest.raises(NotPaused):
        release.promote()


def test_abort_while_paused_leaves_live_untouched(world: World) -> None:
    release = engine(world)
    release.switch(version="2", pause=True)
    op = release.abort()
    assert (op.status, op.error, op.retryable) == ("aborted", "aborted", False)
    assert "aborted by request" in (op.reason or "")
    assert world.router.route == Route(color="blue", revision="1")
    assert release.switch(version="3").status == "promoted"  # the lock was released


def test_a_pause_not_promoted_in_time_aborts_itself(world: World) -> None:
    release = engine(world, pause_timeout_s=0.2)
    op = release.switch(version="2", pause=True)
    soon("the pause to time out", lambda: release.journal.current is None)
    settled = release.operation(op.id)
    assert settled.status == "aborted" and "paused longer than 0.2 s" in (settled.reason or "")
    assert world.router.route.color == "blue"


def test_a_controller_restarted_while_paused_comes_back_paused(world: World) -> None:
    first = engine(world)
    paused = first.switch(version="2", pause=True)
    world.lock = type(world.lock)()  # the dead process's lock is gone with it
    restarted = engine(world)
    resumed = restarted.recover()
    assert resumed is not None and (resumed.id, resumed.status) == (paused.id, "paused")
    with pytest.raises(ReleaseInProgress):
        restarted.switch(version="3")
    assert restarted.promote().status == "promoted"
    assert world.router.route.color == "green"


def switch_in_background(
    release: ReleaseEngine, **request: Any
) -> tuple[threading.Thread, list[ReleaseAborted]]:
    """`release.switch(**request)` on a thread of its own, started; the list receives the
    abort it raises, so a test can abort it from here and then check what the caller saw."""
    aborted: list[ReleaseAborted] = []

    def run() -> None:
        try:
            release.switch(**request)
        except ReleaseAborted as exc:
            aborted.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, aborted


def test_abort_during_the_shadow_window_ends_it_at_once(world: World) -> None:
    release = engine(world)
    thread, result = switch_in_background(
        release, version="2", analysis=AnalysisPolicy(shadow_s=60, **FAST)
    )
    wait_for_step(release, "shadow")
    started = time.monotonic()
    op = release.abort()
    thread.join(timeout=10)
    assert time.monotonic() - started < 5
    assert (op.status, op.failed_step, op.error) == ("aborted", "shadow", "aborted")
    assert isinstance(result[0], ReleaseAborted)
    assert world.router.route == Route(color="blue", revision="1")


def test_abort_during_stage_stops_the_wait_at_once(world: World) -> None:
    world.backend.slow.add("2")  # would keep the stage waiting its whole 5 s timeout
    release = engine(world)
    thread, outcome = switch_in_background(release, version="2")
    wait_for_step(release, "stage")
    started = time.monotonic()
    op = release.abort()
    thread.join(timeout=10)
    assert time.monotonic() - started < 1
    assert (op.status, op.failed_step, op.error, op.retryable) == (
        "aborted",
        "stage",
        "aborted",
        False,
    )
    assert "aborted by request during stage" in (op.reason or "")
    assert "live traffic stayed on blue" in (op.reason or "")
    assert isinstance(outcome[0], ReleaseAborted)
    assert world.router.route == Route(color="blue", revision="1")
    # The abort was spent on this release: the next one runs to the end.
    world.backend.slow.clear()
    assert release.switch(version="3").status == "promoted"


def test_abort_during_a_bake_rolls_back(world: World) -> None:
    release = engine(world)
    thread = threading.Thread(
        target=lambda: release.switch(version="2", analysis=AnalysisPolicy(bake_s=60, **FAST))
    )
    thread.start()
    wait_for_status(release, "baking")
    op = release.abort()
    thread.join(timeout=10)
    assert (op.status, op.failed_step) == ("rolled_back", "bake")
    assert world.router.route.color == "blue"
    assert "release.rolled_back" in world.events.names()  # type: ignore[attr-defined]


def test_abort_with_nothing_running_is_a_409(world: World) -> None:
    with pytest.raises(NotPaused):
        engine(world).abort()


class LosableLock:
    """A lock whose proof can be lost mid-release, as a Lease is when not renewed."""

    def __init__(self) -> None:
        self.lost = False
        self.inner = threading.Lock()

    def check(self) -> None:
        if self.lost:
            raise ReleaseInProgress("the release lease was taken over")

    @contextmanager
    def hold(self, holder: str) -> Iterator[LosableLock]:
        if not self.inner.acquire(blocking=False):
            raise ReleaseInProgress("held")
        try:
            yield self
        finally:
            self.inner.release()


def test_a_bake_breach_after_the_lease_was_lost_does_not_write_the_route(world: World) -> None:
    lock = LosableLock()
    world.lock = lock  # type: ignore[assignment]
    metrics: Metrics = world.probes.metrics  # type: ignore[attr-defined]
    release = engine(world)
    check = PrometheusCheck(url="http://127.0.0.1:9", query="error_ratio", max_value=0.1)
    outcome: list[Operation] = []
    stop = threading.Event()
    traffic = keep_serving(metrics, "http://green", stop, **GOOD)
    thread = threading.Thread(
        target=lambda: outcome.append(
            release.switch(
                version="2", analysis=AnalysisPolicy(bake_s=60, prometheus=check, **FAST)
            )
        )
    )
    thread.start()
    try:
        wait_for_status(release, "baking")
        lock.lost = True
        metrics.prometheus_value = 0.9  # the breach, seen after the lease is gone
        thread.join(timeout=10)
    finally:
        stop.set()
        traffic.join()
    assert world.router.route.color == "green"  # nothing written by a controller without the lock
    op = outcome[0]
    assert op.status == "promoted" and "lease was taken over" in (op.reason or "")


def test_rollback_by_version_stages_what_the_standby_no_longer_holds(world: World) -> None:
    release = engine(world)
    release.switch(version="2")  # green v2, blue keeps v1
    release.switch(version="3")  # blue v3, green keeps v2
    assert release.rollback_versions() == ["3", "2", "1"]
    pins = world.backend.pins
    op = release.rollback(version="1")
    assert op.status == "rolled_back" and op.target_version == "1"
    assert [s.name for s in op.steps] == ["stage", "verify", "rollback"]
    assert world.backend.pins == pins + 1
    assert world.router.route.color == "green" and world.backend.pinned["green"] == "1"
    assert world.registry.aliases["live"] == "1"
    one_flip = release.rollback(version="3")  # the standby (blue) still holds v3
    assert [s.name for s in one_flip.steps] == ["rollback"]
    assert world.backend.pins == pins + 1


def test_rollback_to_a_version_never_live_names_the_ones_allowed(world: World) -> None:
    release = engine(world)
    release.switch(version="2")
    with pytest.raises(RollbackUnavailable, match="v2, v1"):
        release.rollback(version="3")
    assert world.router.route.color == "green"


def test_within_the_warm_window_rollback_is_one_flip(world: World) -> None:
    release = engine(world, scale_down_delay_s=30)
    release.switch(version="2")
    assert release.status()["standby"]["scale_down_at"] is not None
    op = release.rollback()
    assert [s.name for s in op.steps] == ["rollback"]
    assert world.backend.pinned == {"blue": "1", "green": "2"}


def test_after_the_warm_window_the_standby_is_down_and_rollback_restages_it(
    world: World,
) -> None:
    release = engine(world, scale_down_delay_s=0.1)
    release.switch(version="2")
    # The backend scales down first, then the journal records it: wait for the record.
    soon("the standby scaled down", lambda: release.status()["standby"]["scaled_down"])
    assert world.backend.pinned["blue"] is None
    standby = release.status()["standby"]
    assert (standby["color"], standby["scaled_down"], standby["ready"]) == ("blue", True, False)
    assert world.router.route.color == "green"  # live never moves for a scale-down
    pins = world.backend.pins
    op = release.rollback()
    assert op.status == "rolled_back" and op.target_version == "1"
    assert [s.name for s in op.steps] == ["stage", "verify", "rollback"]
    assert world.backend.pins == pins + 1
    assert (world.router.route.color, world.registry.aliases["live"]) == ("blue", "1")


def test_standby_replicas_keep_a_few_pods_and_rollback_still_restages(world: World) -> None:
    release = engine(world, scale_down_delay_s=0.1, standby_replicas=1)
    release.switch(version="2")
    soon("the standby scaled down", lambda: release.status()["standby"]["scaled_down"])
    assert world.backend.scaled_to == {"blue": 1}
    standby = release.status()["standby"]
    assert (standby["version"], standby["scaled_down"], standby["scale_down_to"]) == ("1", True, 1)
    # Still holding v1, but on fewer pods than live: the rollback scales it back first.
    op = release.rollback()
    assert [s.name for s in op.steps] == ["stage", "verify", "rollback"]
    assert op.steps[0].detail == "blue already holds v1"
    assert world.router.route.color == "blue"
    assert release.status()["standby"]["scaled_down"] is False


def test_the_window_never_scales_down_under_a_running_operation(world: World) -> None:
    release = engine(world, scale_down_delay_s=0.05)
    paused = release.switch(version="2", pause=True)  # holds the lock past the window
    release.open_warm_window()
    time.sleep(0.3)
    assert world.backend.pinned == {"blue": "1", "green": "2"}
    assert release.promote().id == paused.id
