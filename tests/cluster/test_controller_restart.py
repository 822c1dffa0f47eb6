"""The controller pod killed mid-release; its Deployment starts another; state stays consistent.

The release is started asynchronously; once the standby is being staged, the controller
pod is deleted with no grace (the kubelet kills it at once, as on a node loss)
and the real ReplicaSet controller creates a new one under the same ServiceAccount. The
new controller must find the journal in its ConfigMap, settle the running record (the
route says nothing moved: aborted at stage), take over the release Lease once it expires,
and release again, while the live Service never stopped serving the live version.
"""

from __future__ import annotations

import time

from bluegreen.client import ControllerError
from tests.cluster.conftest import ClusterModels
from tests.cluster.load import ROUTE_SETTLES_S, PredictLoad
from tests.cluster.release import ChartRelease
from tests.support.kube import wait_for

LEASE_SECONDS = 10


def test_controller_killed_mid_release_recovers(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    values["controller"]["extraEnv"] = [
        {"name": "BLUEGREEN_K8S_LEASE_SECONDS", "value": str(LEASE_SECONDS)}
    ]
    release.install(values)
    release.wait_color_ready("blue", 2)
    first = release.controller_pod().metadata.name

    with PredictLoad(release.live_url()) as load:
        load.wait_for_answers(10)
        started = release.controller().switch(version=models.other, wait=False)
        op_id = started["id"]
        wait_for("green pinned to the new version", lambda: release.pinned("green") == models.other)
        assert release.controller().operation(op_id)["status"] == "running"

        release.kube.core.delete_namespaced_pod(first, release.namespace, grace_period_seconds=0)
        wait_for(
            "a new ready controller pod",
            lambda: any(
                p.metadata.name != first
                for p in release.kube.ready_pods(
                    release.namespace, "app.kubernetes.io/component=controller"
                )
            ),
            timeout=90,
        )
        assert release.live_color() == "blue"

        # The recreated pod answers at the Service's ClusterIP once kube-proxy has its endpoint.
        release.wait_controller_ready()
        # The dead holder's Lease must expire before anyone may release again.
        api = release.controller()
        deadline = time.monotonic() + LEASE_SECONDS + 60
        while True:
            try:
                again = api.switch(version=models.other)
                break
            except ControllerError as exc:
                if exc.status != 409 or time.monotonic() > deadline:
                    raise
                time.sleep(1)
        assert again["status"] == "promoted", again
        promoted = time.monotonic()
        time.sleep(ROUTE_SETTLES_S + 2)

    assert not load.failures(), load.failures()[:5]
    assert set(load.versions(since=promoted + ROUTE_SETTLES_S)) == {models.other}
    settled = api.operation(op_id)
    assert settled["status"] == "aborted" and settled["failed_step"] == "stage", settled
    assert "controller stopped" in settled["reason"], settled["reason"]
    assert release.live_color() == "green"
    assert (release.pinned("blue"), release.pinned("green")) == (models.good, models.other)
    assert [o["id"] for o in api.history()][:2] == [again["id"], op_id]
