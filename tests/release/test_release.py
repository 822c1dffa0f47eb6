"""Releases on the real local stack: a real MLflow server, model-server processes, HTTP."""

from __future__ import annotations

import threading
import time

import pytest
from mlflow import MlflowClient

from bluegreen.client import ControllerClient, ControllerError
from bluegreen.stack import LocalStack
from bluegreen.traffic import TrafficProbe
from tests.support.iris import IrisVersions
from tests.support.local_stack import served_version
from tests.support.models import IRIS_CLASSES, IRIS_ROWS

GOLDEN = {"inputs": IRIS_ROWS, "expected": IRIS_CLASSES}


def test_switch_and_rollback_under_load_with_zero_failed_requests(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions
) -> None:
    with TrafficProbe(url=f"{stack.router_url}/predict", clients=4) as traffic:
        time.sleep(1.0)
        switch = client.switch(version=iris.other)
        flipped = time.monotonic()
        time.sleep(1.5)
        rollback_started = time.monotonic()
        rollback = client.rollback()
        rolled_back = time.monotonic()
        time.sleep(1.5)
    assert switch["status"] == "promoted"
    assert [s["name"] for s in switch["steps"]] == ["resolve", "stage", "verify", "promote"]
    assert all(s["ok"] for s in switch["steps"])
    assert (switch["from_color"], switch["to_color"]) == ("blue", "green")
    assert rollback["status"] == "rolled_back"
    assert rollback["seconds"] < 1.0

    records = traffic.snapshot()
    assert len(records) > 100
    assert traffic.failed() == []
    between = [r for r in records if flipped <= r.started < rollback_started]
    after = [r for r in records if r.started >= rolled_back]
    assert between and {r.version for r in between} == {iris.other}
    assert {r.color for r in between} == {"green"}
    assert after and {r.version for r in after} == {iris.good}
    status = client.status()
    assert status["live"] == {"color": "blue", "version": iris.good, "ready": True}
    assert status["standby"] == {"color": "green", "version": iris.other, "ready": True}


def test_same_version_is_unchanged(client: ControllerClient, iris: IrisVersions) -> None:
    op = client.switch(version=iris.good)
    assert op["status"] == "unchanged"
    assert [s["name"] for s in op["steps"]] == ["resolve"]
    assert client.status()["standby"]["version"] is None  # nothing was staged


def test_switch_by_alias(client: ControllerClient, iris: IrisVersions) -> None:
    MlflowClient(
        tracking_uri=iris.tracking_uri, registry_uri=iris.tracking_uri
    ).set_registered_model_alias(iris.model, "champion", iris.third)
    op = client.switch(alias="champion")
    assert op["status"] == "promoted"
    assert op["target_version"] == iris.third
    assert op["requested"] == {"alias": "champion"}


@pytest.mark.parametrize("request_body", [{"version": "999"}, {"alias": "no-such-alias"}])
def test_unknown_version_or_alias_is_404(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions, request_body: dict[str, str]
) -> None:
    with pytest.raises(ControllerError) as caught:
        client.switch(**request_body)
    assert caught.value.status == 404
    assert caught.value.body["error"] == "version_not_found"
    assert caught.value.body["operation"]["failed_step"] == "resolve"
    assert served_version(stack) == iris.good


def _assert_aborted(
    stack: LocalStack,
    client: ControllerClient,
    iris: IrisVersions,
    *,
    version: str,
    step: str,
    status: int,
    reason: str,
    golden: dict | None = None,
) -> dict:
    body: dict = {"version": version}
    if golden:
        body["golden"] = golden
    with TrafficProbe(url=f"{stack.router_url}/predict", clients=2) as traffic:
        answer = client._http.post("/switch", json=body)
    assert answer.status_code == status, answer.text
    op = answer.json()["operation"]
    assert op["status"] == "aborted"
    assert op["failed_step"] == step
    assert reason in op["reason"]
    assert traffic.failed() == []
    assert {r.version for r in traffic.snapshot()} == {iris.good}
    after = client.status()
    assert after["live"]["color"] == "blue"
    assert after["live"]["version"] == iris.good
    assert client.history(1)[0]["id"] == op["id"]
    return op


