"""The verdicts of release analysis: pure functions over plain numbers.

Called by the measuring windows (`windows.py`) with what the model servers served;
"inconclusive" is a real outcome: with too few requests nothing is called a pass.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.domain.analysis import (
    AnalysisPolicy,
    CheckResult,
    ShadowReport,
    Verdict,
    WindowStats,
)


def shadow_checks(report: ShadowReport, policy: AnalysisPolicy) -> list[CheckResult]:
    """The shadow step's checks: prediction agreement, and the standby's own errors."""
    agreement = report.agreed_rows / report.rows if report.rows else None
    enough = report.compared >= policy.min_requests
    gate = policy.min_agreement
    if agreement is None or not enough:
        verdict: Verdict = "inconclusive"
        detail = f"{report.compared} mirrored requests compared, {policy.min_requests} needed"
        if report.skipped_by_cap:
            detail += (
                f" ({report.skipped_by_cap} more were over the mirror cap of "
                f"{policy.shadow_max_rps:g}/s)"
            )
    elif gate is None:
        verdict, detail = "report", f"{agreement:.1%} of {report.rows} rows agree (no gate set)"
    else:
        verdict = "pass" if agreement >= gate else "fail"
        detail = f"{agreement:.1%} of {report.rows} rows agree; the gate is {gate:.1%}"
    errors_verdict: Verdict = (
        "inconclusive" if not enough else ("pass" if report.standby_errors == 0 else "fail")
    )
    return [
        CheckResult(
            name="agreement", verdict=verdict, measured=agreement, threshold=gate, detail=detail
        ),
        CheckResult(
            name="standby_errors",
            verdict=errors_verdict,
            measured=float(report.standby_errors),
            threshold=0.0,
            detail=f"{report.standby_errors} of {report.compared} mirrored requests failed",
        ),
    ]


def bake_checks(
    baseline: WindowStats, live: WindowStats, policy: AnalysisPolicy
) -> list[CheckResult]:
    """The bake step's checks: the new live color against the old one's baseline."""
    if live.requests < policy.min_requests:
        why = f"{live.requests} requests since the flip, {policy.min_requests} needed"
        return [
            CheckResult(name=name, verdict="inconclusive", detail=why)
            for name in ("error_rate", "p99_latency", "class_shift", "value_shift")
        ]
    return [
        _error_rate(baseline, live, policy),
        _p99(baseline, live, policy),
        _shift(baseline, live, policy),
        _value_shift(baseline, live, policy),
    ]


def _error_rate(baseline: WindowStats, live: WindowStats, policy: AnalysisPolicy) -> CheckResult:
    base = baseline.error_rate or 0.0
    limit = base + policy.max_error_rate_increase
    measured = live.error_rate or 0.0
    return CheckResult(
        name="error_rate",
        verdict="pass" if measured <= limit else "fail",
        measured=measured,
        threshold=round(limit, 4),
        baseline=baseline.error_rate,
        detail=f"{live.errors_5xx} of {live.requests} answers were 5xx ({measured:.2%}); "
        f"baseline {base:.2%}, limit {limit:.2%}",
    )


def _p99(baseline: WindowStats, live: WindowStats, policy: AnalysisPolicy) -> CheckResult:
    if live.p99_ms is None:
        return CheckResult(name="p99_latency", verdict="inconclusive", detail="no latency samples")
    limit = max(policy.p99_floor_ms, (baseline.p99_ms or 0.0) * policy.max_p99_ratio)
    return CheckResult(
        name="p99_latency",
        verdict="pass" if live.p99_ms <= limit else "fail",
        measured=live.p99_ms,
        threshold=limit,
        baseline=baseline.p99_ms,
        detail=f"p99 {live.p99_ms:g} ms; baseline {baseline.p99_ms} ms, limit {limit:g} ms",
    )


def _shift(baseline: WindowStats, live: WindowStats, policy: AnalysisPolicy) -> CheckResult:
    if not baseline.classes and not live.classes:
        return CheckResult(
            name="class_shift", verdict="report", detail="no predicted classes: not a classifier"
        )
    if not live.classes or sum(baseline.classes.values()) < policy.min_requests:
        return CheckResult(
            name="class_shift",
            verdict="inconclusive",
            detail="too few predicted classes on one side to compare distributions",
        )
    shift = total_variation(baseline.classes, live.classes)
    return _distance_check(
        "class_shift",
        shift,
        policy.max_class_shift,
        detail=f"predicted classes moved by {shift:.1%} (total variation); "
        f"baseline {baseline.classes}, now {live.classes}",
    )


def _value_shift(baseline: WindowStats, live: WindowStats, policy: AnalysisPolicy) -> CheckResult:
    """A regressor's predictions against the baseline's: a constant or nonsense answer moves
    the distribution even where no class does."""
    if not baseline.values.count and not live.values.count:
        return CheckResult(
            name="value_shift", verdict="report", detail="no numeric predictions: not a regressor"
        )
    if baseline.values.count < policy.min_requests or live.values.count < policy.min_requests:
        return CheckResult(
            name="value_shift",
            verdict="inconclusive",
            detail=f"{int(live.values.count)} numeric predictions since the flip, "
            f"{int(baseline.values.count)} in the baseline; {policy.min_requests} needed each",
        )
    distance = ks_distance(baseline.values.buckets, live.values.buckets)
    return _distance_check(
        "value_shift",
        distance,
        policy.max_value_shift,
        detail=f"numeric predictions moved by {distance:.1%} (Kolmogorov-Smirnov over "
        f"{len(live.values.buckets)} fixed buckets); limit {policy.max_value_shift:.0%}",
    )


def _distance_check(name: str, distance: float, limit: float, *, detail: str) -> CheckResult:
    """A shift between the baseline's distribution and the live one's (0 same, 1 disjoint)
    passes up to `limit`; recorded to four places, as a distance means no more."""
    return CheckResult(
        name=name,
        verdict="pass" if distance <= limit else "fail",
        measured=round(distance, 4),
        threshold=limit,
        detail=detail,
    )


def ks_distance(a: Mapping[float, float], b: Mapping[float, float]) -> float:
    """Largest gap between two cumulative bucket distributions: 0 same, 1 disjoint."""
    total_a, total_b = a.get(float("inf"), 0.0), b.get(float("inf"), 0.0)
    if total_a <= 0 or total_b <= 0:
        return 0.0
    bounds = sorted(set(a) | set(b))
    return max(abs(a.get(le, 0.0) / total_a - b.get(le, 0.0) / total_b) for le in bounds)


def total_variation(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Half the L1 distance between two count distributions: 0 same, 1 disjoint."""
    total_a, total_b = sum(a.values()), sum(b.values())
    if not total_a or not total_b:
        return 0.0
    keys = set(a) | set(b)
    return sum(abs(a.get(k, 0) / total_a - b.get(k, 0) / total_b) for k in keys) / 2


def overall(checks: list[CheckResult]) -> Verdict:
    """Fail if any check failed; pass only if every judged check passed."""
    verdicts = {check.verdict for check in checks}
    if "fail" in verdicts:
        return "fail"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "pass" if "pass" in verdicts else "report"
