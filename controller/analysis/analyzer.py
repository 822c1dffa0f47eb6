"""Release analysis as the engine sees it: a shadow verdict before the flip, a bake verdict after.

`TrafficAnalysis` measures live traffic through the two probes (`ServingMetrics`,
`ShadowTraffic`); `NoAnalysis` is the null object for a controller without them, where
shadow and bake are refused at the request. Both answer results with verdicts, as Argo
Rollouts' analysis runs do, and never act: the engine alone raises the shadow gate and
flips back after a failed bake, through its one flip path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from controller.analysis.windows import (
    BakeStart,
    BakeWindow,
    Baseline,
    ShadowWindow,
    baseline_window,
    run_bake,
    run_shadow,
    take_baseline,
)
from controller.domain.analysis import AnalysisPolicy, BakeResult, ShadowResult, WindowStats
from controller.errors import BadRequest
from controller.ports import ServingMetrics, ShadowTraffic

Pods = Sequence[str]
"""A color's pod addresses, as the probes reach them."""


@dataclass(frozen=True)
class Probes:
    """What analysis reads live traffic with; without them, no shadow or bake."""

    metrics: ServingMetrics
    shadow: ShadowTraffic


class ReleaseAnalyzer(Protocol):
    @property
    def available(self) -> bool:
        """Whether shadow and bake can run at all."""
        ...

    def opening(self, live: Pods, policy: AnalysisPolicy) -> Baseline | None:
        """The old live color's counters as a release begins (None: no bake planned)."""
        ...

    def shadow(self, window: ShadowWindow, policy: AnalysisPolicy) -> ShadowResult:
        """Mirror live traffic to the standby for the window, and judge what it answered."""
        ...

    def bake_start(
        self, opening: Baseline | None, live: Pods, standby: Pods, policy: AnalysisPolicy
    ) -> BakeStart:
        """Right before the flip: the old color's baseline and the new color's counters."""
        ...

    def bake(self, window: BakeWindow, policy: AnalysisPolicy) -> BakeResult:
        """Watch the new live color; return at the first failed check or the window's end."""
        ...


class TrafficAnalysis:
    """Analysis on real traffic, read from the model servers through the probes."""

    available = True

    def __init__(self, probes: Probes) -> None:
        self._metrics = probes.metrics
        self._shadow = probes.shadow

    def opening(self, live: Pods, policy: AnalysisPolicy) -> Baseline | None:
        return take_baseline(self._metrics, live) if policy.bake_s else None

    def shadow(self, window: ShadowWindow, policy: AnalysisPolicy) -> ShadowResult:
        return run_shadow(self._shadow, window, policy)

    def bake_start(
        self, opening: Baseline | None, live: Pods, standby: Pods, policy: AnalysisPolicy
    ) -> BakeStart:
        baseline = WindowStats()
        if opening is not None and opening.snapshot is not None:
            baseline = baseline_window(self._metrics, live, opening, policy)
        return BakeStart(baseline=baseline, at_flip=take_baseline(self._metrics, standby).snapshot)

    def bake(self, window: BakeWindow, policy: AnalysisPolicy) -> BakeResult:
        return run_bake(self._metrics, window, policy)


class NoAnalysis:
    """The null object where the controller has no traffic probes: releases skip analysis."""

    available = False

    def opening(self, live: Pods, policy: AnalysisPolicy) -> Baseline | None:
        return None

    def shadow(self, window: ShadowWindow, policy: AnalysisPolicy) -> ShadowResult:
        raise _unavailable()

    def bake_start(
        self, opening: Baseline | None, live: Pods, standby: Pods, policy: AnalysisPolicy
    ) -> BakeStart:
        return BakeStart(baseline=WindowStats(), at_flip=None)

    def bake(self, window: BakeWindow, policy: AnalysisPolicy) -> BakeResult:
        raise _unavailable()


def _unavailable() -> BadRequest:
    return BadRequest("this controller has no traffic probes: shadow and bake are off")