@pytest.mark.parametrize(
    ("kind", "step", "status", "reason", "golden"),
    [
        ("broken", "stage", 502, "cannot serve", None),
        ("constant", "verify", 422, "differ from the golden", GOLDEN),
        ("slow", "verify", 422, "over the 500 ms budget", None),
    ],
    ids=["missing-artifact-aborts-at-stage", "wrong-predictions-abort-at-verify",
         "slow-version-aborts-at-verify"],
)  # fmt: skip
def test_a_bad_version_aborts_and_live_traffic_stays(
    stack: LocalStack,
    client: ControllerClient,
    iris: IrisVersions,
    kind: str,
    step: str,
    status: int,
    reason: str,
    golden: dict | None,
) -> None:
    _assert_aborted(
        stack,
        client,
        iris,
        version=getattr(iris, kind),
        step=step,
        status=status,
        reason=reason,
        golden=golden,
    )


def test_version_without_example_needs_a_golden_file(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions
) -> None:
    _assert_aborted(
        stack,
        client,
        iris,
        version=iris.no_example,
        step="verify",
        status=422,
        reason="no serving input example",
    )
    op = client._http.post("/switch", json={"version": iris.no_example, "golden": GOLDEN}).json()
    assert op["status"] == "promoted"
    assert "already holds" in op["steps"][1]["detail"]  # the staged standby was reused


def test_two_releases_at_once_one_gets_409(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions
) -> None:
    answers: list[int] = []

    def release(version: str) -> None:
        answers.append(client._http.post("/switch", json={"version": version}).status_code)

    threads = [threading.Thread(target=release, args=(v,)) for v in (iris.other, iris.third)]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 409]
    assert client.status()["live"]["color"] == "green"


def test_rollback_with_nothing_to_return_to_is_409(client: ControllerClient) -> None:
    with pytest.raises(ControllerError) as caught:
        client.rollback()
    assert caught.value.status == 409
    assert caught.value.body["error"] == "rollback_unavailable"
    assert client.status()["live"]["color"] == "blue"


def test_rollback_refused_when_standby_no_longer_holds_the_previous_version(
    stack: LocalStack, client: ControllerClient, iris: IrisVersions
) -> None:
    assert client.switch(version=iris.other)["status"] == "promoted"  # blue keeps good
    aborted = client._http.post("/switch", json={"version": iris.constant, "golden": GOLDEN})
    assert aborted.status_code == 422
    # the aborted release left blue holding `constant`, not the previous `good`
    answer = client._http.post("/rollback")
    assert answer.status_code == 409
    assert f"not v{iris.good}" in answer.json()["detail"]
    assert served_version(stack) == iris.other


def test_live_alias_and_color_tag_follow_switch_and_rollback(
    client: ControllerClient, iris: IrisVersions
) -> None:
    registry = MlflowClient(tracking_uri=iris.tracking_uri, registry_uri=iris.tracking_uri)
    client.switch(version=iris.other)
    assert registry.get_model_version_by_alias(iris.model, "live").version == iris.other
    assert registry.get_model_version(iris.model, iris.other).tags["bluegreen.color"] == "green"
    client.rollback()
    assert registry.get_model_version_by_alias(iris.model, "live").version == iris.good
    assert registry.get_model_version(iris.model, iris.good).tags["bluegreen.color"] == "blue"


def test_switch_without_waiting_answers_202(client: ControllerClient, iris: IrisVersions) -> None:
    answer = client._http.post("/switch", params={"wait": "false"}, json={"version": iris.other})
    assert answer.status_code == 202
    assert answer.headers["location"] == f"/operations/{answer.json()['id']}"
    deadline = time.monotonic() + 120
    while (op := client.operation(answer.json()["id"]))["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert op["status"] == "promoted"


def test_bad_switch_requests_are_400(client: ControllerClient, iris: IrisVersions) -> None:
    for body in (
        {},
        {"version": "1", "alias": "x"},
        {"version": "latest"},
        {"version": 0},
        {"alias": ""},
        {"version": "1", "model": "other-model"},
        [],
    ):
        answer = client._http.post("/switch", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert set(answer.json()) >= {"error", "detail"}
    assert client.history() == []
