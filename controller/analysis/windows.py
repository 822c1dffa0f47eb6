"""The measuring windows of release analysis: shadow (before the flip) and bake (after it).

Called by `analyzer.py` only, through the `ShadowTraffic` and `ServingMetrics` ports; the
verdicts come from `checks.py`. The bake loop measures the new live color every
`interval_s`, judges each check once enough requests arrived, and returns at the first
failed check so the engine can flip back while the old version is still warm. An
operator's rollback or abort during the bake ends it the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from controller.analysis.checks import bake_checks, overall, shadow_checks
from controller.domain.analysis import (
    AnalysisPolicy,
    BakeResult,
    CheckResult,
    ServingSnapshot,
    ShadowResult,
    WindowStats,
)
from controller.errors import DependencyUnavailable
from controller.ports import ServingMetrics, ShadowTraffic

log = logging.getLogger("bluegreen.analysis")

_SCRAPE_FAILURES_TOLERATED = 3
_MIRROR_GRACE_S = 60.0  # a mirror outlives its window by this at most, if never stopped


@dataclass
class Baseline:
    """The old live color's counters when the release began, to measure its window from."""

    snapshot: ServingSnapshot | None
    taken: float = field(default_factory=time.monotonic)


@dataclass
class BakeControl:
    """Lets an operator's rollback or abort end a running bake (`ReleaseEngine.rollback`)."""

    stop: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def request_rollback(self, reason: str) -> None:
        self.reason = reason
        self.stop.set()


@dataclass(frozen=True)
class ShadowWindow:
    """One shadow window: the live pods' traffic mirrored to the standby's `target`."""

    live: Sequence[str]
    standby: Sequence[str]
    target: str
    session: str
    """The release's id: names the mirror on the live pods and the report on the standby."""
    stop: threading.Event | None = None
    """Ends the window early (an operator's abort); what was mirrored is still judged."""


@dataclass(frozen=True)
class BakeStart:
    """What a bake judges against, fixed at the flip."""

    baseline: WindowStats
    """The old live color's window from the release's start to the flip."""
    at_flip: ServingSnapshot | None
    """The new live color's counters just before it took traffic (None: since its start)."""


@dataclass(frozen=True)
class BakeWindow:
    """One bake: the new live pods watched against `start` until its end or a failed check."""

    start: BakeStart
    live: Sequence[str]
    control: BakeControl
    progress: Callable[[BakeResult], None]
    """Told each interval's result, for the record a client polls."""


def run_shadow(shadow: ShadowTraffic, window: ShadowWindow, policy: AnalysisPolicy) -> ShadowResult:
    """Mirror live traffic to the standby for `shadow_s`, then judge what it answered."""
    started = time.monotonic()
    shadow.start(
        window.live,
        target=window.target,
        sample=policy.shadow_sample,
        max_rps=policy.shadow_max_rps,
        session=window.session,
        max_seconds=policy.shadow_s + _MIRROR_GRACE_S,
    )
    try:
        (window.stop or threading.Event()).wait(policy.shadow_s)
    finally:
        sent = shadow.stop(window.live, session=window.session)
    report = shadow.report(window.standby, session=window.session)
    report = report.model_copy(update=sent.model_dump())
    checks = shadow_checks(report, policy)
    return ShadowResult(
        **report.model_dump(),
        seconds=round(time.monotonic() - started, 3),
        sample=policy.shadow_sample,
        max_rps=policy.shadow_max_rps,
        agreement=round(report.agreed_rows / report.rows, 4) if report.rows else None,
        checks=checks,
        verdict=overall(checks),
    )


def take_baseline(metrics: ServingMetrics, live: Sequence[str]) -> Baseline:
    """The old live color's counters now; None when they cannot be read (no baseline)."""
    try:
        return Baseline(metrics.snapshot(live))
    except DependencyUnavailable as exc:
        log.warning("no bake baseline: %s", exc.detail)
        return Baseline(None)


def baseline_window(
    metrics: ServingMetrics, live: Sequence[str], baseline: Baseline, policy: AnalysisPolicy
) -> WindowStats:
    """The old live color's window up to the flip; its whole life when that was too short."""
    now = metrics.snapshot(live)
    seconds = time.monotonic() - baseline.taken
    window = now.window(baseline.snapshot, seconds=seconds)
    if window.requests < policy.min_requests:
        # Too little traffic since the release began: the old version's lifetime counters
        # are the better baseline (same pods, same traffic shape).
        return now.window(None, seconds=seconds)
    return window


def run_bake(metrics: ServingMetrics, window: BakeWindow, policy: AnalysisPolicy) -> BakeResult:
    """Watch the new live color for `bake_s`; return at once when a check fails."""
    baseline, control = window.start.baseline, window.control
    result = BakeResult(seconds_planned=policy.bake_s, baseline=baseline)
    started = time.monotonic()
    failures = 0
    while True:
        stopped = control.stop.wait(policy.interval_s)
        elapsed = time.monotonic() - started
        result.seconds = round(elapsed, 3)
        if stopped:
            result.checks.append(
                CheckResult(name="operator", verdict="fail", detail=control.reason)
            )
            result.verdict, result.breached_check = "fail", "operator"
            return result
        try:
            now = metrics.snapshot(window.live)
            failures = 0
        except DependencyUnavailable as exc:
            failures += 1
            if failures < _SCRAPE_FAILURES_TOLERATED:
                continue
            check = CheckResult(name="metrics", verdict="fail", detail=exc.detail)
            result.checks, result.verdict, result.breached_check = [check], "fail", "metrics"
            return result
        result.live = now.window(window.start.at_flip, seconds=elapsed)
        result.checks = bake_checks(baseline, result.live, policy)
        if policy.prometheus is not None:
            result.checks.append(_prometheus_check(metrics, policy))
        failed = next((c for c in result.checks if c.verdict == "fail"), None)
        if failed is not None:
            result.verdict, result.breached_check = "fail", failed.name
            return result
        window.progress(result)
        if elapsed >= policy.bake_s:
            result.verdict = overall(result.checks)
            return result


def _prometheus_check(metrics: ServingMetrics, policy: AnalysisPolicy) -> CheckResult:
    check = policy.prometheus
    assert check is not None
    try:
        value = metrics.query(check)
    except DependencyUnavailable as exc:
        return CheckResult(name="prometheus", verdict="inconclusive", detail=exc.detail)
    too_high = check.max_value is not None and value > check.max_value
    too_low = check.min_value is not None and value < check.min_value
    bounds = f"min {check.min_value}, max {check.max_value}"
    return CheckResult(
        name="prometheus",
        verdict="fail" if too_high or too_low else "pass",
        measured=value,
        threshold=check.max_value if check.max_value is not None else check.min_value,
        detail=f"{check.query} = {value:g} ({bounds})",
    )
