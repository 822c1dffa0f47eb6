"""The shadow and bake steps of a release, as the engine runs them.

Called by `engine.py` between verify and promote (shadow) and after promote (bake). The
measuring and judging is in `release_analysis.py` and `analysis.py`; this module puts the
results on the operation record, raises the shadow gate, and flips traffic back when a
bake check fails (or an operator asks), while the old version is still warm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.analysis import Analysis, AnalysisPolicy, BakeResult, WindowStats
from controller.domain import Color, Operation, Stable
from controller.errors import JournalUnavailable, ShadowFailed
from controller.operations import OperationLog, Ticket
from controller.ports import ServingMetrics, ShadowTraffic, TrafficRouter
from controller.release_analysis import BakeControl, Baseline, run_bake, run_shadow

log = logging.getLogger("bluegreen.analysis_steps")


@dataclass(frozen=True)
class Probes:
    """What the analysis steps read live traffic with; without them, no shadow or bake."""

    metrics: ServingMetrics
    shadow: ShadowTraffic


class AnalysisSteps:
    def __init__(
        self,
        *,
        probes: Probes,
        log_: OperationLog,
        router: TrafficRouter,
        pods: Callable[[Color], list[str]],
        endpoint: Callable[[Color], str],
        after_flip: Callable[[Color, str], None],
    ) -> None:
        self.probes = probes
        self._log = log_
        self._router = router
        self._pods = pods
        self._endpoint = endpoint
        self._after_flip = after_flip
        self.active_bake: BakeControl | None = None

    def shadow(self, ticket: Ticket, policy: AnalysisPolicy) -> str:
        """Mirror live traffic to the standby; `ShadowFailed` when the gate says no."""
        op = ticket.operation
        assert op.from_color and op.to_color
        result = run_shadow(
            self.probes.shadow,
            live=self._pods(op.from_color),
            standby=self._pods(op.to_color),
            target=self._endpoint(op.to_color),
            policy=policy,
            session=op.id,
        )
        self._log.update(lambda: setattr(op, "analysis", Analysis(shadow=result)))
        summary = "; ".join(f"{c.name} {c.verdict}: {c.detail}" for c in result.checks)
        if result.verdict == "fail":
            raise ShadowFailed(f"shadow gate failed: {summary}")
        return f"{result.compared} mirrored requests, verdict {result.verdict}: {summary}"

    def bake(
        self,
        ticket: Ticket,
        policy: AnalysisPolicy,
        baseline: WindowStats,
        *,
        at_flip: Baseline,
        before: Stable | None,
    ) -> Operation:
        """Watch the new live color; on a failed check flip back and end `rolled_back`."""
        op = ticket.operation
        assert op.to_color is not None
        control = self.active_bake = BakeControl()
        analysis = op.analysis or Analysis()
        try:
            starting = BakeResult(seconds_planned=policy.bake_s, baseline=baseline)
            self._log.update(lambda: _baking(op, analysis.model_copy(update={"bake": starting})))
            self._save_after_flip()
            with self._log.step(ticket, "bake") as step:
                result = run_bake(
                    self.probes.metrics,
                    live=self._pods(op.to_color),
                    baseline=baseline,
                    policy=policy,
                    control=control,
                    at_flip=at_flip.snapshot,
                    progress=lambda now: self._log.update(
                        lambda: setattr(op, "analysis", analysis.model_copy(update={"bake": now}))
                    ),
                )
                analysis.bake = result
                self._log.update(lambda: setattr(op, "analysis", analysis))
                if result.verdict != "fail":
                    step.detail = f"baked {result.seconds:.1f} s: verdict {result.verdict}"
                    return self._log.finish(ticket, "promoted")
                reason = self._flip_back(ticket, result, before=before)
                step.detail = reason
            op.failed_step = "bake"
            return self._log.finish(ticket, "rolled_back", reason=reason)
        finally:
            _join_alias_update(ticket)
            control.done.set()
            self.active_bake = None

    def _flip_back(self, ticket: Ticket, result: BakeResult, *, before: Stable | None) -> str:
        op = ticket.operation
        assert op.from_color and op.route_revision is not None
        seen = time.monotonic()
        route = self._router.switch(to=op.from_color, expected_revision=op.route_revision)
        result.flip_back_ms = round((time.monotonic() - seen) * 1000, 1)
        _join_alias_update(ticket)  # the alias moves back only after it moved forward
        op.route_revision = route.revision
        self._log.previous = before  # the release did not take: rollback as it was before
        log.warning(
            "bake failed (%s): switched from %s (v%s) back to %s (v%s)",
            result.breached_check,
            op.to_color,
            op.target_version,
            op.from_color,
            op.from_version,
        )
        if op.from_version:
            self._after_flip(op.from_color, op.from_version)
        failed = next((c for c in result.checks if c.verdict == "fail"), None)
        why = f"{failed.name}: {failed.detail}" if failed else "a check failed"
        return (
            f"bake check {why}; traffic back on {op.from_color} (v{op.from_version}) "
            f"{result.flip_back_ms:.0f} ms after the breach was seen"
        )

    def _save_after_flip(self) -> None:
        try:
            self._log.save()
        except JournalUnavailable as exc:  # traffic moved: keep going, the finish retries
            log.error("journal not saved after the flip: %s", exc.detail)


def _baking(op: Operation, analysis: Analysis) -> None:
    op.status = "baking"
    op.analysis = analysis


def _join_alias_update(ticket: Ticket) -> None:
    if ticket.alias_update is not None:
        ticket.alias_update.join()
        ticket.alias_update = None
