"""Shadow traffic between two real model servers, the per-class counter the bake reads, and
the standby's exported shadow rows.

A live server (the well-fit version) mirrors its answered requests to a standby (the
constant-class version, or the same good version); the standby's report must count what
was compared and how much agreed, the live answers must be unaffected, and a standby that
never answers must cost the live side only dropped mirrors.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.iris import IrisVersions
from tests.support.model_servers import spawn_iris_server
from tests.support.models import IRIS_CLASSES, IRIS_ROWS

ADMIN = {"Authorization": "Bearer shadow-admin"}


@pytest.fixture(scope="module")
def servers(
    iris: IrisVersions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("shadow")
    started = {
        name: spawn_iris_server(
            iris, version, log_dir=logs, env={"MODEL_SERVER_ADMIN_TOKEN": "shadow-admin"}
        )
        for name, version in (("live", iris.good), ("good", iris.good), ("bad", iris.constant))
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield {name: server.url for name, server in started.items()}
    finally:
        for server in started.values():
            server.stop()


def _mirror(
    live: str, target: str, session: str, *, sample: float = 1.0, max_rps: float = 10_000
) -> None:
    """Start mirroring; the cap is out of the way unless a test sets it."""
    answer = httpx.put(
        f"{live}/shadow/mirror",
        json={
            "target": target,
            "sample": sample,
            "max_rps": max_rps,
            "session": session,
            "max_seconds": 60,
        },
        headers=ADMIN,
    )
    assert answer.status_code == 200, answer.text


def _stop(live: str) -> dict[str, int]:
    answer = httpx.delete(f"{live}/shadow/mirror", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _send(live: str, count: int) -> list[httpx.Response]:
    with httpx.Client(base_url=live, timeout=10) as client:
        return [client.post("/predict", json=IRIS_ROWS) for _ in range(count)]


def _report(url: str, session: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        report = httpx.get(f"{url}/shadow/report", params={"session": session}).json()
        if report["compared"] >= 30 or time.monotonic() > deadline:
            return report
        time.sleep(0.1)


def _shadow_rows(url: str) -> dict[str, float]:
    """The standby's exported shadow rows, by `agreed`."""
    text = httpx.get(f"{url}/metrics").text
    return {
        sample.labels["agreed"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "bluegreen_model_shadow_rows_total"
    }


def test_a_constant_standby_agrees_on_one_row_in_three(servers: dict[str, str]) -> None:
    _mirror(servers["live"], servers["bad"], "s-bad")
    answers = _send(servers["live"], 30)
    time.sleep(0.5)  # the mirror is fire-and-forget: let the senders drain
    sent = _stop(servers["live"])
    assert [a.status_code for a in answers] == [200] * 30
    assert all(a.json()["prediction"] == IRIS_CLASSES for a in answers)
    report = _report(servers["bad"], "s-bad")
    assert sent["mirrored"] == 30 and sent["dropped"] == 0
    assert (report["compared"], report["rows"], report["agreed_rows"]) == (30, 90, 30)
    assert report["standby_errors"] == 0
    # the same counts reach Prometheus (the dashboard's shadow agreement panel)
    assert _shadow_rows(servers["bad"]) == {"true": 30, "false": 60}


def test_the_same_version_agrees_on_every_row(servers: dict[str, str]) -> None:
    _mirror(servers["live"], servers["good"], "s-good")
    _send(servers["live"], 30)
    time.sleep(0.5)
    _stop(servers["live"])
    report = _report(servers["good"], "s-good")
    assert (report["compared"], report["rows"], report["agreed_rows"]) == (30, 90, 90)


def test_a_standby_that_never_answers_only_drops_mirrors(servers: dict[str, str]) -> None:
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(1024)  # accepts connections, never reads or answers
        target = f"http://127.0.0.1:{hole.getsockname()[1]}"
        _mirror(servers["live"], target, "s-hole")
        answers = _send(servers["live"], 400)
        sent = _stop(servers["live"])
    assert {a.status_code for a in answers} == {200}
    assert sent["mirrored"] == 0
    # beyond the bounded queue each one dropped; the rest dropped unsent at the end (or
    # failed, had the standby's timeout come first)
    assert sent["dropped"] >= 400 - 256 - 64
    assert sent["dropped"] + sent["failed"] == 400


def _mirror_outcomes(url: str) -> dict[str, float]:
    """The live side's exported mirror outcomes, by `outcome`."""
    text = httpx.get(f"{url}/metrics").text
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "bluegreen_model_shadow_mirror_requests_total"
    }


