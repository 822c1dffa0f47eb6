"""DeploymentColorBackend against the API stand-in: pin, the readiness gate, failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from controller.errors import BackendUnavailable, StageFailed, StageTimeout
from controller.kubernetes.colors import DeploymentColorBackend, rollout_pending
from controller.kubernetes.rollout import pin_patch
from controller.settings import ControllerSettings
from tests.kubernetes.cluster import ClusterEmulator, install_release, wait_for
from tests.kubernetes.kubelet import Kubelet, ScriptedPods
from tests.support.emulated_cluster import (
    IN_CLUSTER_COLOR_URL,
    NAMESPACE,
    RELEASE,
    color_backend,
)

GREEN = f"{RELEASE}-green"
BLUE = f"{RELEASE}-blue"


def read(api: client.ApiClient, name: str) -> dict[str, Any]:
    apps = client.AppsV1Api(api)
    return api.sanitize_for_serialization(apps.read_namespaced_deployment(name, NAMESPACE))


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def set_status(api: client.ApiClient, name: str, status: dict[str, Any]) -> None:
    client.AppsV1Api(api).patch_namespaced_deployment_status(
        name, NAMESPACE, {"status": status}, _content_type="application/merge-patch+json"
    )


def in_thread(fn: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """Run `fn` in a started thread; its exception, if any, lands in the list."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_pin_patches_env_and_annotations_then_waits_for_the_rollout(
    backend: DeploymentColorBackend, kubelet: Kubelet, pods: ScriptedPods, installed: Any
) -> None:
    pods.ready_after[GREEN] = 0.6
    assert backend.pinned_version("green") == "1"  # installed as a warm copy of live v1
    before = read(installed, GREEN)

    started = time.monotonic()
    backend.pin("green", model="iris", version="2", timeout=10)
    took = time.monotonic() - started

    after = read(installed, GREEN)
    assert took >= 0.6, "pin returned before the new pods were ready"
    assert after["metadata"]["annotations"]["bluegreen.io/model-version"] == "2"
    template_annotations = after["spec"]["template"]["metadata"]["annotations"]
    assert template_annotations["bluegreen.io/model-version"] == "2"
    assert template_annotations["bluegreen.io/pinned-at"]  # every pin is a new rollout
    env = env_of(after)
    assert env["MODEL_VERSION"] == "2" and env["MODEL_NAME"] == "iris"
    assert env["SERVING_COLOR"] == "green"  # the rest of the env is untouched
    assert env["MODEL_SERVER_ADMIN_TOKEN_FILE"] == env_of(before)["MODEL_SERVER_ADMIN_TOKEN_FILE"]
    assert after["spec"]["replicas"] == 2
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert after["status"]["observedGeneration"] == after["metadata"]["generation"]
    assert after["status"]["readyReplicas"] == after["status"]["replicas"] == 2
    assert backend.pinned_version("green") == "2"
    assert backend.is_ready("green")
    assert [p.version for p in kubelet.pods(GREEN)] == ["2", "2"]
    # pin returns once the EndpointSlices list every new pod: the smoke test reaches them all
    assert backend.ready_endpoints("green") == sorted(
        f"http://{p.address}:8080" for p in kubelet.pods(GREEN)
    )


def test_pin_scales_a_parked_color_to_the_charts_target(
    backend: DeploymentColorBackend, kubelet: Kubelet, installed: Any
) -> None:
    scale(installed, GREEN, 0)
    assert backend.pinned_version("green") is None  # 0 replicas hold nothing
    backend.pin("green", model="iris", version="2", timeout=10)
    assert read(installed, GREEN)["spec"]["replicas"] == 2  # bluegreen.io/target-replicas


