"""Keep-alive clients of the live ClusterIP follow a switch and a rollback within 2 s.

Through the real kube-proxy an open connection stays on the pod it was sent to; only the
model server's ``Connection: close`` once it is demoted makes the clients reconnect, and a
new connection goes where the Service's selector now points. So: no request fails, and no
answer from the old version starts later than 2 s after the controller answered the
switch (then the rollback). Fresh-connection load runs beside them, with the same rule.
"""

from __future__ import annotations

import time

import pytest

from tests.cluster.conftest import ClusterModels
from tests.cluster.load import PredictLoad
from tests.cluster.release import ChartRelease
from tests.node.keepalive import KeepAliveClients

MOVE_WITHIN_S = 2.0


@pytest.mark.xfail(
    strict=True,
    reason="open defect: on the real node a kept connection still got the old version 4.7 s "
    "after the switch's answer (2026-12-07); the demotion's Connection: close does not reach "
    "every kept connection within 2 s",
)
def test_keepalive_clients_follow_switch_and_rollback(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    release.install(values)
    release.wait_color_ready("blue", 2)
    release.wait_color_ready("green", 2)
    api = release.controller()
    url = release.live_url()

    with KeepAliveClients(url) as kept, PredictLoad(url) as fresh:
        kept.wait_for_answers(30)
        fresh.wait_for_answers(10)
        before = time.monotonic()
        op = api.switch(version=models.other)
        switched = time.monotonic()
        assert op["status"] == "promoted", op
        time.sleep(MOVE_WITHIN_S + 2)
        back = api.rollback()
        rolled = time.monotonic()
        assert back["status"] == "rolled_back", back
        time.sleep(MOVE_WITHIN_S + 2)

    assert not kept.failures(), kept.failures()[:5]
    assert not fresh.failures(), fresh.failures()[:5]
    assert set(kept.versions(until=before)) == {models.good}
    # Before the switch each client kept its one connection for all its requests.
    assert kept.connections(until=before) == len(kept.connections_opened)

    last_old = kept.last_old_answer(models.good, since=switched, until=rolled)
    assert last_old is None or last_old - switched <= MOVE_WITHIN_S, last_old - switched
    assert set(kept.versions(since=switched + MOVE_WITHIN_S, until=rolled)) == {models.other}
    assert set(fresh.versions(since=switched, until=rolled)) == {models.other}

    last_new = kept.last_old_answer(models.other, since=rolled)
    assert last_new is None or last_new - rolled <= MOVE_WITHIN_S, last_new - rolled
    assert set(kept.versions(since=rolled + MOVE_WITHIN_S)) == {models.good}
    assert set(fresh.versions(since=rolled)) == {models.good}
