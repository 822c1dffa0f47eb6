"""End to end through the real `ReleaseEngine` on the Kubernetes backend.

Real: an MLflow server with registered iris versions, the chart's objects as `helm template`
renders them (two replicas per color), one model-server process per pod,
the engine, `DeploymentColorBackend`, `ServiceSelectorRouter`, `ConfigMapJournal`,
`LeaseLock`, `MlflowRegistry` and `HttpSmokeTester`, all over real HTTP. Stand-ins: the
API server (`cluster.py`), and the Deployment controller, kubelet and per-color Services
(`kubelet.py`: pods are local processes, ready when `/readyz` answers, listed in their
color's EndpointSlices; a Service forwards to the newest ready pod of its color).

What the real cluster tier shows as well (an unloadable version aborting at the progress
deadline, an unrelated write to the live Service during a release) runs there only
(tests/cluster/test_aborted_release.py, test_route_precondition.py); what stays here needs an
engine in this process: a controller dying at an exact step, a lease taken over between two
calls, a pod that missed its role.

The tests share one stack and run in file order, each asserting the state it starts
from: a model server takes about ten seconds to start, so the scenario continues from
one test to the next rather than rebuilding the cluster for each.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from controller.domain import Color, Golden, Journal, Operation, ResolvedVersion, Stable
from controller.engine import EnginePolicy, ReleaseEngine
from controller.errors import ReleaseAborted, ReleaseInProgress
from controller.kubernetes.api import micro_time
from controller.kubernetes.colors import DeploymentColorBackend
from controller.kubernetes.journal import ConfigMapJournal
from controller.kubernetes.lease import LeaseLock
from controller.kubernetes.service_router import ServiceSelectorRouter
from controller.mlflow_registry import MlflowRegistry
from controller.smoke import HttpSmokeTester
from tests.kubernetes.cluster import ApiServer, ClusterEmulator, install_release, wait_for
from tests.kubernetes.kubelet import ColorService, Kubelet, Pod, ProcessPods
from tests.kubernetes.registry import Registry
from tests.support.emulated_cluster import IN_CLUSTER_COLOR_URL

NAMESPACE = "models"
RELEASE = "iris"
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


class ControllerKilled(BaseException):
    """The controller process dies here: nothing in the engine may catch it."""


@dataclass
class Stack:
    api: client.ApiClient
    emulator: ClusterEmulator
    kubelet: Kubelet
    services: dict[str, ColorService]
    tracking_uri: str

    def engine(self, **overrides: Any) -> ReleaseEngine:
        """A controller as `wiring.build_engine` makes it; a new one is a restarted controller."""
        common: dict[str, Any] = {
            "namespace": NAMESPACE,
            "release": RELEASE,
            "api_client": self.api,
        }
        colors = DeploymentColorBackend(
            **common,
            color_url_template={c: f"http://127.0.0.1:{s.port}" for c, s in self.services.items()},
            poll_interval=0.1,
        )
        parts: dict[str, Any] = {
            "registry": MlflowRegistry(tracking_uri=self.tracking_uri),
            "backend": colors,
            "pods": colors,  # as `wiring` passes it: every ready pod of a color
            "router": ServiceSelectorRouter(**common),
            "journal_store": ConfigMapJournal(**common),
            "release_lock": LeaseLock(**common, lease_seconds=10),
            "smoke": HttpSmokeTester(latency_budget_ms=2000),
            "policy": EnginePolicy(live_alias="live", stage_timeout_s=90, history_limit=200),
        }
        return ReleaseEngine(model="iris", **{**parts, **overrides})

    def selector(self) -> str:
        core = client.CoreV1Api(self.api)
        return core.read_namespaced_service(RELEASE, NAMESPACE).spec.selector["bluegreen.io/color"]

    def service_revision(self) -> str:
        core = client.CoreV1Api(self.api)
        return core.read_namespaced_service(RELEASE, NAMESPACE).metadata.resource_version

    def deployment(self, color: Color) -> dict[str, Any]:
        apps = client.AppsV1Api(self.api)
        found = apps.read_namespaced_deployment(f"{RELEASE}-{color}", NAMESPACE)
        return self.api.sanitize_for_serialization(found)

    def pod_infos(self, color: Color) -> list[dict[str, Any]]:
        """`/model-info` of every running pod of the color, each asked directly."""
        infos = []
        for pod in self.kubelet.pods(f"{RELEASE}-{color}"):
            if pod.ready:
                answer = httpx.get(f"http://127.0.0.1:{pod.port}/model-info", timeout=5)
                infos.append(answer.raise_for_status().json())
        return infos

    def set_role(self, color: Color, index: int, *, live: bool) -> None:
        """One pod's role, changed behind the controller's back (a missed notice, a restart)."""
        pod = [p for p in self.kubelet.pods(f"{RELEASE}-{color}") if p.ready][index]
        httpx.put(
            f"http://127.0.0.1:{pod.port}/serving-state", json={"live": live}, timeout=5
        ).raise_for_status()

    def model_info(self, color: Color) -> dict[str, Any]:
        """`/model-info` through the color's own Service."""
        answer = httpx.get(f"http://127.0.0.1:{self.services[color].port}/model-info", timeout=5)
        answer.raise_for_status()
        return answer.json()

    def journal(self) -> Journal:
        core = client.CoreV1Api(self.api)
        data = core.read_namespaced_config_map(f"{RELEASE}-journal", NAMESPACE).data
        return Journal.model_validate_json(data["journal.json"])

    def leave_lease_to_a_dead_controller(self) -> None:
        """What a killed controller leaves: its holder, no longer renewed (1 s lease here)."""
        long_ago = micro_time(datetime.now(UTC) - timedelta(minutes=2))
        self.patch_lease(
            {
                "holderIdentity": "dead-pod-1-abcd/sw-dead",
                "renewTime": long_ago,
                "leaseDurationSeconds": 1,
            }
        )

    def patch_lease(self, spec: dict[str, Any]) -> None:
        client.CoordinationV1Api(self.api).patch_namespaced_lease(
            f"{RELEASE}-release-lock",
            NAMESPACE,
            {"spec": spec},
            _content_type="application/merge-patch+json",
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mlflow_registry: Registry) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("k8s-e2e")
    tracking_uri = mlflow_registry.tracking_uri
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast, as the controller does
        env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        server = ApiServer().start()
        services = {color: ColorService().start() for color in ("blue", "green")}
        kubelet: Kubelet | None = None
        try:
            api = server.client()
            install_release(
                api, namespace=NAMESPACE, release=RELEASE, blue="1", tracking_uri=tracking_uri
            )

            def route(name: str, pods: list[Pod]) -> None:
                services[name.rsplit("-", 1)[1]].route(pods)

            (root / "pods").mkdir()
            kubelet = Kubelet(
                api,
                namespace=NAMESPACE,
                names=[f"{RELEASE}-blue", f"{RELEASE}-green"],
                runtime=ProcessPods(log_dir=root / "pods", cwd=REPO),
                interval=0.1,
                on_sync=route,
            ).start()
            built = Stack(api, server.emulator, kubelet, services, tracking_uri)
            blue = DeploymentColorBackend(
                namespace=NAMESPACE,
                release=RELEASE,
                api_client=api,
                color_url_template=IN_CLUSTER_COLOR_URL,
            )
            blue.reconcile_replicas()  # the controller's start-up: 2 replicas per color
            for color in ("blue", "green"):
                wait_for(
                    lambda c=color: blue.is_ready(c),  # type: ignore[misc]
                    what=f"{color} v1 ready",
                    timeout=120,
                    interval=0.2,
                )
            yield built
        finally:
            if kubelet is not None:
                kubelet.stop()
            for service in services.values():
                service.stop()
            server.stop()