def test_ready_endpoints_are_every_ready_pod_of_the_color(
    backend: DeploymentColorBackend, kubelet: Kubelet, pods: ScriptedPods
) -> None:
    """Two replicas per color: both are listed, each color its own, none twice."""
    blue, green = backend.ready_endpoints("blue"), backend.ready_endpoints("green")
    assert len(blue) == len(green) == 2
    assert set(blue).isdisjoint(green)
    assert blue == sorted(f"http://{p.address}:8080" for p in kubelet.pods(BLUE))
    pods.ready_after[GREEN] = None
    pinning, _ = in_thread(lambda: backend.pin("green", model="iris", version="2", timeout=2))
    wait_for(lambda: len(kubelet.pods(GREEN)) == 4, what="two new green pods next to the old")
    time.sleep(0.3)
    assert len(backend.ready_endpoints("green")) == 2  # the new pods are not ready: not listed
    pinning.join(5)


def test_the_settle_waits_for_lagging_endpoint_slices(
    backend: DeploymentColorBackend, kubelet: Kubelet
) -> None:
    """The rollout completes before the EndpointSlices list the pods (about a second on a
    real cluster); pin returns only once they do."""
    kubelet.slices_lag = 1.0
    started = time.monotonic()
    backend.pin("green", model="iris", version="2", timeout=10)
    assert time.monotonic() - started >= 1.0
    assert len(backend.ready_endpoints("green")) == 2


def test_is_ready_is_false_while_a_rolling_update_surges(
    backend: DeploymentColorBackend, kubelet: Kubelet, pods: ScriptedPods, installed: Any
) -> None:
    # The new pods turn ready 3 s after they start: a wide window to look at the surge in
    # (with 1 s, a loaded machine sometimes saw the old pods already gone).
    pods.ready_after[BLUE] = 3.0
    pinning, errors = in_thread(lambda: backend.pin("blue", model="iris", version="2", timeout=10))
    try:
        wait_for(lambda: len(kubelet.pods(BLUE)) == 4, what="new blue pods next to the old ones")
        surge: dict[str, Any] = {}

        def surging() -> bool:
            surge.update(read(installed, BLUE)["status"])
            return surge.get("updatedReplicas") == 2 and surge.get("replicas") == 4

        wait_for(surging, what="the surge in the status")
        assert surge["readyReplicas"] == 2  # only the old pods
        assert not backend.is_ready("blue")
    finally:
        pinning.join(15)
    assert errors == []
    assert backend.is_ready("blue")
    assert [p.version for p in kubelet.pods(BLUE)] == ["2", "2"]  # the old pods are gone


def complete(api: client.ApiClient, name: str) -> dict[str, int]:
    generation = read(api, name)["metadata"]["generation"]
    return {
        "observedGeneration": generation,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
    }


def scale(api: client.ApiClient, name: str, replicas: int) -> None:
    client.AppsV1Api(api).patch_namespaced_deployment(
        name,
        NAMESPACE,
        {"spec": {"replicas": replicas}},
        _content_type="application/merge-patch+json",
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"observedGeneration": 0}, "waiting for the deployment controller to observe"),
        ({"updatedReplicas": 1}, "1 of 2 replicas updated"),
        ({"replicas": 3}, "1 old replicas pending termination"),
        ({"readyReplicas": 1, "availableReplicas": 1}, "1 of 2 updated replicas ready"),
        ({"availableReplicas": 1}, "1 of 2 updated replicas available"),
    ],
)
def test_readiness_gate_follows_the_status(
    backend: DeploymentColorBackend, installed: Any, change: dict[str, int], reason: str | None
) -> None:
    set_status(installed, BLUE, {**complete(installed, BLUE), **change})
    deployment = client.AppsV1Api(installed).read_namespaced_deployment(BLUE, NAMESPACE)
    assert backend.is_ready("blue") is (reason is None)
    found = rollout_pending(deployment)
    assert (found is None) if reason is None else (reason in (found or ""))


def test_a_color_scaled_to_zero_is_never_ready(
    backend: DeploymentColorBackend, installed: Any
) -> None:
    scale(installed, GREEN, 0)
    zeros = {"replicas": 0, "updatedReplicas": 0, "readyReplicas": 0, "availableReplicas": 0}
    set_status(installed, GREEN, {**complete(installed, GREEN), **zeros})
    assert not backend.is_ready("green")
    assert backend.pinned_version("green") is None


