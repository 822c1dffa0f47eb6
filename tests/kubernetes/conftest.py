"""Fixtures for the Kubernetes backend tests: an API-server stand-in and a kubelet stand-in.

The API server is kmock's `KubernetesEmulator`, extended where it lacks what the backend
relies on (resourceVersion conflicts, generation, fault injection: see `cluster.py`), in
its own thread; the official client talks to it over real HTTP. Deployment status comes
from the kubelet stand-in (`kubelet.py`). Every thread and process a fixture starts, its
finalizer stops.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from controller.kubernetes.colors import DeploymentColorBackend
from tests.kubernetes.cluster import ApiServer, ClusterEmulator, install_release, wait_for
from tests.kubernetes.kubelet import Kubelet, ScriptedPods
from tests.kubernetes.registry import Registry, prepare_registry
from tests.support.emulated_cluster import (
    NAMESPACE,
    RELEASE,
    color_backend,
)
from tests.support.mlflow_server import start_mlflow_server


@pytest.fixture(scope="session")
def mlflow_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real MLflow server of its own, with the versions the end-to-end tests release."""
    server = start_mlflow_server(tmp_path_factory.mktemp("k8s-mlflow"))
    try:
        yield prepare_registry(server.url)
    finally:
        server.stop()


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    server = ApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def emulator(api_server: ApiServer) -> ClusterEmulator:
    return api_server.emulator


@pytest.fixture
def api(api_server: ApiServer) -> Iterator[client.ApiClient]:
    api_client = api_server.client()
    yield api_client
    api_client.close()


@pytest.fixture
def installed(api: client.ApiClient) -> client.ApiClient:
    """The chart's objects (`helm template`): blue live on v1, green a warm copy of v1, then
    scaled to the chart's 2 replicas per color by the controller, as after start-up."""
    install_release(api, namespace=NAMESPACE, release=RELEASE, blue="1", green=None)
    color_backend(api).reconcile_replicas()
    return api


@pytest.fixture
def pods() -> ScriptedPods:
    return ScriptedPods()


@pytest.fixture
def kubelet(installed: client.ApiClient, pods: ScriptedPods) -> Iterator[Kubelet]:
    """Scripted pods for both colors; blue v1 is rolled out before the test starts."""
    running = Kubelet(
        installed, namespace=NAMESPACE, names=[f"{RELEASE}-blue", f"{RELEASE}-green"], runtime=pods
    ).start()
    backend = color_backend(installed)
    wait_for(lambda: backend.is_ready("blue"), what="blue v1 rolled out")
    wait_for(lambda: backend.is_ready("green"), what="green (a copy of v1) rolled out")
    yield running
    running.stop()


@pytest.fixture
def backend(installed: client.ApiClient) -> DeploymentColorBackend:
    return color_backend(installed, poll_interval=0.05)
