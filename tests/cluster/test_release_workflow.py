"""The operator's controls on a real cluster: pause and promote, abort, and the warm window
(the standby Deployment scaled to zero, then a rollback that stages it again), all under load
through the live Service."""

from __future__ import annotations

import time

from tests.cluster.conftest import ClusterModels
from tests.cluster.load import ROUTE_SETTLES_S, PredictLoad
from tests.cluster.release import ChartRelease


def test_pause_promote_and_abort_under_load(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    release.install_warm(values)
    api = release.controller()
    with PredictLoad(release.live_url()) as load:
        load.wait_for_answers(20)
        paused = api.switch(version=models.other, pause=True)
        assert paused["status"] == "paused", paused
        assert release.live_color() == "blue"  # nothing moved
        assert release.pinned("green") == models.other  # staged and verified
        time.sleep(2)
        held = time.monotonic()
        promoted = api.promote()
        moved = time.monotonic()
        assert promoted["status"] == "promoted" and promoted["id"] == paused["id"], promoted
        time.sleep(ROUTE_SETTLES_S + 1)
        again = api.switch(version=models.good, pause=True)
        assert again["status"] == "paused", again
        aborted = api.abort()
        time.sleep(2)
    assert (aborted["status"], aborted["error"], aborted["retryable"]) == (
        "aborted",
        "aborted",
        False,
    )
    assert not load.failures(), load.failures()[:5]
    assert set(load.versions(until=held)) == {models.good}
    assert set(load.versions(since=moved + ROUTE_SETTLES_S)) == {models.other}
    assert release.live_color() == "green"


def test_the_standby_scales_to_zero_after_the_window_and_rollback_restages_it(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    values.setdefault("controller", {})["scaleDownDelaySeconds"] = 5
    release.install(values)
    release.wait_color_ready("blue", 2)
    # The window opens when the controller starts: the standby (green) may be parked already;
    # the release below stages into it either way.
    api = release.controller()
    with PredictLoad(release.live_url()) as load:
        load.wait_for_answers(20)
        assert api.switch(version=models.other)["status"] == "promoted"
        deadline = time.monotonic() + 90
        while release.replicas("blue") != 0:
            assert time.monotonic() < deadline, "the standby was never scaled down"
            time.sleep(1)
        assert api.status()["standby"]["scaled_down"] is True
        back = api.rollback()
        rolled = time.monotonic()
        time.sleep(ROUTE_SETTLES_S + 2)
    assert back["status"] == "rolled_back", back
    assert [s["name"] for s in back["steps"]] == ["stage", "verify", "rollback"]
    assert not load.failures(), load.failures()[:5]
    assert set(load.versions(since=rolled + ROUTE_SETTLES_S)) == {models.good}
    assert release.live_color() == "blue" and release.replicas("blue") == 2