def test_pin_times_out_with_stage_timeout(
    backend: DeploymentColorBackend, kubelet: Kubelet, pods: ScriptedPods
) -> None:
    pods.ready_after[GREEN] = None  # never ready
    started = time.monotonic()
    with pytest.raises(StageTimeout) as caught:
        backend.pin("green", model="iris", version="2", timeout=1.0)
    assert 1.0 <= time.monotonic() - started < 4
    assert "not ready with v2 within 1 s" in caught.value.detail
    assert "old replicas pending termination" in caught.value.detail


def test_progress_deadline_exceeded_fails_the_stage(api: client.ApiClient) -> None:
    install_release(api, namespace=NAMESPACE, release=RELEASE, progress_deadline_seconds=1)
    pods = ScriptedPods()
    pods.ready_after[GREEN] = None
    backend = color_backend(api, poll_interval=0.05)
    running = Kubelet(api, namespace=NAMESPACE, names=[GREEN], runtime=pods).start()
    try:
        started = time.monotonic()
        with pytest.raises(StageFailed) as caught:
            backend.pin("green", model="iris", version="2", timeout=30)
        assert time.monotonic() - started < 5, "should fail at the deadline, not the timeout"
    finally:
        running.stop()
    assert "did not come up with v2" in caught.value.detail
    assert "has timed out progressing" in caught.value.detail


FAILED = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
    "message": 'ReplicaSet "bg-green-old" has timed out progressing.',
    "lastUpdateTime": "2026-01-01T00:00:00Z",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
}


def test_a_stale_deadline_condition_does_not_fail_the_next_rollout(
    backend: DeploymentColorBackend, installed: Any, pods: ScriptedPods
) -> None:
    """Issue 12 item 6: the Deployment controller has observed the new generation but still
    carries the deadline condition of an earlier rollout; it must not fail this one."""
    observed_ahead = {**complete(installed, GREEN), "observedGeneration": 999}
    set_status(installed, GREEN, {**observed_ahead, "conditions": [FAILED]})
    pinning, errors = in_thread(lambda: backend.pin("green", model="iris", version="2", timeout=10))
    time.sleep(0.5)  # the pin is waiting on a status that still carries the old condition
    assert errors == [], "failed on a deadline condition that predates the pin"
    running = Kubelet(installed, namespace=NAMESPACE, names=[GREEN], runtime=pods).start()
    try:
        pinning.join(15)
    finally:
        running.stop()
    assert errors == []
    assert backend.is_ready("green")


def test_retrying_a_version_whose_rollout_timed_out_starts_a_new_rollout(
    api: client.ApiClient,
) -> None:
    """Issue 12 item 6: re-pinning the same version is not a no-op patch that inherits the
    old ProgressDeadlineExceeded: the pod template changes, so a new rollout starts."""
    install_release(api, namespace=NAMESPACE, release=RELEASE, progress_deadline_seconds=1)
    pods = ScriptedPods()
    pods.ready_after[GREEN] = None  # the first attempt never comes up
    backend = color_backend(api, poll_interval=0.05)
    running = Kubelet(api, namespace=NAMESPACE, names=[GREEN], runtime=pods).start()
    try:
        with pytest.raises(StageFailed, match="has timed out progressing"):
            backend.pin("green", model="iris", version="2", timeout=30)
        pods.ready_after[GREEN] = 0.2  # whatever blocked it is fixed; the operator retries
        backend.pin("green", model="iris", version="2", timeout=30)
    finally:
        running.stop()
    assert backend.is_ready("green")


def test_pin_rereads_and_retries_after_a_conflicting_write(
    backend: DeploymentColorBackend, kubelet: Kubelet, emulator: ClusterEmulator, installed: Any
) -> None:
    emulator.interfere("deployments", GREEN)
    backend.pin("green", model="iris", version="2", timeout=10)
    assert emulator.conflicts == 1
    assert env_of(read(installed, GREEN))["MODEL_VERSION"] == "2"


