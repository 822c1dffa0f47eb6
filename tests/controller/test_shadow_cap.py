"""The mirror rate cap on the controller's side: its bounds at the API, the per-switch
override over the settings' default, its split between the live pods, and what the record
says of it. In-process: the engine on in-memory fakes, the API through `TestClient`, the
model servers' admin API as an `httpx.MockTransport` (tests/model_server/test_shadow.py
holds the cap on real model servers)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from controller.analysis.analyzer import Probes
from controller.analysis.checks import shadow_checks
from controller.api import create_app
from controller.domain.analysis import (
    MIRROR_RPS_MAX,
    SHADOW_MAX_RPS_DEFAULT,
    AnalysisPolicy,
    ShadowReport,
)
from controller.metrics import ControllerMetrics
from controller.serving_probe import HttpShadowTraffic
from controller.settings import ControllerSettings
from tests.controller.test_analysis import FAST, Metrics, Shadow
from tests.support.engine_fakes import World

pytestmark = pytest.mark.unit

AGREEING = ShadowReport(compared=40, rows=120, agreed_rows=120)


@pytest.fixture
def shadow() -> Shadow:
    return Shadow(AGREEING)


@pytest.fixture
def api(shadow: Shadow) -> Iterator[TestClient]:
    world = World()
    engine = world.engine(
        policy={"analysis": AnalysisPolicy(**FAST)},
        probes=Probes(metrics=Metrics(), shadow=shadow),
    )
    app = create_app(engine, token=None, metrics=ControllerMetrics(), max_body_bytes=1 << 20)
    with TestClient(app) as client:
        yield client


def _switch(api: TestClient, **body: object) -> httpx.Response:
    return api.post("/switch", json={"version": "2", "shadow_s": 0.05, **body})


@pytest.mark.parametrize(
    "bad",
    [-1, 0, -0.0, MIRROR_RPS_MAX * 1.001, 1e12, "fast", [50], None, float("inf")],
    ids=["negative", "zero", "minus-zero", "above-max", "absurd", "text", "list", "null", "inf"],
)
def test_a_bad_cap_is_refused_before_anything_moves(
    api: TestClient, shadow: Shadow, bad: object
) -> None:
    if bad is None:  # null is "the default" for every per-switch field: not an error
        assert _switch(api, shadow_max_rps=bad).status_code == 200
        return
    body = {"version": "2", "shadow_s": 0.05, "shadow_max_rps": bad}
    answer = api.post(
        "/switch",
        content=json.dumps(body, allow_nan=True),  # inf as JSON's Infinity, as a client may
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["error"] == "bad_request"
    assert "shadow_max_rps" in error["detail"]
    assert shadow.started == []
    assert api.get("/history").json() == []


def test_a_gate_the_window_cannot_gather_enough_for_is_refused(
    api: TestClient, shadow: Shadow
) -> None:
    # 2 s at 10 a second: 20 comparisons at most, and the gate wants 50
    answer = _switch(
        api,
        shadow_s=2,
        shadow_max_rps=10,
        min_agreement=0.9,
        analysis={"min_requests": 50},
    )
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert "at most 20 requests" in detail and "min_requests 50" in detail
    assert shadow.started == []
    # without a gate nothing is let through unjudged: the same window only reports
    assert _switch(api, shadow_s=0.05, shadow_max_rps=10).status_code == 200


def test_the_switch_overrides_the_default_cap_and_the_record_shows_it(
    api: TestClient, shadow: Shadow
) -> None:
    assert _switch(api).json()["analysis"]["shadow"]["max_rps"] == SHADOW_MAX_RPS_DEFAULT
    api.post("/rollback")
    op = _switch(api, shadow_max_rps=250).json()
    assert op["status"] == "promoted", op
    assert shadow.max_rps == [SHADOW_MAX_RPS_DEFAULT, 250]
    assert op["analysis"]["shadow"]["max_rps"] == 250


def test_the_settings_default_reaches_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUEGREEN_SHADOW_MAX_RPS", "75")
    assert ControllerSettings().analysis_policy().shadow_max_rps == 75
    monkeypatch.setenv("BLUEGREEN_SHADOW_MAX_RPS", "-3")
    with pytest.raises(ValueError, match="shadow_max_rps"):
        ControllerSettings()


def test_the_default_cap_lets_a_one_second_window_reach_the_gates_minimum() -> None:
    """The default's reason: `min_requests` comparisons a second, at the defaults."""
    defaults = ControllerSettings().analysis_policy()
    assert defaults.shadow_max_rps * 1.0 >= defaults.min_requests


def test_an_inconclusive_window_names_the_cap() -> None:
    policy = AnalysisPolicy(min_agreement=0.9, min_requests=50, shadow_max_rps=5)
    checks = shadow_checks(
        ShadowReport(compared=20, rows=20, agreed_rows=20, skipped_by_cap=480), policy
    )
    assert checks[0].verdict == "inconclusive"
    assert "480 more were over the mirror cap of 5/s" in checks[0].detail


def test_the_cap_is_split_between_the_live_pods_and_their_counts_summed() -> None:
    started: dict[str, dict[str, object]] = {}

    def model_server(request: httpx.Request) -> httpx.Response:
        pod = request.url.host
        if request.method == "PUT":
            started[pod] = json.loads(request.content)
            return httpx.Response(200, json={"session": "op", "mirroring": True})
        return httpx.Response(
            200,
            json={"session": "op", "mirrored": 30, "skipped_by_cap": 70, "dropped": 1, "failed": 0},
        )

    traffic = HttpShadowTraffic(model_server_token="t")
    traffic._client = httpx.Client(transport=httpx.MockTransport(model_server))  # no sockets
    pods = ["http://pod-a", "http://pod-b", "http://pod-c", "http://pod-d"]
    traffic.start(pods, target="http://green", sample=0.5, max_rps=50, session="op", max_seconds=9)
    assert {pod: body["max_rps"] for pod, body in started.items()} == {
        "pod-a": 12.5,
        "pod-b": 12.5,
        "pod-c": 12.5,
        "pod-d": 12.5,
    }
    counts = traffic.stop(pods, session="op")
    assert (counts.mirrored, counts.skipped_by_cap, counts.dropped) == (120, 280, 4)
