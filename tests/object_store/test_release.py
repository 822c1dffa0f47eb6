"""A release end to end on MLflow as users run it: PostgreSQL store, S3 artifacts read directly."""

from __future__ import annotations

from bluegreen.client import ControllerClient
from bluegreen.stack import LocalStack
from bluegreen.traffic import TrafficProbe
from tests.support.iris import IrisVersions
from tests.support.local_stack import served_version


def test_switch_and_rollback_with_s3_artifacts(
    stack: LocalStack, client: ControllerClient, iris_s3: IrisVersions
) -> None:
    # MLflow 3 records `models:/m-...` as the source; where the files are is the download URI.
    where = iris_s3.registry().get_model_version_download_uri(iris_s3.model, iris_s3.good)
    assert where.startswith("s3://"), where
    with TrafficProbe(url=f"{stack.router_url}/predict", clients=2) as traffic:
        switch = client.switch(version=iris_s3.other)
        assert switch["status"] == "promoted", switch
        assert served_version(stack) == iris_s3.other
        rollback = client.rollback()
        assert rollback["status"] == "rolled_back", rollback
        assert served_version(stack) == iris_s3.good
    assert traffic.failed() == []
    assert {r.version for r in traffic.snapshot()} >= {iris_s3.good, iris_s3.other}
    status = client.status()
    assert status["live"] == {"color": "blue", "version": iris_s3.good, "ready": True}