def test_pin_refuses_a_deployment_without_the_model_container(
    backend: DeploymentColorBackend, installed: Any
) -> None:
    client.AppsV1Api(installed).patch_namespaced_deployment(
        GREEN,
        NAMESPACE,
        [{"op": "replace", "path": "/spec/template/spec/containers/0/name", "value": "other"}],
        _content_type="application/json-patch+json",
    )
    with pytest.raises(StageFailed, match="no container named 'model-server'"):
        backend.pin("green", model="iris", version="2", timeout=1)


def test_transient_api_errors_are_retried(
    backend: DeploymentColorBackend, emulator: ClusterEmulator
) -> None:
    emulator.fail_next(2, path_contains="/deployments/")
    assert backend.pinned_version("blue") == "1"


def test_persistent_api_errors_become_backend_unavailable(
    backend: DeploymentColorBackend, emulator: ClusterEmulator
) -> None:
    emulator.fail_next(100, path_contains="/deployments/")
    with pytest.raises(BackendUnavailable, match="answered 503"):
        backend.pinned_version("blue")


def test_a_permanent_refusal_is_not_retried(
    backend: DeploymentColorBackend, emulator: ClusterEmulator
) -> None:
    emulator.fail_next(100, status=403, path_contains="/deployments/")
    with pytest.raises(BackendUnavailable, match=r"refused \(403"):
        backend.is_ready("blue")
    assert emulator.failed_requests == 1


def test_an_unreachable_api_server_is_backend_unavailable() -> None:
    from tests.support.ports import free_port

    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    backend = DeploymentColorBackend(
        namespace=NAMESPACE,
        release=RELEASE,
        api_client=client.ApiClient(configuration),
        color_url_template=IN_CLUSTER_COLOR_URL,
    )
    with pytest.raises(BackendUnavailable, match="unreachable"):
        backend.pinned_version("blue")


def test_endpoint_comes_from_the_template(api: client.ApiClient) -> None:
    default = DeploymentColorBackend(
        namespace="prod",
        release="iris",
        api_client=api,
        color_url_template=ControllerSettings().k8s_color_url_template,
    )
    assert default.endpoint("green") == "http://iris-green.prod.svc:80"
    per_color = DeploymentColorBackend(
        namespace="prod",
        release="iris",
        api_client=api,
        color_url_template={"blue": "http://127.0.0.1:8001", "green": "http://127.0.0.1:8002"},
    )
    assert per_color.endpoint("green") == "http://127.0.0.1:8002"


# -- replicas: the controller's, never the chart's (issue 12 items 3, 4, 12) ---------------


def test_start_up_scales_each_color_to_the_charts_target(api: client.ApiClient) -> None:
    """The chart renders no `spec.replicas` (the API server defaults it to 1); the controller
    scales each color to `bluegreen.io/target-replicas`."""
    install_release(api, namespace=NAMESPACE, release=RELEASE, replicas=3)
    assert read(api, BLUE)["spec"]["replicas"] == 1  # as created from the chart
    backend = color_backend(api)
    backend.reconcile_replicas()
    assert read(api, BLUE)["spec"]["replicas"] == read(api, GREEN)["spec"]["replicas"] == 3


def test_with_autoscaling_the_target_is_a_floor_not_a_count(api: client.ApiClient) -> None:
    install_release(api, namespace=NAMESPACE, release=RELEASE, replicas=2, autoscaling=True)
    backend = color_backend(api)
    backend.reconcile_replicas()  # 1 → the HPA's minReplicas
    assert read(api, BLUE)["spec"]["replicas"] == 2
    scale(api, BLUE, 5)  # the HPA scaled the live color up under load
    scale(api, GREEN, 0)  # an operator parked the standby
    backend.reconcile_replicas()
    assert read(api, BLUE)["spec"]["replicas"] == 5  # the HPA's, untouched
    assert read(api, GREEN)["spec"]["replicas"] == 0  # parked stays parked


