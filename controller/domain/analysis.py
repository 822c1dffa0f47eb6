"""Release analysis as data: the policy a release is judged by, and what was measured.

The vocabulary shared by the engine, the analysis package (`controller/analysis/`), the
`ServingMetrics`/`ShadowTraffic` ports and the API: thresholds and windows (`AnalysisPolicy`,
whose fields the API's per-request overrides and the settings' defaults reuse), the
counters a color served (`ServingSnapshot`) and the results with a verdict per check. A
check is a record, not code (as Argo Rollouts' analysis runs are): every number lands on
the operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["pass", "fail", "inconclusive", "report"]
WINDOW_MIN_S, WINDOW_MAX_S = 0.0, 3600.0
WindowSeconds = Annotated[float, Field(ge=WINDOW_MIN_S, le=WINDOW_MAX_S)]
"""A shadow or bake window; the one bound the settings, the API, the CLI and the chart share."""
MIRROR_RPS_MAX = 10_000.0
MirrorRate = Annotated[float, Field(gt=0, le=MIRROR_RPS_MAX)]
"""A cap on the requests a live color mirrors a second; the one bound the settings, the API,
the CLI and the chart share (above it, more than a model server serves: no cap at all)."""
SHADOW_MAX_RPS_DEFAULT = 50.0
"""The default cap; why this number: `ControllerSettings.shadow_max_rps`."""
Share = Annotated[float, Field(ge=0, le=1)]
_K = TypeVar("_K")


class PrometheusCheck(BaseModel):
    """An extra bake check: a PromQL query whose value must stay within bounds."""

    url: str = Field(max_length=2048, pattern=r"^https?://")
    query: str = Field(min_length=1, max_length=4096)
    max_value: float | None = None
    min_value: float | None = None


class AnalysisThresholds(BaseModel):
    """How the shadow and bake windows are judged; defaults from the controller's settings."""

    model_config = ConfigDict(extra="forbid")

    shadow_sample: float = Field(default=1.0, gt=0, le=1)
    """Share of live requests mirrored to the standby."""
    min_requests: int = Field(default=50, ge=1)
    """Requests a window needs before any check is judged; fewer is inconclusive."""
    max_error_rate_increase: float = Field(default=0.02, ge=0, le=1)
    """Bake: 5xx share may exceed the baseline's by at most this."""
    max_p99_ratio: float = Field(default=3.0, ge=1)
    """Bake: p99 latency may be at most this many times the baseline's ..."""
    p99_floor_ms: float = Field(default=50.0, ge=0)
    """... unless it stays under this floor (tiny baselines make ratios meaningless)."""
    max_class_shift: float = Field(default=0.25, ge=0, le=1)
    """Bake: total variation distance between predicted-class distributions."""
    max_value_shift: float = Field(default=0.25, ge=0, le=1)
    """Bake: Kolmogorov-Smirnov distance between a regressor's prediction distributions
    (over the model servers' fixed buckets)."""
    interval_s: float = Field(default=1.0, gt=0, le=60)
    """How often the bake step measures."""
    prometheus: PrometheusCheck | None = None
    """An extra bake check on a PromQL query."""


class AnalysisPolicy(AnalysisThresholds):
    """One release's analysis: the windows, the gate, and the thresholds."""

    shadow_s: WindowSeconds = 0.0
    """Seconds of mirrored live traffic before the flip (0: no shadow step)."""
    shadow_max_rps: MirrorRate = SHADOW_MAX_RPS_DEFAULT
    """The live color mirrors at most this many requests a second, whatever its traffic."""
    min_agreement: float | None = Field(default=None, ge=0, le=1)
    """Shadow gate: share of predictions that must agree; None reports without gating."""
    bake_s: WindowSeconds = 0.0
    """Seconds the new live color is watched after the flip (0: no bake step)."""


class CheckResult(BaseModel):
    name: str
    verdict: Verdict
    measured: float | None = None
    threshold: float | None = None
    baseline: float | None = None
    detail: str = ""


