"""Session fixtures of the node tier: the real chart on a real single-node Kubernetes.

The session builds the project's image (``scripts/build-image``; cached layers make a second
build a few seconds) and starts ``scripts/kube-sandbox up`` with it imported into the node's
containerd: the real control plane (RBAC on), kubelet, containerd and runc, kube-proxy,
kube-scheduler and CoreDNS. Pods run from that image exactly as the chart renders them, the
values differing from the cluster tier's only by ``image.repository=localhost/bluegreen``,
``image.tag=dev`` and ``image.pullPolicy=Never``. The fixtures mirror tests/cluster's (same
names, this node's instances); the MLflow server listens on the node's host address.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_sandbox import fixture

from tests.cluster.conftest import RELEASE, ClusterModels, _chart_release
from tests.cluster.conftest import helm as helm
from tests.cluster.release import ChartRelease, sandbox_values
from tests.support.chart import REPO
from tests.support.kube import Kube
from tests.support.mlflow_server import MlflowServer, start_mlflow_server
from tests.support.models import register_iris
from tests.support.sandbox import running_sandbox

IMAGE = "localhost/bluegreen:dev"
BUILD_IMAGE = REPO / "scripts" / "build-image"
__all__ = ["RELEASE"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/node/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fixture.Sandbox]:
    subprocess.run([str(BUILD_IMAGE)], check=True, timeout=1800)
    with running_sandbox(tmp_path_factory.mktemp("kube-node"), images=[IMAGE]) as sb:
        yield sb


@pytest.fixture(scope="session")
def kube(sandbox: fixture.Sandbox) -> Kube:
    return Kube(sandbox)


@pytest.fixture(scope="session")
def mlflow_server(
    sandbox: fixture.Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-node"), host=sandbox.host_address)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def models(mlflow_server: MlflowServer) -> ClusterModels:
    uri, name = mlflow_server.url, "iris"
    good = register_iris(uri, name, C=1.0, max_iter=300)
    other = register_iris(uri, name, C=0.05, max_iter=100)
    # not used by this tier's scenarios; the record keeps tests/cluster's shape
    return ClusterModels(uri, name, good, other, broken="", constant="")


@pytest.fixture
def release(request: pytest.FixtureRequest, helm: Path, tmp_path: Path) -> Iterator[ChartRelease]:
    yield from _chart_release(request, helm, 4, tmp_path)


@pytest.fixture
def values(models: ClusterModels) -> dict:
    """tests/cluster's values with the image the node's containerd holds."""
    v = sandbox_values(tracking_uri=models.tracking_uri, model=models.model, version=models.good)
    v["image"] = {"repository": "localhost/bluegreen", "tag": "dev", "pullPolicy": "Never"}
    return v
