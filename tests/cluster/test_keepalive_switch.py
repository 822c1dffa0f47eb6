"""Keep-alive clients of the live ClusterIP follow a switch and a rollback.

Through the real kube-proxy an open connection stays on the pod it was sent to; only the
model server's ``Connection: close`` once it is demoted makes the clients reconnect, and a
new connection goes where the Service's selector now points. So: no request fails, and no
answer from the old version starts later than 2 s after the controller answered the
switch (then the rollback). Fresh-connection load runs beside them, with the same rule.

The target is 2 s; measured alone 0.17 to 0.5 s (2026-12-07). The test holds a 5 s bound
for this shared 2-core machine under the whole suite's load (the EndpointSlice controller
and kube-proxy then lag), which a connection that never moves still fails, and prints how
long the move took for the README. The switch's window ends when the rollback is asked for,
not answered: the rollback flips before it answers.
"""

from __future__ import annotations

from tests.cluster.conftest import ClusterModels
from tests.cluster.keepalive import KeepAliveClients
from tests.cluster.load import ROUTE_SETTLES_S, PredictLoad, switch_then_roll_back
from tests.cluster.release import ChartRelease

MOVE_WITHIN_S = ROUTE_SETTLES_S  # the target is 2 s: see the module docstring


def test_keepalive_clients_follow_switch_and_rollback(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    release.install_warm(values)
    api = release.controller()
    url = release.live_url()

    with KeepAliveClients(url) as kept, PredictLoad(url) as fresh:
        kept.wait_for_answers(30)
        fresh.wait_for_answers(10)
        t = switch_then_roll_back(api, models.other, settle_s=MOVE_WITHIN_S)

    assert not kept.failures(), kept.failures()[:5]
    assert not fresh.failures(), fresh.failures()[:5]
    assert set(kept.versions(until=t.asked)) == {models.good}
    # Before the switch each client kept its one connection for all its requests.
    assert kept.connections(until=t.asked) == len(kept.connections_opened)

    moved = kept.last_answer(models.good, since=t.switched, until=t.rolling)
    print(f"kept connections off the old version {moved:.2f} s after the switch's answer")
    assert moved <= MOVE_WITHIN_S, moved
    assert set(kept.versions(since=t.switched + MOVE_WITHIN_S, until=t.rolling)) == {models.other}
    assert set(fresh.versions(since=t.switched + MOVE_WITHIN_S, until=t.rolling)) == {models.other}

    back = kept.last_answer(models.other, since=t.rolled)
    print(f"kept connections off the rolled-back version {back:.2f} s after the rollback")
    assert back <= MOVE_WITHIN_S, back
    assert set(kept.versions(since=t.rolled + MOVE_WITHIN_S)) == {models.good}
    assert set(fresh.versions(since=t.rolled + MOVE_WITHIN_S)) == {models.good}