class WindowStats(BaseModel):
    """What one color served during one window, from its own metrics."""

    seconds: float = 0.0
    requests: int = 0
    errors_5xx: int = 0
    error_rate: float | None = None
    p99_ms: float | None = None
    classes: dict[str, int] = Field(default_factory=dict)
    values: Histogram = Field(default_factory=lambda: Histogram())
    """A regressor's predictions in this window, cumulative by bucket bound."""


class MirrorCounts(BaseModel):
    """What the live side did with the requests it sampled for the standby."""

    mirrored: int = 0
    """Sent to the standby, which took them."""
    skipped_by_cap: int = 0
    """Not sent: over the mirror rate cap (`shadow_max_rps`)."""
    dropped: int = 0
    """Not sent: the mirror's queue was full, or they were still queued at the window's end."""


class ShadowReport(MirrorCounts):
    """What the standby saw of the mirrored requests, and what the live side sent."""

    compared: int = 0
    rows: int = 0
    agreed_rows: int = 0
    mean_relative_diff: float | None = None
    standby_errors: int = 0
    standby_p50_ms: float | None = None
    standby_p99_ms: float | None = None


class ShadowResult(ShadowReport):
    seconds: float = 0.0
    sample: float = 1.0
    max_rps: float | None = None
    """The color's mirror rate cap in this window."""
    agreement: float | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    verdict: Verdict = "report"


class BakeResult(BaseModel):
    seconds_planned: float
    seconds: float = 0.0
    baseline: WindowStats = Field(default_factory=WindowStats)
    live: WindowStats = Field(default_factory=WindowStats)
    checks: list[CheckResult] = Field(default_factory=list)
    verdict: Verdict = "inconclusive"
    breached_check: str | None = None
    flip_back_ms: float | None = None
    """From the breach being seen to the route pointing at the old color again."""


class Analysis(BaseModel):
    shadow: ShadowResult | None = None
    bake: BakeResult | None = None


class Histogram(BaseModel):
    """Cumulative bucket counts by upper bound (seconds), as Prometheus exports them."""

    buckets: dict[float, float] = Field(default_factory=dict)

    def minus(self, earlier: Histogram) -> Histogram:
        return Histogram(
            buckets={le: n - earlier.buckets.get(le, 0.0) for le, n in self.buckets.items()}
        )

    @property
    def count(self) -> float:
        return self.buckets.get(float("inf"), 0.0)

    def quantile_ms(self, q: float) -> float | None:
        """The upper bound of the bucket holding the q-quantile; None without samples."""
        bounds = sorted(self.buckets)
        total = self.buckets.get(float("inf"), 0.0) if bounds else 0.0
        if total <= 0:
            return None
        finite = [b for b in bounds if b != float("inf")]
        for bound in finite:
            if self.buckets[bound] >= q * total:
                return bound * 1000
        return (finite[-1] * 1000) if finite else None  # above the largest bound


class ServingSnapshot(BaseModel):
    """A color's cumulative serving counters at one instant, summed over its pods."""

    requests_by_status: dict[int, float] = Field(default_factory=dict)
    latency: Histogram = Field(default_factory=Histogram)
    classes: dict[str, float] = Field(default_factory=dict)
    values: Histogram = Field(default_factory=Histogram)

    def window(self, earlier: ServingSnapshot | None, *, seconds: float) -> WindowStats:
        """What was served between `earlier` (None: since start) and this snapshot."""
        base = earlier or ServingSnapshot()
        by_status = _minus(self.requests_by_status, base.requests_by_status)
        requests = int(sum(by_status.values()))
        errors = int(sum(n for status, n in by_status.items() if status >= 500))
        return WindowStats(
            seconds=round(seconds, 3),
            requests=requests,
            errors_5xx=errors,
            error_rate=round(errors / requests, 4) if requests else None,
            p99_ms=self.latency.minus(base.latency).quantile_ms(0.99),
            classes={k: int(v) for k, v in _minus(self.classes, base.classes).items() if v > 0},
            values=self.values.minus(base.values),
        )


def _minus(now: Mapping[_K, float], before: Mapping[_K, float]) -> dict[_K, float]:
    return {key: value - before.get(key, 0.0) for key, value in now.items()}
