"""ServiceSelectorRouter against the API stand-in: read, flip, conflicts, no-ops."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from controller.errors import RouterUnavailable
from controller.kubernetes.service_router import ServiceSelectorRouter
from tests.kubernetes.cluster import ClusterEmulator
from tests.support.emulated_cluster import NAMESPACE, RELEASE


@pytest.fixture
def router(installed: client.ApiClient) -> ServiceSelectorRouter:
    return ServiceSelectorRouter(namespace=NAMESPACE, release=RELEASE, api_client=installed)


def service(api: client.ApiClient) -> dict[str, Any]:
    core = client.CoreV1Api(api)
    return api.sanitize_for_serialization(core.read_namespaced_service(RELEASE, NAMESPACE))


def annotate(api: client.ApiClient, key: str, value: str) -> None:
    """Someone else (kubectl, helm) writes the live Service."""
    client.CoreV1Api(api).patch_namespaced_service(
        RELEASE,
        NAMESPACE,
        {"metadata": {"annotations": {key: value}}},
        _content_type="application/merge-patch+json",
    )


def test_current_reads_the_color_selector_and_the_resource_version(
    router: ServiceSelectorRouter, installed: client.ApiClient
) -> None:
    route = router.current()
    assert route.color == "blue"
    assert route.revision == service(installed)["metadata"]["resourceVersion"]


def test_switch_patches_only_the_color_selector(
    router: ServiceSelectorRouter, installed: client.ApiClient
) -> None:
    before = service(installed)
    route = router.switch(to="green", expected_revision=router.current().revision)
    after = service(installed)
    assert route.color == "green"
    assert (
        route.revision
        == after["metadata"]["resourceVersion"]
        != before["metadata"]["resourceVersion"]
    )
    assert after["spec"]["selector"] == {
        **before["spec"]["selector"],
        "bluegreen.io/color": "green",
    }
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert after["spec"]["ports"] == before["spec"]["ports"]
    assert router.current() == route


def test_an_unrelated_write_during_the_release_does_not_abort_the_flip(
    router: ServiceSelectorRouter, installed: client.ApiClient, emulator: ClusterEmulator
) -> None:
    """Issue 12 item 11: a label or status write between resolve and flip is no conflict."""
    seen = router.current()  # at resolve
    annotate(installed, "example.com/touched-by", "helm")  # minutes later, someone else
    emulator.interfere("services", RELEASE, {"status": {"loadBalancer": {"ingress": []}}})
    route = router.switch(to="green", expected_revision=seen.revision)
    assert route.color == "green"
    after = service(installed)
    assert after["spec"]["selector"]["bluegreen.io/color"] == "green"
    assert after["metadata"]["annotations"]["example.com/touched-by"] == "helm"
    assert emulator.conflicts == 0


def test_a_concurrent_flip_is_detected_by_the_test_op_not_overwritten(
    router: ServiceSelectorRouter, installed: client.ApiClient, emulator: ClusterEmulator
) -> None:
    """Between our read and our patch someone else flips to green: our `test` of "blue" fails
    (422), we re-read, and find traffic where we wanted it, without writing over theirs."""
    seen = router.current()
    emulator.interfere("services", RELEASE, {"spec": {"selector": {"bluegreen.io/color": "green"}}})
    assert router.switch(to="green", expected_revision=seen.revision).color == "green"
    assert service(installed)["spec"]["selector"]["bluegreen.io/color"] == "green"


def test_a_selector_rewritten_in_between_is_not_clobbered(
    router: ServiceSelectorRouter, installed: client.ApiClient, emulator: ClusterEmulator
) -> None:
    """A merge patch would have put the color back; the `test` op refuses instead."""
    seen = router.current()
    emulator.interfere("services", RELEASE, {"spec": {"selector": {"bluegreen.io/color": None}}})
    with pytest.raises(RouterUnavailable, match="not blue or green"):
        router.switch(to="green", expected_revision=seen.revision)
    assert "bluegreen.io/color" not in service(installed)["spec"]["selector"]


def test_the_flip_is_one_json_patch_that_tests_the_selector(
    router: ServiceSelectorRouter, emulator: ClusterEmulator
) -> None:
    router.switch(to="green", expected_revision=router.current().revision)
    (write,) = [w for w in emulator.writes if w.path.endswith(f"/services/{RELEASE}")]
    assert write.body == [
        {"op": "test", "path": "/spec/selector/bluegreen.io~1color", "value": "blue"},
        {"op": "replace", "path": "/spec/selector/bluegreen.io~1color", "value": "green"},
    ]
    assert write.field_manager == "bluegreen-controller"


def test_switch_to_the_live_color_is_a_no_op(
    router: ServiceSelectorRouter, installed: client.ApiClient
) -> None:
    before = router.current()
    assert router.switch(to="blue", expected_revision=before.revision) == before
    assert service(installed)["metadata"]["resourceVersion"] == before.revision  # nothing written


def test_a_flip_and_back_round_trips(router: ServiceSelectorRouter) -> None:
    first = router.switch(to="green", expected_revision=router.current().revision)
    second = router.switch(to="blue", expected_revision=first.revision)
    assert second.color == "blue" and second.revision != first.revision


def test_transient_errors_are_retried_then_router_unavailable(
    router: ServiceSelectorRouter, emulator: ClusterEmulator
) -> None:
    emulator.fail_next(2, path_contains=f"/services/{RELEASE}")
    assert router.current().color == "blue"
    emulator.fail_next(100, path_contains=f"/services/{RELEASE}")
    with pytest.raises(RouterUnavailable, match="answered 503"):
        router.current()


def test_a_service_without_a_color_selector_is_reported(
    router: ServiceSelectorRouter, installed: client.ApiClient
) -> None:
    client.CoreV1Api(installed).patch_namespaced_service(
        RELEASE,
        NAMESPACE,
        {"spec": {"selector": {"bluegreen.io/color": None}}},
        _content_type="application/merge-patch+json",
    )
    with pytest.raises(RouterUnavailable, match="not blue or green"):
        router.current()
