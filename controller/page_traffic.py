"""Requests per second and errors per second by model version, for the release page's chart.

`TrafficSampler.sample` reads every ready pod's `/metrics` (the model servers' own
Prometheus text) at most once a second, turns the cumulative counters into rates, and keeps
the last ten minutes. It samples when the page asks, so it costs nothing with no page open.
Counted as the bake counts them: the scoring endpoints, errors being 5xx answers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

_REQUESTS = "bluegreen_model_requests"
_SERVED_ENDPOINTS = frozenset({"/predict", "/invocations"})
KEEP_S = 600.0
MIN_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Counts:
    requests: float = 0.0
    errors: float = 0.0


def counts_by_version(text: str) -> dict[str, Counts]:
    """One model server's `/metrics` text as cumulative (requests, 5xx) per `version` label."""
    totals: dict[str, Counts] = {}
    for family in text_string_to_metric_families(text):
        if family.name != _REQUESTS:
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name != f"{_REQUESTS}_total" or labels.get("endpoint") not in (
                _SERVED_ENDPOINTS
            ):
                continue
            version = labels.get("version", "?")
            seen = totals.get(version, Counts())
            error = sample.value if int(labels.get("status", "0")) >= 500 else 0.0
            totals[version] = Counts(seen.requests + sample.value, seen.errors + error)
    return totals


@dataclass
class Point:
    at: float
    """Unix time of the sample."""
    rates: dict[str, Counts]
    """Per version: requests/s and errors/s since the previous sample."""
    colors: dict[str, str] = field(default_factory=dict)
    """Which color served each version at this sample."""


class TrafficSampler:
    def __init__(
        self,
        *,
        endpoints: Callable[[], dict[str, Sequence[str]]],
        timeout_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`endpoints`: each color's ready pod URLs right now."""
        self._endpoints = endpoints
        self._client = httpx.Client(timeout=timeout_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, dict[str, Counts]] = {}
        self._last_at: float | None = None
        self.points: deque[Point] = deque()
        self.pods: dict[str, int] = {}
        """Per color: the pods whose metrics answered at the last sample."""

    def sample(self) -> list[Point]:
        """Take a sample unless one is less than a second old; the points kept, oldest first."""
        with self._lock:
            now = self._clock()
            if self._last_at is None or now - self._last_at >= MIN_INTERVAL_S:
                self._take(now)
            while self.points and now - self.points[0].at > KEEP_S:
                self.points.popleft()
            return list(self.points)

    def _take(self, now: float) -> None:
        current: dict[str, dict[str, Counts]] = {}
        colors: dict[str, str] = {}
        pods: dict[str, int] = {}
        for color, urls in self._endpoints().items():
            pods[color] = 0
            for url in urls:
                try:
                    answer = self._client.get(f"{url}/metrics")
                    answer.raise_for_status()
                except httpx.HTTPError:
                    continue  # a pod going away: its traffic shows as a drop, not an error
                current[url] = counts_by_version(answer.text)
                pods[color] += 1
                colors.update(dict.fromkeys(current[url], color))
        if self._last_at is not None:
            elapsed = max(now - self._last_at, 1e-3)
            rates: dict[str, Counts] = {}
            for url, by_version in current.items():
                for version, counts in by_version.items():
                    before = self._last.get(url, {}).get(version, Counts())
                    # A restarted server starts from zero: count what it has since.
                    if counts.requests < before.requests:
                        before = Counts()
                    seen = rates.get(version, Counts())
                    rates[version] = Counts(
                        seen.requests + (counts.requests - before.requests) / elapsed,
                        seen.errors + max(0.0, counts.errors - before.errors) / elapsed,
                    )
            self.points.append(Point(at=now, rates=rates, colors=colors))
        self._last, self._last_at, self.pods = current, now, pods
