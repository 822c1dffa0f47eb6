"""Aborted releases on the real control plane leave the live color serving, untouched.

A version that fails its golden smoke test stops at verify; a version whose artifacts are
gone crash-loops in the standby until the Deployment's progress deadline, which the real
Deployment controller reports and the controller turns into a failed stage. Meanwhile the
live Service keeps its selector and every request is served by the live version. A good
release afterwards still goes through: the failed standby is re-pinned and recovers.
"""

from __future__ import annotations

import pytest

from bluegreen.client import ControllerError
from tests.cluster.conftest import ClusterModels
from tests.cluster.load import PredictLoad
from tests.cluster.release import ChartRelease
from tests.support.models import IRIS_CLASSES, IRIS_ROWS


def test_aborted_releases_leave_live_serving(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    release.install(values)
    release.wait_color_ready("blue", 2)
    api = release.controller()
    live_rv = release.kube.core.read_namespaced_service(
        release.name, release.namespace
    ).metadata.resource_version

    with PredictLoad(release.live_url()) as load:
        load.wait_for_answers(20)

        golden = {"inputs": IRIS_ROWS, "expected": IRIS_CLASSES}
        with pytest.raises(ControllerError) as wrong:
            api.switch(version=models.constant, golden=golden)
        record = wrong.value.body["operation"]
        assert wrong.value.status >= 400
        assert (record["status"], record["failed_step"]) == ("aborted", "verify"), record["reason"]
        assert "golden" in record["reason"], record["reason"]

        with pytest.raises(ControllerError) as unloadable:
            api.switch(version=models.broken)
        record = unloadable.value.body["operation"]
        assert (record["status"], record["failed_step"]) == ("aborted", "stage"), record["reason"]
        assert models.broken in record["reason"], record["reason"]

        assert release.live_color() == "blue"
        served_before_recovery = load.versions()

        op = api.switch(version=models.other)
        assert op["status"] == "promoted", op

    assert not load.failures(), load.failures()[:5]
    assert set(served_before_recovery) == {models.good}, served_before_recovery
    live = release.kube.core.read_namespaced_service(release.name, release.namespace)
    assert live.metadata.resource_version != live_rv  # only the good release moved it
    assert release.live_color() == "green" and release.pinned("green") == models.other
    history = [(o["status"], o.get("failed_step")) for o in api.history()]
    assert history[:3] == [("promoted", None), ("aborted", "stage"), ("aborted", "verify")]
