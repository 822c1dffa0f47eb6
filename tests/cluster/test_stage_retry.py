"""A retry of a version whose first rollout hit its progress deadline must stage it again.

The real Deployment controller marks a rollout that made no progress for
`progressDeadlineSeconds` with `Progressing=False, reason=ProgressDeadlineExceeded`, and
keeps that condition until a new rollout starts. Here a version's artifacts are missing, so
its pods crash-loop and the stage fails at the deadline; once the artifact store is back,
releasing the same version again must roll its pods and promote, not fail at once on the
condition the first attempt left.
"""

from __future__ import annotations

import pytest

from bluegreen.client import ControllerError
from tests.cluster.conftest import ClusterModels
from tests.cluster.release import ChartRelease
from tests.support.mlflow_server import MlflowServer
from tests.support.models import artifacts_dir, register_iris


def test_retry_after_progress_deadline_stages_again(
    release: ChartRelease, values: dict, models: ClusterModels, mlflow_server: MlflowServer
) -> None:
    values["modelServer"]["progressDeadlineSeconds"] = 40
    release.install(values)
    version = register_iris(models.tracking_uri, models.model, C=0.5, max_iter=300)
    files = artifacts_dir(mlflow_server, models.model, version)
    aside = files.with_name(files.name + ".aside")
    files.rename(aside)
    api = release.controller()

    with pytest.raises(ControllerError) as first:
        api.switch(version=version)
    record = first.value.body["operation"]
    assert (record["status"], record["failed_step"]) == ("aborted", "stage"), record["reason"]

    aside.rename(files)  # the artifact store is whole again
    op = api.switch(version=version)

    assert op["status"] == "promoted", op
    assert release.live_color() == "green" and release.pinned("green") == version
