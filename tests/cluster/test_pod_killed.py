"""Model-server pods killed mid-release: the release still lands and the live Service never fails.

While the controller stages a new version into green, one green pod being rolled is deleted
with no grace (as on a node loss) and one live blue pod is deleted the way a drain does
(its grace period: the real kubelet runs the preStop hook and SIGTERM, and kube-proxy drops
the endpoint). The ReplicaSets replace both; the release is promoted; no request through the
live ClusterIP fails, and the live color is back at its replica count.
"""

from __future__ import annotations

import time

from tests.cluster.conftest import ClusterModels
from tests.cluster.load import ROUTE_SETTLES_S, PredictLoad
from tests.cluster.release import COLOR_LABEL, ChartRelease
from tests.support.kube import wait_for


def test_pods_killed_mid_release(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    release.install_warm(values)
    api = release.controller()
    ns = release.namespace

    with PredictLoad(release.live_url()) as load:
        load.wait_for_answers(20)
        started = api.switch(version=models.other, wait=False)
        wait_for("green pinned to the new version", lambda: release.pinned("green") == models.other)

        def new_green_pod() -> str | None:
            pods = release.kube.pods(ns, f"{COLOR_LABEL}=green")
            fresh = [
                p.metadata.name
                for p in pods
                if (p.metadata.annotations or {}).get("bluegreen.io/model-version") == models.other
                or any(e.value == models.other for c in p.spec.containers for e in c.env or [])
            ]
            return fresh[0] if fresh else None

        victim = wait_for("a green pod of the new version", new_green_pod, 60)
        release.kube.core.delete_namespaced_pod(victim, ns, grace_period_seconds=0)
        live_victim = release.ready_pods("blue")[0].metadata.name
        release.kube.core.delete_namespaced_pod(live_victim, ns)

        op = wait_for(
            "the release to finish",
            lambda: (o := api.operation(started["id"]))["status"] != "running" and o,
            240,
        )
        done = time.monotonic()
        time.sleep(ROUTE_SETTLES_S + 2)

    assert op["status"] == "promoted", op
    assert not load.failures(), load.failures()[:5]
    lag = load.last_answer(models.good, since=done)
    print(f"the old version answered until {lag:.2f} s after the release ended")
    assert set(load.versions(since=done + ROUTE_SETTLES_S)) == {models.other}
    assert release.live_color() == "green"
    release.wait_color_ready("green", 2, timeout=60)
    release.wait_color_ready("blue", 2, timeout=120)
    names = {p.metadata.name for p in release.kube.pods(ns, f"{COLOR_LABEL}=blue")}
    assert live_victim not in names