class SmokeThen:
    """The real smoke test, then `after()`: what happens between verify and promote."""

    def __init__(self, after: Any) -> None:
        self._inner = HttpSmokeTester(latency_budget_ms=2000)
        self._after = after

    def verify(self, endpoint: str, *, target: ResolvedVersion, golden: Golden | None) -> str:
        summary = self._inner.verify(endpoint, target=target, golden=golden)
        self._after()
        return summary

    def announce(self, endpoint: str, *, live: bool) -> None:
        self._inner.announce(endpoint, live=live)


class RegistryDyingAfterFlip(MlflowRegistry):
    def mark_live(self, model: str, *, version: str, alias: str, color: Color) -> None:
        raise ControllerKilled("killed right after the flip")


def kill_controller() -> None:
    raise ControllerKilled("killed between verify and promote")


# -- the scenario, in order ----------------------------------------------------------------


def test_release_moves_traffic_to_the_standby_color(stack: Stack) -> None:
    assert stack.selector() == "blue" and stack.model_info("blue")["version"] == "1"
    engine = stack.engine()
    assert engine.recover() is None

    op = engine.switch(version="2")

    assert op.status == "promoted", op.reason
    assert (op.from_color, op.to_color, op.from_version, op.target_version) == (
        "blue",
        "green",
        "1",
        "2",
    )
    assert [s.name for s in op.steps] == ["resolve", "stage", "verify", "promote"]
    assert stack.selector() == "green"
    green = stack.deployment("green")
    assert green["metadata"]["annotations"]["bluegreen.io/model-version"] == "2"
    env = {
        e["name"]: e.get("value") for e in green["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MODEL_VERSION"] == "2" and env["MODEL_NAME"] == "iris"
    assert green["spec"]["replicas"] == 2
    assert op.steps[2].detail and op.steps[2].detail.startswith("2 pods, each v2")
    # every pod of each color was told its role, not the one a Service happened to pick
    green_pods, blue_pods = stack.pod_infos("green"), stack.pod_infos("blue")
    assert [(i["version"], i["live"]) for i in green_pods] == [("2", True), ("2", True)]
    assert [(i["version"], i["live"]) for i in blue_pods] == [("1", False), ("1", False)]
    status = engine.status()
    assert status["live"] == {"color": "green", "version": "2", "ready": True}
    assert status["standby"] == {"color": "blue", "version": "1", "ready": True}
    from mlflow import MlflowClient

    alias = MlflowClient(
        tracking_uri=stack.tracking_uri, registry_uri=stack.tracking_uri
    ).get_model_version_by_alias("iris", "live")
    assert alias.version == "2"


def test_rollback_flips_back_without_loading_anything(stack: Stack) -> None:
    assert stack.selector() == "green"
    engine = stack.engine()  # a new controller: `previous` comes from the journal ConfigMap
    assert engine.journal.previous == Stable(color="blue", version="1")
    pods_before = stack.kubelet.pods_started

    op = engine.rollback()

    assert op.status == "rolled_back", op.reason
    assert stack.selector() == "blue"
    assert stack.model_info("blue")["version"] == "1"
    assert stack.kubelet.pods_started == pods_before  # blue kept v1 warm: one flip, no load
    assert engine.journal.previous == Stable(color="green", version="2")
    assert [i["live"] for i in stack.pod_infos("blue")] == [True, True]
    assert [i["live"] for i in stack.pod_infos("green")] == [False, False]


def test_a_pod_that_missed_its_role_is_told_again(stack: Stack) -> None:
    """Issue 12 item 2: a live pod left believing it is standby (it missed the notice, or a
    restart reset it) would answer with `Connection: close` forever; the role keeper's
    timer re-reads the route and heals it, and a standby that thinks it is live too."""
    assert stack.selector() == "blue"
    stack.set_role("blue", 0, live=False)
    stack.set_role("green", 1, live=True)
    engine = stack.engine()
    engine.roles.start(0.2)
    try:
        wait_for(
            lambda: (
                [i["live"] for i in stack.pod_infos("blue")] == [True, True]
                and [i["live"] for i in stack.pod_infos("green")] == [False, False]
            ),
            what="every pod told its role again",
            timeout=10,
        )
    finally:
        engine.roles.stop()


def test_a_held_lease_refuses_the_release_with_409(stack: Stack) -> None:
    stack.patch_lease(
        {
            "holderIdentity": "controller-7f9c-1-beef/sw-0123456789ab",
            "renewTime": micro_time(datetime.now(UTC)),
            "leaseDurationSeconds": 30,
        }
    )
    revision, history = stack.service_revision(), len(stack.journal().history)
    try:
        with pytest.raises(ReleaseInProgress, match="controller-7f9c-1-beef") as caught:
            stack.engine().switch(version="2")
        assert caught.value.status_code == 409
        assert stack.service_revision() == revision
        assert len(stack.journal().history) == history  # refused before any record was made
    finally:
        stack.patch_lease({"holderIdentity": None})


def test_a_lease_lost_before_the_flip_refuses_to_flip(stack: Stack) -> None:
    """Issue 12 item 9: another controller took the lease over during the verify step (ours
    was not renewed in time); the fence right before the flip refuses, traffic stays."""
    assert stack.selector() == "blue"

    def another_controller_takes_the_lease() -> None:
        stack.patch_lease(
            {"holderIdentity": "ctl-other/sw-x", "renewTime": micro_time(datetime.now(UTC))}
        )

    engine = stack.engine(smoke=SmokeThen(another_controller_takes_the_lease))
    try:
        with pytest.raises(ReleaseAborted) as caught:
            engine.switch(version="2")
    finally:
        stack.patch_lease({"holderIdentity": None})
    assert isinstance(caught.value.cause, ReleaseInProgress)
    assert caught.value.operation["failed_step"] == "promote"
    assert "not flipping traffic" in caught.value.detail
    assert stack.selector() == "blue"


def test_a_controller_killed_mid_release_recovers_and_releases_again(stack: Stack) -> None:
    assert stack.selector() == "blue"
    with pytest.raises(ControllerKilled):
        stack.engine(smoke=SmokeThen(kill_controller)).switch(version="2")
    stack.leave_lease_to_a_dead_controller()
    left = stack.journal().current
    assert left is not None and left.status == "running" and left.steps[-1].name == "verify"

    restarted, recovered = _restart_after_the_lease_expires(stack)

    assert recovered is not None and recovered.status == "aborted"
    assert recovered.failed_step == "verify"
    assert "live traffic stayed on blue" in (recovered.reason or "")
    assert stack.journal().current is None
    op = restarted.switch(version="2")  # takes the expired lease over
    assert op.status == "promoted", op.reason
    assert op.steps[1].detail == "green already holds v2"
    assert stack.selector() == "green"


def _restart_after_the_lease_expires(stack: Stack) -> tuple[ReleaseEngine, Operation | None]:
    """A new controller: refused while the dead one's lease looks held, then recovers."""
    restarted = stack.engine()
    with pytest.raises(ReleaseInProgress):  # first seen now: expiry runs on our clock
        restarted.recover()
    time.sleep(1.2)  # the dead holder's record stayed unchanged for its whole duration
    return restarted, restarted.recover()


def test_a_controller_killed_after_the_flip_recovers_as_promoted(stack: Stack) -> None:
    assert stack.selector() == "green"
    dying = stack.engine(registry=RegistryDyingAfterFlip(tracking_uri=stack.tracking_uri))
    with pytest.raises(ControllerKilled):
        dying.switch(version="1")
    stack.leave_lease_to_a_dead_controller()
    assert stack.selector() == "blue"  # the flip itself had happened

    restarted, recovered = _restart_after_the_lease_expires(stack)

    assert recovered is not None and recovered.status == "promoted"
    assert restarted.journal.previous == Stable(color="green", version="2")
    assert restarted.rollback().status == "rolled_back"
    assert stack.selector() == "green"
