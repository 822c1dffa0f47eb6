"""Release analysis in the engine, with in-memory traffic probes: the decisions, not the HTTP.

The real probes (model-server metrics and shadow mirroring over HTTP) are exercised on
the local stack under load in tests/release/test_analysis_live.py; here every number is
chosen, so each verdict and what the engine does with it can be checked exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from controller.analysis.analyzer import Probes
from controller.analysis.checks import bake_checks, shadow_checks, total_variation
from controller.domain import Operation, Route
from controller.domain.analysis import (
    AnalysisPolicy,
    Histogram,
    MirrorCounts,
    PrometheusCheck,
    ServingSnapshot,
    ShadowReport,
    WindowStats,
)
from controller.engine import ReleaseEngine
from controller.errors import ReleaseAborted, ReleaseInProgress
from tests.support.engine_fakes import World, wait_for_status

FAST = {"interval_s": 0.05, "min_requests": 10}


class Metrics:
    """Counters per endpoint that a test moves forward, as served traffic would."""

    def __init__(self) -> None:
        self.served: dict[str, ServingSnapshot] = {}
        self.lock = threading.Lock()
        self.prometheus_value = 0.0

    def serve(
        self, endpoint: str, *, ok: int, errors: int = 0, seconds: float, classes: dict[str, int]
    ) -> None:
        with self.lock:
            snap = self.served.setdefault(endpoint, ServingSnapshot())
            snap.requests_by_status[200] = snap.requests_by_status.get(200, 0) + ok
            snap.requests_by_status[500] = snap.requests_by_status.get(500, 0) + errors
            buckets = snap.latency.buckets
            for bound in (0.005, 0.05, 0.5, 2.5, float("inf")):
                if seconds <= bound:
                    buckets[bound] = buckets.get(bound, 0) + ok + errors
                else:
                    buckets.setdefault(bound, 0)
            for label, n in classes.items():
                snap.classes[label] = snap.classes.get(label, 0) + n

    def snapshot(self, endpoints: Sequence[str]) -> ServingSnapshot:
        with self.lock:
            return self.served.get(endpoints[0], ServingSnapshot()).model_copy(deep=True)

    def query(self, check: PrometheusCheck) -> float:
        return self.prometheus_value


class Shadow:
    def __init__(self, report: ShadowReport) -> None:
        self.report_value = report
        self.started: list[tuple[str, float]] = []
        self.max_rps: list[float] = []

    def start(
        self,
        live: Sequence[str],
        *,
        target: str,
        sample: float,
        max_rps: float,
        session: str,
        max_seconds: float,
    ) -> None:
        self.started.append((target, sample))
        self.max_rps.append(max_rps)

    def stop(self, live: Sequence[str], *, session: str) -> MirrorCounts:
        return MirrorCounts(
            mirrored=self.report_value.compared, skipped_by_cap=self.report_value.skipped_by_cap
        )

    def report(self, standby: Sequence[str], *, session: str) -> ShadowReport:
        return self.report_value


def engine(world: World, metrics: Metrics, shadow: Shadow) -> ReleaseEngine:
    return world.engine(probes=Probes(metrics=metrics, shadow=shadow))


def serving(metrics: Metrics, endpoint: str, **traffic: object) -> Callable[[], None]:
    """One round of `traffic` served by `endpoint`, for `repeat` or `bake_under_traffic`."""
    return lambda: metrics.serve(endpoint, **traffic)  # type: ignore[arg-type]  # test traffic


def repeat(stop: threading.Event, step: Callable[[], None]) -> threading.Thread:
    """`step` every 10 ms on a thread of its own until `stop` is set, as traffic goes on."""

    def run() -> None:
        while not stop.wait(0.01):
            step()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def keep_serving(
    metrics: Metrics, endpoint: str, stop: threading.Event, **traffic: object
) -> threading.Thread:
    return repeat(stop, serving(metrics, endpoint, **traffic))


def bake_under_traffic(
    world: World, metrics: Metrics, *steps: Callable[[], None], **policy: Any
) -> Operation:
    """The finished record of a switch to v2 with a bake (30 s unless `policy` says), each
    step repeated meanwhile as served traffic; the traffic stops with the switch."""
    stop = threading.Event()
    threads = [repeat(stop, step) for step in steps]
    try:
        return engine(world, metrics, Shadow(ShadowReport())).switch(
            version="2", analysis=AnalysisPolicy(**{"bake_s": 30, **policy}, **FAST)
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join()


GOOD = {"ok": 3, "seconds": 0.002, "classes": {"0": 1, "1": 1, "2": 1}}


@pytest.fixture
def world() -> World:
    return World()


def test_a_failed_shadow_gate_aborts_before_the_flip(world: World) -> None:
    metrics = Metrics()
    shadow = Shadow(ShadowReport(compared=40, rows=120, agreed_rows=40))
    with pytest.raises(ReleaseAborted) as caught:
        engine(world, metrics, shadow).switch(
            version="2",
            analysis=AnalysisPolicy(shadow_s=0.05, min_agreement=0.9, shadow_sample=0.5, **FAST),
        )
    op = caught.value.operation
    assert (op["status"], op["failed_step"]) == ("aborted", "shadow")
    assert "33.3% of 120 rows agree" in op["reason"]
    assert op["analysis"]["shadow"]["agreement"] == pytest.approx(1 / 3, abs=1e-3)
    assert world.router.route == Route(color="blue", revision="1")
    assert shadow.started == [("http://green", 0.5)]


def test_shadow_without_a_gate_reports_and_promotes(world: World) -> None:
    shadow = Shadow(ShadowReport(compared=40, rows=120, agreed_rows=40))
    op = engine(world, Metrics(), shadow).switch(
        version="2", analysis=AnalysisPolicy(shadow_s=0.05, **FAST)
    )
    assert op.status == "promoted"
    assert op.analysis is not None and op.analysis.shadow is not None
    assert op.analysis.shadow.checks[0].verdict == "report"


def test_a_slow_new_version_is_rolled_back_during_bake(world: World) -> None:
    metrics = Metrics()
    metrics.serve("http://blue", **GOOD)  # type: ignore[arg-type]
    slow = {**GOOD, "seconds": 1.5}
    op = bake_under_traffic(
        world,
        metrics,
        serving(metrics, "http://blue", **GOOD),
        serving(metrics, "http://green", **slow),
    )
    assert (op.status, op.failed_step) == ("rolled_back", "bake")
    assert (
        op.reason is not None and "p99_latency" in op.reason and "traffic back on blue" in op.reason
    )
    assert world.router.route.color == "blue"
    assert world.registry.aliases["live"] == "1"
    bake = op.analysis.bake if op.analysis else None
    assert bake is not None and bake.breached_check == "p99_latency"
    assert bake.live.p99_ms == 2500 and bake.seconds < 10
    assert bake.flip_back_ms is not None


def test_a_shifted_class_distribution_is_rolled_back(world: World) -> None:
    metrics = Metrics()
    metrics.serve("http://blue", ok=300, seconds=0.002, classes={"0": 100, "1": 100, "2": 100})
    constant = {**GOOD, "classes": {"0": 3}}
    op = bake_under_traffic(world, metrics, serving(metrics, "http://green", **constant))
    assert (op.status, op.failed_step) == ("rolled_back", "bake")
    assert op.analysis and op.analysis.bake and op.analysis.bake.breached_check == "class_shift"
    assert world.router.route.color == "blue"


def test_a_good_version_bakes_and_stays(world: World) -> None:
    metrics = Metrics()
    metrics.serve("http://blue", ok=300, seconds=0.002, classes={"0": 100, "1": 100, "2": 100})
    op = bake_under_traffic(world, metrics, serving(metrics, "http://green", **GOOD), bake_s=0.5)
    assert op.status == "promoted"
    assert op.analysis and op.analysis.bake and op.analysis.bake.verdict == "pass"
    assert [c.verdict for c in op.analysis.bake.checks] == ["pass", "pass", "pass", "report"]
    assert world.router.route.color == "green"


def test_too_little_traffic_is_inconclusive_not_a_pass(world: World) -> None:
    op = engine(world, Metrics(), Shadow(ShadowReport())).switch(
        version="2", analysis=AnalysisPolicy(bake_s=0.2, **FAST)
    )
    assert op.status == "promoted"
    assert op.analysis and op.analysis.bake and op.analysis.bake.verdict == "inconclusive"


def test_rollback_during_bake_ends_it_and_a_second_switch_is_refused(world: World) -> None:
    release = engine(world, Metrics(), Shadow(ShadowReport()))
    done: list[object] = []
    thread = threading.Thread(
        target=lambda: done.append(
            release.switch(version="2", analysis=AnalysisPolicy(bake_s=60, **FAST))
        )
    )
    thread.start()
    wait_for_status(release, "baking")
    with pytest.raises(ReleaseInProgress):
        release.switch(version="3")
    rolled = release.rollback()
    thread.join(timeout=5)
    assert (rolled.status, rolled.failed_step) == ("rolled_back", "bake")
    assert "on request during the bake" in (rolled.reason or "")
    assert world.router.route.color == "blue"


def test_a_prometheus_check_breach_rolls_back(world: World) -> None:
    metrics = Metrics()
    metrics.prometheus_value = 0.9
    check = PrometheusCheck(url="http://127.0.0.1:9", query="error_ratio", max_value=0.1)
    op = bake_under_traffic(
        world, metrics, serving(metrics, "http://green", **GOOD), prometheus=check
    )
    assert (op.status, op.failed_step) == ("rolled_back", "bake")
    assert op.analysis and op.analysis.bake and op.analysis.bake.breached_check == "prometheus"


# -- the checks themselves ---------------------------------------------------------------


def test_p99_is_the_bucket_holding_the_quantile() -> None:
    histogram = Histogram(buckets={0.005: 98.0, 0.05: 99.0, 2.5: 100.0, float("inf"): 100.0})
    assert histogram.quantile_ms(0.99) == 50.0
    assert histogram.quantile_ms(0.5) == 5.0
    assert Histogram().quantile_ms(0.99) is None


def test_error_rate_counts_5xx_only_against_the_baseline() -> None:
    policy = AnalysisPolicy(min_requests=10)
    base = WindowStats(requests=100, errors_5xx=1, error_rate=0.01, classes={"0": 100})
    worse = WindowStats(requests=100, errors_5xx=5, error_rate=0.05, classes={"0": 100})
    same = WindowStats(requests=100, errors_5xx=2, error_rate=0.02, classes={"0": 100})
    assert bake_checks(base, worse, policy)[0].verdict == "fail"
    assert bake_checks(base, same, policy)[0].verdict == "pass"


def test_total_variation() -> None:
    assert total_variation({"a": 1, "b": 1}, {"a": 2, "b": 2}) == 0
    assert total_variation({"a": 1}, {"b": 1}) == 1
    assert total_variation({"0": 1, "1": 1, "2": 1}, {"0": 3}) == pytest.approx(2 / 3)


def test_shadow_checks_need_enough_requests() -> None:
    policy = AnalysisPolicy(min_agreement=0.9, min_requests=50)
    few = shadow_checks(ShadowReport(compared=3, rows=3, agreed_rows=3), policy)
    assert [c.verdict for c in few] == ["inconclusive", "inconclusive"]
    errors = shadow_checks(
        ShadowReport(compared=60, rows=60, agreed_rows=60, standby_errors=2), policy
    )
    assert [c.verdict for c in errors] == ["pass", "fail"]


# -- regressors ----------------------------------------------------------------------------


def spread(values: list[float]) -> Histogram:
    """Cumulative buckets of `values` over the model servers' own fixed bounds."""
    from model_server.metrics import VALUE_BUCKETS

    bounds = [*VALUE_BUCKETS, float("inf")]
    return Histogram(buckets={b: float(sum(v <= b for v in values)) for b in bounds})