def _hammer(live: str, seconds: float, clients: int = 4) -> list[int]:
    """`clients` threads sending as fast as the server answers, for `seconds`."""
    statuses: list[int] = []
    lock = threading.Lock()
    until = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=live, timeout=10) as http:
            while time.monotonic() < until:
                status = http.post("/predict", json=IRIS_ROWS).status_code
                with lock:
                    statuses.append(status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_the_cap_holds_on_a_real_server_and_the_report_says_so(servers: dict[str, str]) -> None:
    cap = 10.0
    before = _mirror_outcomes(servers["live"])
    began = time.monotonic()
    _mirror(servers["live"], servers["good"], "s-cap", max_rps=cap)
    statuses = _hammer(servers["live"], seconds=3.0)
    sent = _stop(servers["live"])
    elapsed = time.monotonic() - began
    assert set(statuses) == {200}
    most = cap * elapsed + cap * 0.25  # the cap each second, and one burst
    assert len(statuses) > 2 * most, "the load must be well above the cap to test it"
    assert cap * 2 <= sent["mirrored"] <= most
    assert sent["skipped_by_cap"] == len(statuses) - sent["mirrored"] - sent["dropped"]
    assert (sent["dropped"], sent["failed"], sent["max_rps"]) == (0, 0, cap)
    # the live color's report says what the cap did; the standby compared what got through
    live_report = httpx.get(f"{servers['live']}/shadow/report", params={"session": "s-cap"})
    assert {k: live_report.json()[k] for k in sent} == sent
    standby_report = httpx.get(f"{servers['good']}/shadow/report", params={"session": "s-cap"})
    assert standby_report.json()["compared"] == sent["mirrored"]
    assert standby_report.json()["agreed_rows"] == 3 * sent["mirrored"]
    after = _mirror_outcomes(servers["live"])
    assert {k: after.get(k, 0) - before.get(k, 0) for k in ("mirrored", "skipped_by_cap")} == {
        "mirrored": sent["mirrored"],
        "skipped_by_cap": sent["skipped_by_cap"],
    }


@pytest.mark.parametrize(
    "max_rps", [-1, 0, 1e9, "lots", None], ids=["negative", "zero", "absurd", "text", "missing"]
)
def test_a_bad_cap_is_a_422_naming_it(servers: dict[str, str], max_rps: object) -> None:
    body = {"target": servers["good"], "session": "s-bad-cap", "max_seconds": 60}
    if max_rps is not None:
        body["max_rps"] = max_rps
    answer = httpx.put(f"{servers['live']}/shadow/mirror", json=body, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", "max_rps"]]
    assert (
        httpx.get(f"{servers['live']}/shadow/report", params={"session": "s-bad-cap"}).json()[
            "max_rps"
        ]
        is None
    )  # no session started


def test_shadow_control_needs_the_admin_token(servers: dict[str, str]) -> None:
    answer = httpx.put(
        f"{servers['live']}/shadow/mirror",
        json={"target": servers["good"], "session": "x", "max_rps": 50},
    )
    assert answer.status_code == 401
    compare = httpx.post(
        f"{servers['good']}/shadow/compare",
        json={"session": "x", "endpoint": "/predict", "body": "", "live": []},
    )
    assert compare.status_code == 401


def test_the_live_side_stops_mirroring_by_itself(servers: dict[str, str]) -> None:
    answer = httpx.put(
        f"{servers['live']}/shadow/mirror",
        json={
            "target": servers["good"],
            "session": "s-expire",
            "max_rps": 100,
            "max_seconds": 1.5,
        },
        headers=ADMIN,
    )
    assert answer.status_code == 200
    began = time.monotonic()
    _send(servers["live"], 3)
    assert time.monotonic() - began < 1.5, "sent after the window: nothing to check"
    time.sleep(2.5)
    _send(servers["live"], 5)
    time.sleep(0.3)
    report = httpx.get(f"{servers['good']}/shadow/report", params={"session": "s-expire"}).json()
    assert report["compared"] == 3  # what came before the end went out; nothing after it
    # a controller's late stop still learns what its session mirrored
    late = httpx.delete(
        f"{servers['live']}/shadow/mirror", params={"session": "s-expire"}, headers=ADMIN
    )
    assert (late.json()["session"], late.json()["mirrored"]) == ("s-expire", 3)


def test_a_single_mirrored_request_is_still_compared(servers: dict[str, str]) -> None:
    """What a live pod of the release before batches sent: one request a POST."""
    answer = httpx.post(
        f"{servers['good']}/shadow/compare",
        json={
            "session": "s-single",
            "endpoint": "/predict",
            "content_type": "application/json",
            "body": base64.b64encode(json.dumps(IRIS_ROWS).encode()).decode(),
            "live": IRIS_CLASSES,
        },
        headers=ADMIN,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"rows": 3, "agreed": 3}


def test_predicted_classes_are_counted(servers: dict[str, str]) -> None:
    def count(label: str) -> float:
        text = httpx.get(f"{servers['good']}/metrics").text
        for line in text.splitlines():
            if line.startswith("bluegreen_model_predictions_total") and f'class="{label}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = {label: count(label) for label in ("0", "1", "2")}
    threads = [threading.Thread(target=_send, args=(servers["good"], 10)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {label: count(label) - before[label] for label in before} == {
        "0": 20,
        "1": 20,
        "2": 20,
    }