def test_the_standby_is_scaled_to_the_live_count_before_the_flip(
    backend: DeploymentColorBackend, kubelet: Kubelet, installed: Any
) -> None:
    """Issue 12 item 12: the live color autoscaled to 4; the standby (at the HPA's floor)
    must take that traffic, so it grows to 4 and its new pods are ready before the flip."""
    scale(installed, BLUE, 4)
    summary = backend.match_replicas("green", like="blue", timeout=10)
    assert summary == f"{GREEN} scaled from 2 to 4 replicas like blue"
    assert read(installed, GREEN)["spec"]["replicas"] == 4
    assert backend.is_ready("green")
    assert len(backend.ready_endpoints("green")) == 4
    assert backend.match_replicas("green", like="blue", timeout=10) is None  # already equal


def test_every_write_names_the_controllers_field_manager(
    backend: DeploymentColorBackend, kubelet: Kubelet, emulator: ClusterEmulator, installed: Any
) -> None:
    """Issue 12 item 4: `managedFields` then say what the controller owns; Helm 4's
    server-side apply (which renders none of it) never contests those fields."""
    from controller.kubernetes.journal import ConfigMapJournal
    from controller.kubernetes.lease import LeaseLock
    from controller.kubernetes.service_router import ServiceSelectorRouter

    start = len(emulator.writes)
    common: dict[str, Any] = {"namespace": NAMESPACE, "release": RELEASE, "api_client": installed}
    with LeaseLock(**common).hold("sw-1"):
        backend.pin("green", model="iris", version="2", timeout=10)
        scale(installed, BLUE, 3)
        backend.match_replicas("green", like="blue", timeout=10)
        router = ServiceSelectorRouter(**common)
        router.switch(to="green", expected_revision=router.current().revision)
        journal = ConfigMapJournal(**common)
        journal.save(journal.load("iris"))
    ours = [
        w
        for w in emulator.writes[start:]
        if "/status" not in w.path
        and "endpointslices" not in w.path  # the kubelet's
        and not (w.path.endswith(f"/deployments/{BLUE}") and w.body == {"spec": {"replicas": 3}})
    ]
    kinds = {w.path.split("/")[-2] for w in ours if not w.path.endswith(("leases", "configmaps"))}
    assert {"deployments", "services", "leases", "configmaps"} <= kinds | {
        w.path.split("/")[-1] for w in ours
    }
    assert [w.path for w in ours if w.field_manager != "bluegreen-controller"] == []


def test_a_standby_parked_at_a_few_pods_stays_so_until_it_is_pinned_or_matched(
    api: client.ApiClient,
) -> None:
    """`BLUEGREEN_STANDBY_REPLICAS`: after the warm window the standby keeps 1 of 3 pods, and
    the start-up and periodic reconcile do not scale it back to the chart's count."""
    install_release(api, namespace=NAMESPACE, release=RELEASE, replicas=3)
    backend = color_backend(api)
    backend.reconcile_replicas()
    backend.scale_down("green", replicas=1)
    parked = read(api, GREEN)
    assert parked["spec"]["replicas"] == 1
    assert parked["metadata"]["annotations"]["bluegreen.io/parked-replicas"] == "1"
    backend.reconcile_replicas()
    assert read(api, GREEN)["spec"]["replicas"] == 1  # parked stays parked
    backend.scale_down("green", replicas=1)  # again: nothing to do
    assert read(api, GREEN)["metadata"]["generation"] == parked["metadata"]["generation"]
    # A pin (a release, or a rollback restaging it) brings it back to the chart's count.
    ops = pin_patch(parked, container="model-server", model="iris", version="2", pinned_at="t")
    assert {"op": "replace", "path": "/spec/replicas", "value": 3} in ops
    assert {"op": "remove", "path": "/metadata/annotations/bluegreen.io~1parked-replicas"} in ops