def test_ks_distance_over_fixed_buckets() -> None:
    from controller.analysis.checks import ks_distance

    varied = spread([0.2 * i for i in range(1, 100)])
    assert ks_distance(varied.buckets, varied.buckets) == 0
    assert ks_distance(varied.buckets, spread([50.0] * 99).buckets) == 1.0  # disjoint
    middle = ks_distance(varied.buckets, spread([10.0] * 99).buckets)  # a constant at the mean
    assert 0.45 < middle < 0.55


def test_a_regressor_answering_a_constant_is_rolled_back(world: World) -> None:
    metrics = Metrics()
    baseline = spread([0.1 * i for i in range(1, 301)])
    metrics.served["http://blue"] = ServingSnapshot(
        requests_by_status={200: 300.0},
        latency=Histogram(buckets={0.005: 300.0, float("inf"): 300.0}),
        values=baseline,
    )

    def constant_answers() -> None:
        with metrics.lock:
            snap = metrics.served.setdefault("http://green", ServingSnapshot())
            snap.requests_by_status[200] = snap.requests_by_status.get(200, 0) + 5
            for bound in (0.005, float("inf")):
                snap.latency.buckets[bound] = snap.latency.buckets.get(bound, 0) + 5
            for bound, n in spread([15.0] * 5).buckets.items():
                snap.values.buckets[bound] = snap.values.buckets.get(bound, 0) + n

    op = bake_under_traffic(world, metrics, constant_answers)
    assert (op.status, op.failed_step) == ("rolled_back", "bake")
    assert op.analysis and op.analysis.bake and op.analysis.bake.breached_check == "value_shift"
    assert world.router.route.color == "blue"
