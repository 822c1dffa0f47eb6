"""A real Prometheus (Debian's) scraping the model servers and the controller of a local
stack; `promtool` linting every `/metrics` and the rules; the bake's PromQL check answered
by it: a version whose error ratio breaches the query's bound is rolled back, and the
release alert fires.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bluegreen.client import ControllerClient
from bluegreen.iris import IRIS_ROWS, register_estimator
from bluegreen.stack import LocalStack
from bluegreen.traffic import TrafficProbe
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN
from tests.support.poison import POISON_SEPAL_CM
from tests.support.prometheus import (
    RULES,
    Prometheus,
    dashboard_queries,
    promtool,
    start_prometheus,
)
from tests.support.waiting import wait_for

MAX_RATIO = 0.005  # the flaky version's error ratio the bake tolerates
POISON = [[POISON_SEPAL_CM, 3.0, 4.4, 1.4]]  # a flower the flaky version answers 500
ERROR_RATIO = 'bluegreen:model_error_ratio:rate1m{{version="{version}"}}'


def register_flaky(uri: str, name: str) -> str:
    """A well-fit iris pipeline that raises on one flower (a 6.65 cm sepal): it passes the
    smoke test, and the model server answers that flower 500 (the model failed), which is
    what the 5xx error ratio counts. A scikit-learn pipeline, so the fast path serves it."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from tests.support.poison import refuse_the_poison

    features, labels = load_iris(return_X_y=True, as_frame=True)
    pipeline = make_pipeline(
        FunctionTransformer(refuse_the_poison), LogisticRegression(max_iter=300)
    ).fit(features, labels)
    # skops, MLflow's default, refuses a function it does not know; cloudpickle stores it by
    # its import path, which the model server imports from the repo root.
    return register_estimator(
        tracking_uri=uri, model=name, estimator=pipeline, serialization_format="cloudpickle"
    )


@pytest.fixture
def prometheus(stack: LocalStack, tmp_path: Path) -> Iterator[Prometheus]:
    server = start_prometheus(
        tmp_path / "prometheus",
        {
            "bluegreen-model": [
                f"127.0.0.1:{stack.ports.blue}",
                f"127.0.0.1:{stack.ports.green}",
            ],
            "bluegreen-controller": [f"127.0.0.1:{stack.ports.controller}"],
        },
    )
    try:
        yield server
    finally:
        server.stop()


def past(
    client: ControllerClient, operation_id: str, status: str
) -> Callable[[], dict[str, Any] | None]:
    """A check for `wait_for`: the operation once its status is no longer `status`."""

    def check() -> dict[str, Any] | None:
        op = client.operation(operation_id)
        return op if op["status"] != status else None

    return check


def promtool_check_metrics(url: str) -> subprocess.CompletedProcess[str]:
    text = httpx.get(url, timeout=10).text
    return promtool("check", "metrics", stdin=text)


