"""The controller's window on live traffic: model-server metrics, shadow control, PromQL.

Adapters behind the `ServingMetrics` and `ShadowTraffic` ports, used by the engine's
shadow and bake steps. Metrics are the model servers' own Prometheus text (requests by
status, the latency histogram, predicted classes), parsed with prometheus_client's
parser and summed over a color's pods; shadow control is the model servers' admin API
(`/shadow/mirror`, `/shadow/report`), behind their own token.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from controller.domain.analysis import (
    MirrorCounts,
    PrometheusCheck,
    ServingSnapshot,
    ShadowReport,
)
from controller.errors import BackendUnavailable, DependencyUnavailable
from plumbing.auth import bearer_header

log = logging.getLogger("bluegreen.serving_probe")

_SERVED_ENDPOINTS = frozenset({"/predict", "/invocations"})
_REQUESTS = "bluegreen_model_requests"
_LATENCY = "bluegreen_model_request_duration_seconds"
_CLASSES = "bluegreen_model_predictions"
_VALUES = "bluegreen_model_prediction_values"


def parse_snapshot(text: str) -> ServingSnapshot:
    """One model server's `/metrics` text as the counters the bake step compares."""
    snapshot = ServingSnapshot()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if family.name == _REQUESTS and sample.name == f"{_REQUESTS}_total":
                if labels.get("endpoint") in _SERVED_ENDPOINTS:
                    status = int(labels.get("status", "0"))
                    by_status = snapshot.requests_by_status
                    by_status[status] = by_status.get(status, 0.0) + sample.value
            elif family.name == _LATENCY and sample.name == f"{_LATENCY}_bucket":
                if labels.get("endpoint") in _SERVED_ENDPOINTS:
                    bound = math.inf if labels["le"] == "+Inf" else float(labels["le"])
                    buckets = snapshot.latency.buckets
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif family.name == _VALUES and sample.name == f"{_VALUES}_bucket":
                bound = math.inf if labels["le"] == "+Inf" else float(labels["le"])
                buckets = snapshot.values.buckets
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif family.name == _CLASSES and sample.name == f"{_CLASSES}_total":
                label = labels.get("class", "")
                snapshot.classes[label] = snapshot.classes.get(label, 0.0) + sample.value
    return snapshot


def merged(snapshots: Sequence[ServingSnapshot]) -> ServingSnapshot:
    total = ServingSnapshot()
    for one in snapshots:
        for status, n in one.requests_by_status.items():
            total.requests_by_status[status] = total.requests_by_status.get(status, 0.0) + n
        for bound, n in one.latency.buckets.items():
            total.latency.buckets[bound] = total.latency.buckets.get(bound, 0.0) + n
        for label, n in one.classes.items():
            total.classes[label] = total.classes.get(label, 0.0) + n
        for bound, n in one.values.buckets.items():
            total.values.buckets[bound] = total.values.buckets.get(bound, 0.0) + n
    return total


class HttpServingMetrics:
    """`ServingMetrics` over HTTP: `GET /metrics` of each pod, and Prometheus's query API."""

    def __init__(self, *, timeout_s: float = 3.0) -> None:
        self._client = httpx.Client(timeout=timeout_s)

    def snapshot(self, endpoints: Sequence[str]) -> ServingSnapshot:
        texts = []
        for endpoint in endpoints:
            try:
                answer = self._client.get(f"{endpoint}/metrics")
                answer.raise_for_status()
            except httpx.HTTPError as exc:
                raise BackendUnavailable(f"metrics of {endpoint} unreadable: {exc}") from None
            texts.append(answer.text)
        return merged([parse_snapshot(text) for text in texts])

    def query(self, check: PrometheusCheck) -> float:
        try:
            answer = self._client.get(
                f"{check.url.rstrip('/')}/api/v1/query", params={"query": check.query}
            )
            answer.raise_for_status()
            body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DependencyUnavailable(f"Prometheus query failed: {exc}") from None
        return _scalar(body, check.query)


def _scalar(body: Any, query: str) -> float:
    """The one number a PromQL answer holds (an instant vector of one, or a scalar)."""
    data = body.get("data", {}) if isinstance(body, dict) else {}
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        return float(result[1])
    if data.get("resultType") == "vector" and isinstance(result, list) and len(result) == 1:
        return float(result[0]["value"][1])
    raise DependencyUnavailable(f"query {query!r} did not return exactly one value: {body!r:.200}")


class HttpShadowTraffic:
    """`ShadowTraffic` over the model servers' admin API (their own token, not the API's)."""

    def __init__(self, *, model_server_token: str | None, timeout_s: float = 3.0) -> None:
        self._client = httpx.Client(timeout=timeout_s, headers=bearer_header(model_server_token))

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
        # The cap is the color's: each live pod mirrors its share, as the Service spreads
        # the traffic evenly between them.
        body = {
            "target": target,
            "sample": sample,
            "max_rps": max_rps / max(1, len(live)),
            "session": session,
            "max_seconds": max_seconds,
        }
        for endpoint in live:
            self._call("PUT", f"{endpoint}/shadow/mirror", json=body)

    def stop(self, live: Sequence[str], *, session: str) -> MirrorCounts:
        total = MirrorCounts()
        for endpoint in live:
            try:
                body = self._call(
                    "DELETE", f"{endpoint}/shadow/mirror", params={"session": session}
                )
            except BackendUnavailable as exc:  # it stops by itself when its window ends
                log.warning("could not stop mirroring on %s: %s", endpoint, exc.detail)
                continue
            total.mirrored += int(body.get("mirrored", 0))
            total.skipped_by_cap += int(body.get("skipped_by_cap", 0))
            total.dropped += int(body.get("dropped", 0))
        return total

    def report(self, standby: Sequence[str], *, session: str) -> ShadowReport:
        reports = [
            ShadowReport.model_validate(
                self._call("GET", f"{endpoint}/shadow/report", params={"session": session})
            )
            for endpoint in standby
        ]
        return _summed(reports)

    def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer = self._client.request(method, url, **kwargs)
            answer.raise_for_status()
            body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise BackendUnavailable(f"{method} {url} failed: {exc}") from None
        if not isinstance(body, dict):
            raise BackendUnavailable(f"{method} {url} answered {body!r:.200}, not an object")
        return body


def _summed(reports: Sequence[ShadowReport]) -> ShadowReport:
    """Counts add up; latencies are the worst pod's; differences weighted by rows."""
    total = ShadowReport()
    for one in reports:
        total.mirrored += one.mirrored
        total.dropped += one.dropped
        total.skipped_by_cap += one.skipped_by_cap
        total.compared += one.compared
        total.rows += one.rows
        total.agreed_rows += one.agreed_rows
        total.standby_errors += one.standby_errors
    weighted = [r for r in reports if r.compared]
    if weighted:
        total.standby_p50_ms = max((r.standby_p50_ms or 0.0) for r in weighted)
        total.standby_p99_ms = max((r.standby_p99_ms or 0.0) for r in weighted)
        diffs = [
            (r.mean_relative_diff, r.rows) for r in weighted if r.mean_relative_diff is not None
        ]
        if diffs and sum(rows for _, rows in diffs):
            total.mean_relative_diff = sum(d * rows for d, rows in diffs) / sum(
                rows for _, rows in diffs
            )
    return total
