"""Fixtures for the Kubernetes backend tests: an API-server stand-in and a kubelet stand-in.

The API server is kmock's `KubernetesEmulator`, extended where it lacks what the backend
relies on (resourceVersion conflicts, generation, fault injection: see `cluster.py`), in
its own thread; the official client talks to it over real HTTP. Deployment status comes
from the kubelet stand-in (`kubelet.py`). Every thread and process a fixture starts, its
finalizer stops.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from controller.backends.kubernetes import DeploymentColorBackend
from tests.kubernetes.cluster import ApiServer, ClusterEmulator, install_release, wait_for
from tests.kubernetes.kubelet import Kubelet, ScriptedPods
from tests.kubernetes.registry import PreparedRegistry, Registry

NAMESPACE = "bluegreen-test"
RELEASE = "bg"
END_TO_END = Path(__file__).with_name("test_end_to_end.py")

_prepared: PreparedRegistry | None = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the end-to-end scenario last, and start its MLflow server and training now."""
    global _prepared
    slow = [item for item in items if item.path == END_TO_END]
    if not slow or _prepared is not None or config.option.collectonly:
        return
    items[:] = [item for item in items if item.path != END_TO_END] + slow
    _prepared = PreparedRegistry().start()
    config.add_cleanup(_prepared.close)


@pytest.fixture(scope="session")
def mlflow_registry(pytestconfig: pytest.Config) -> Registry:
    """The MLflow server and registered versions (waits for the background preparation)."""
    global _prepared
    if _prepared is None:
        _prepared = PreparedRegistry().start()
        pytestconfig.add_cleanup(_prepared.close)
    return _prepared.get()


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
    """The chart's objects: blue pinned to v1 and live, green empty (0 replicas)."""
    install_release(api, namespace=NAMESPACE, release=RELEASE, blue="1", green=None)
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
    backend = DeploymentColorBackend(namespace=NAMESPACE, release=RELEASE, api_client=installed)
    wait_for(lambda: backend.is_ready("blue"), what="blue v1 rolled out")
    yield running
    running.stop()


@pytest.fixture
def backend(installed: client.ApiClient) -> DeploymentColorBackend:
    return DeploymentColorBackend(
        namespace=NAMESPACE, release=RELEASE, api_client=installed, poll_interval=0.05
    )
