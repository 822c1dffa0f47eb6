"""A release on the real node with MLflow as its users run it.

MLflow's store is PostgreSQL (Debian's) and its artifact root an S3 bucket (SeaweedFS,
`scripts/object-store`) that the server does not proxy (`--no-serve-artifacts`): the
controller pod and the model-server pods read `s3://` themselves, with the AWS variables and
`MLFLOW_S3_ENDPOINT_URL` from a Secret the chart mounts with `envFrom`
(`mlflow.existingSecret`), exactly the set-up the README's Kubernetes section shows. The
object store and MLflow listen on the node's host address, where the pods reach them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from kube_sandbox import fixture
from kubernetes import client as k8s
from object_store import server as object_store_server

from tests.cluster.load import ROUTE_SETTLES_S, PredictLoad, switch_then_roll_back
from tests.cluster.release import LOCAL_IMAGE, ChartRelease, sandbox_values
from tests.support.mlflow_s3 import MlflowS3Server, start_mlflow_s3
from tests.support.models import register_iris
from tests.support.object_store import s3_env, start_object_store
from tests.support.postgres import start_postgres

SECRET = "mlflow-s3"


@dataclass(frozen=True)
class S3Models:
    server: MlflowS3Server
    model: str
    good: str
    other: str


@pytest.fixture(scope="module")
def s3_models(
    sandbox: fixture.Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Models]:
    root = tmp_path_factory.mktemp("cluster-s3")
    with ExitStack() as cleanup:
        postgres = start_postgres()
        cleanup.callback(postgres.remove)
        store = start_object_store(root / "store", host=sandbox.host_address)
        cleanup.callback(object_store_server.down, root / "store")
        server = start_mlflow_s3(
            root / "mlflow", postgres=postgres, store=store, host=sandbox.host_address
        )
        cleanup.callback(server.stop)
        name = "iris-s3"
        with s3_env(server.env()):
            good = register_iris(server.url, name, C=1.0, max_iter=300)
            other = register_iris(server.url, name, C=0.05, max_iter=100)
        yield S3Models(server, name, good, other)


def _create_secret(release: ChartRelease, variables: dict[str, str]) -> None:
    body = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=SECRET), string_data=variables)
    release.kube.core.create_namespaced_secret(release.namespace, body)


def test_release_and_rollback_from_postgres_and_s3(
    release: ChartRelease, s3_models: S3Models
) -> None:
    s3_values = sandbox_values(
        tracking_uri=s3_models.server.url, model=s3_models.model, version=s3_models.good
    )
    s3_values["image"] = dict(LOCAL_IMAGE)
    s3_values["mlflow"]["existingSecret"] = SECRET
    variables = s3_models.server.env()
    _create_secret(release, variables)
    release.install(s3_values)
    release.wait_color_ready("blue", 2)
    api = release.controller()

    with PredictLoad(release.live_url()) as load:
        load.wait_for_answers(20)
        t = switch_then_roll_back(api, s3_models.other)

    assert not load.failures(), load.failures()[:5]
    served = load.versions(since=t.switched + ROUTE_SETTLES_S, until=t.rolling)
    assert set(served) == {s3_models.other}, served
    assert set(load.versions(since=t.rolled + ROUTE_SETTLES_S)) == {s3_models.good}
    assert (release.pinned("blue"), release.pinned("green")) == (s3_models.good, s3_models.other)
    # The pods read the bucket with the Secret's credentials; none of them shows in a log.
    log = release.controller_log()
    assert variables["AWS_SECRET_ACCESS_KEY"] not in log
    for color in ("blue", "green"):
        for pod in release.ready_pods(color):
            pod_log = release.kube.core.read_namespaced_pod_log(
                pod.metadata.name, release.namespace
            )
            assert variables["AWS_SECRET_ACCESS_KEY"] not in pod_log