def test_the_rules_file_is_valid() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_a_real_prometheus_answers_the_bake_and_the_release_alert_fires(
    stack: LocalStack, prometheus: Prometheus, iris: IrisVersions
) -> None:
    flaky = register_flaky(iris.tracking_uri, iris.model)
    client = ControllerClient(stack.controller_url, token=TOKEN)
    router = f"{stack.router_url}/predict"
    with TrafficProbe(url=router, clients=3, payload=IRIS_ROWS) as good_traffic:
        wait_for(
            "both jobs scraped",
            lambda: len(prometheus.query("up == 1")) >= 2,  # green holds nothing yet
        )
        # The live version's rates arrive through the recording rules.
        served = wait_for(
            "v1 traffic recorded",
            lambda: prometheus.query(f'bluegreen:model_requests:rate1m{{version="{iris.good}"}}'),
        )
        assert float(served[0]["value"][1]) > 0
        assert served[0]["metric"]["color"] == "blue"
        ratio = prometheus.query(ERROR_RATIO.format(version=iris.good))
        assert ratio and float(ratio[0]["value"][1]) == 0.0

        query = ERROR_RATIO.format(version=flaky)
        started = client.switch(
            version=flaky,
            wait=False,
            # A shadow step first (the dashboard's agreement panel), on good traffic only:
            # a mirrored poison flower would fail it on the standby's errors.
            shadow_s=5,
            bake_s=90,
            analysis={
                # The built-in error and latency checks are switched off (a pyfunc is
                # slower than the fast path): only the PromQL check may breach.
                "max_error_rate_increase": 1.0,
                "max_p99_ratio": 1000.0,
                # The good version's ratio is exactly 0 (asserted above); the flaky one's
                # share depends on how fast the good traffic runs beside the poison.
                "prometheus": {"url": prometheus.url, "query": query, "max_value": MAX_RATIO},
            },
        )
        baking = wait_for("the bake", past(client, started["id"], "running"), timeout_s=180)
        assert baking["status"] == "baking", baking
        with TrafficProbe(url=router, clients=1, payload=POISON, pause_s=0.05):
            op = wait_for("its verdict", past(client, started["id"], "baking"), timeout_s=120)
    assert op["status"] == "rolled_back", op["analysis"]
    assert op["failed_step"] == "bake"
    bake = op["analysis"]["bake"]
    assert bake["breached_check"] == "prometheus", bake
    check = next(c for c in bake["checks"] if c["name"] == "prometheus")
    assert check["verdict"] == "fail" and check["measured"] > MAX_RATIO, check
    assert query in check["detail"]
    assert bake["seconds"] < 60  # caught by the query, long before the window's end
    assert client.status()["live"]["version"] == iris.good
    assert not [r for r in good_traffic.snapshot() if r.status != 200 and r.version == iris.good]

    # Every recording rule has data, the error ratio of the flaky version above zero.
    for rule in (
        "bluegreen:model_requests:rate1m",
        "bluegreen:model_errors:rate1m",
        "bluegreen:model_error_ratio:rate1m",
        "bluegreen:model_latency_seconds:p99_1m",
        "bluegreen:model_latency_seconds:p50_1m",
        "bluegreen:model_predictions:rate1m",
        "bluegreen:model_shadow_agreement:ratio",
    ):
        assert prometheus.query(rule), rule
    # The flaky version answered as the good one in the shadow step: the same classes.
    (agreement,) = prometheus.query(f'bluegreen:model_shadow_agreement:ratio{{version="{flaky}"}}')
    assert 0.5 < float(agreement["value"][1]) <= 1.0, agreement
    # Every query of the Grafana dashboard returns data (the annotation: a release just ended).
    empty = [w for w, expr in dashboard_queries(iris.model).items() if not prometheus.query(expr)]
    assert not empty, empty
    # The controller's counters reached Prometheus, and the rollback alert fires.
    rolled = prometheus.query('bluegreen_operations_total{kind="switch",status="rolled_back"}')
    wait_for(
        "rolled_back counted",
        lambda: [
            s
            for s in prometheus.query(
                'bluegreen_operations_total{kind="switch",status="rolled_back"} > 0'
            )
        ],
        timeout_s=20,
    )
    assert rolled
    firing = wait_for(
        "BluegreenBakeRolledBack firing",
        lambda: [
            a
            for a in prometheus.alerts()
            if a["labels"]["alertname"] == "BluegreenBakeRolledBack" and a["state"] == "firing"
        ],
        timeout_s=30,
    )
    assert firing

    # promtool lints every /metrics the stack exports, after real traffic and releases.
    for url in (
        f"http://127.0.0.1:{stack.ports.blue}/metrics",
        f"http://127.0.0.1:{stack.ports.green}/metrics",
        f"{stack.controller_url}/metrics",
    ):
        done = promtool_check_metrics(url)
        assert done.returncode == 0, f"{url}: {done.stdout}{done.stderr}"
