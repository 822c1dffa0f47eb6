"""The release engine: resolve → stage → verify → promote, and rollback.

Called by the controller API (`api.py`). It talks only to the small protocols in
`ports.py`; it knows no Kubernetes, no subprocess and no MLflow. Every step is recorded
in the journal (`operations.py`) before it runs, so a controller killed mid-release comes
back knowing where it stopped; the route is the truth for what is live.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from controller.analysis import AnalysisPolicy, WindowStats
from controller.analysis_steps import AnalysisSteps, Probes
from controller.domain import (
    Color,
    ColorStatus,
    Golden,
    Journal,
    Operation,
    OperationKind,
    OperationStatus,
    ResolvedVersion,
    Route,
    Stable,
    other_color,
    utcnow,
)
from controller.errors import (
    BadRequest,
    BluegreenError,
    ReleaseAborted,
    RollbackUnavailable,
)
from controller.operations import Observer, OperationLog, Ticket
from controller.ports import (
    ColorBackend,
    ColorPods,
    Fence,
    JournalStore,
    ModelRegistry,
    ReleaseLock,
    SmokeTester,
    TrafficRouter,
)
from controller.recovery import settle_stale
from controller.release_analysis import baseline_window, take_baseline
from controller.roles import RoleKeeper

log = logging.getLogger("bluegreen.engine")

_T = TypeVar("_T")


@dataclass(frozen=True)
class EnginePolicy:
    """The knobs of a release; their defaults live in the controller's settings."""

    live_alias: str
    stage_timeout_s: float
    history_limit: int
    default_golden: Golden | None = None
    analysis: AnalysisPolicy = field(default_factory=AnalysisPolicy)


@dataclass(frozen=True)
class ReleasePlan:
    target: ResolvedVersion
    golden: Golden | None
    analysis: AnalysisPolicy


class ReleaseEngine:
    def __init__(
        self,
        *,
        model: str,
        registry: ModelRegistry,
        backend: ColorBackend,
        router: TrafficRouter,
        journal_store: JournalStore,
        release_lock: ReleaseLock,
        smoke: SmokeTester,
        policy: EnginePolicy,
        probes: Probes | None = None,
        observe: Observer | None = None,
        pods: ColorPods | None = None,
    ) -> None:
        self.model = model
        self._registry = registry
        self._backend = backend
        self._router = router
        self._release_lock = release_lock
        self._smoke = smoke
        self._policy = policy
        self._color_pods = pods
        self._fence: Fence | None = None  # the held lock's proof, checked right before a flip
        self.roles = RoleKeeper(
            router=router,
            pods=self._pods,
            announce=lambda url, live: smoke.announce(url, live=live),
        )
        self._log = OperationLog(
            model=model, store=journal_store, history_limit=policy.history_limit, observe=observe
        )
        self._analysis = (
            AnalysisSteps(
                probes=probes,
                log_=self._log,
                router=router,
                pods=self._pods,
                endpoint=backend.endpoint,
                after_flip=lambda color, version: self._after_flip(live=color, version=version),
            )
            if probes is not None
            else None
        )

    # -- reading -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Live and standby as the route and the backend see them, plus any running operation."""
        route = self._router.current()
        live, standby = route.color, other_color(route.color)
        current = self._log.current
        return {
            "model": self.model,
            "live": self._color_status(live).model_dump(),
            "standby": self._color_status(standby).model_dump(),
            "operation": current.model_dump() if current else None,
            "route_revision": route.revision,
        }

    def history(self, limit: int = 50) -> list[Operation]:
        return self._log.history(limit)

    def operation(self, operation_id: str) -> Operation:
        return self._log.find(operation_id)

    @property
    def analysis_defaults(self) -> AnalysisPolicy:
        return self._policy.analysis

    @property
    def journal(self) -> Journal:
        return self._log.journal

    def _color_status(self, color: Color) -> ColorStatus:
        return ColorStatus(
            color=color,
            version=self._backend.pinned_version(color),
            ready=self._backend.is_ready(color),
        )

    # -- switch --------------------------------------------------------------------------

    def switch(
        self,
        *,
        version: str | None = None,
        alias: str | None = None,
        golden: Golden | None = None,
        analysis: AnalysisPolicy | None = None,
        wait: bool = True,
    ) -> Operation:
        """Release a version into the standby color and move traffic to it.

        Raises `ReleaseInProgress` at once when another operation holds the lock. With
        `wait`, returns the finished record or raises `ReleaseAborted`; without, returns
        the running record and finishes in a background thread.
        """
        requested = {"version": version} if version is not None else {"alias": alias or ""}
        analysis = analysis or self._policy.analysis
        if (analysis.shadow_s or analysis.bake_s) and self._analysis is None:
            raise BadRequest("this controller has no traffic probes: shadow and bake are off")
        ticket = self._begin("switch", requested)
        # Resolve before answering, even without `wait`: an unknown version is a 404 now.
        target = self._guarded(ticket, lambda: self._resolve(ticket, version, alias))
        if target is None:
            return self._log.finish(
                ticket, "unchanged", reason=f"v{ticket.operation.target_version} is live"
            )
        plan = ReleasePlan(
            target=target, golden=golden or self._policy.default_golden, analysis=analysis
        )
        if wait:
            return self._guarded(ticket, lambda: self._release(ticket, plan))

        def run_in_background() -> None:
            try:
                self._guarded(ticket, lambda: self._release(ticket, plan))
            except ReleaseAborted as exc:
                log.warning("release %s aborted: %s", ticket.operation.id, exc.detail)
            except Exception:
                log.exception("release %s crashed", ticket.operation.id)

        threading.Thread(target=run_in_background, name=f"release-{ticket.operation.id}").start()
        return ticket.operation.model_copy(deep=True)

    def _resolve(
        self, ticket: Ticket, version: str | None, alias: str | None
    ) -> ResolvedVersion | None:
        """The target version; None when it is already live."""
        op = ticket.operation
        with self._log.step(ticket, "resolve"):
            route = self._router.current()
            target = self._registry.resolve(self.model, version=version, alias=alias)
            op.target_version = target.version
            op.from_color, op.to_color = route.color, other_color(route.color)
            op.from_version = self._backend.pinned_version(route.color)
            op.route_revision = route.revision
        if op.from_version == target.version:
            op.to_color = route.color  # nothing moves
            return None
        return target

    def _release(self, ticket: Ticket, plan: ReleasePlan) -> Operation:
        op = ticket.operation
        assert op.from_color and op.to_color and op.route_revision is not None
        live, standby, policy = op.from_color, op.to_color, plan.analysis
        before = self._log.previous  # what a rollback returned to before this release
        steps = self._analysis
        baseline = None
        if policy.bake_s and steps is not None:
            baseline = take_baseline(steps.probes.metrics, self._pods(live))
        with self._log.step(ticket, "stage") as step:
            step.detail = self._stage(standby, plan.target)
        with self._log.step(ticket, "verify") as step:
            step.detail = self._verify(standby, plan)
        if policy.shadow_s and steps is not None:
            with self._log.step(ticket, "shadow") as step:
                step.detail = steps.shadow(ticket, policy)
        with self._log.step(ticket, "promote") as step:
            baseline_stats = WindowStats()
            if steps is not None and baseline is not None and baseline.snapshot is not None:
                baseline_stats = baseline_window(
                    steps.probes.metrics, self._pods(live), baseline, policy
                )
            baking = bool(policy.bake_s and steps is not None)
            # The standby's counters before it takes traffic: the bake counts from here.
            at_flip = None
            if baking and steps is not None:
                at_flip = take_baseline(steps.probes.metrics, self._pods(standby))
            if self._color_pods is not None:  # the live color may have autoscaled meanwhile
                self._color_pods.match_replicas(
                    standby, like=live, timeout=self._policy.stage_timeout_s
                )
            route = self._flip(ticket, to=standby, revision=op.route_revision, alias_later=baking)
            step.detail = f"live route now {standby} (revision {route.revision})"
        if baking and steps is not None and at_flip is not None:
            return steps.bake(ticket, policy, baseline_stats, at_flip=at_flip, before=before)
        return self._log.finish(ticket, "promoted")

    def _pods(self, color: Color) -> list[str]:
        """Every ready pod of the color where the backend lists them, else its one endpoint."""
        listed = self._color_pods.ready_endpoints(color) if self._color_pods is not None else []
        return listed or [self._backend.endpoint(color)]

    def _verify(self, standby: Color, plan: ReleasePlan) -> str:
        """Smoke-test every ready pod: one keep-alive connection through a Service is one pod."""
        pods = self._pods(standby)
        summaries = [
            self._smoke.verify(url, target=plan.target, golden=plan.golden) for url in pods
        ]
        return summaries[0] if len(pods) == 1 else f"{len(pods)} pods, each {summaries[0]}"

    def _stage(self, standby: Color, target: ResolvedVersion) -> str:
        live, timeout = other_color(standby), self._policy.stage_timeout_s
        if self._backend.pinned_version(standby) == target.version and self._backend.is_ready(
            standby
        ):
            detail = f"{standby} already holds v{target.version}"
        else:
            self._backend.pin(standby, model=self.model, version=target.version, timeout=timeout)
            detail = f"{standby} ready with v{target.version}"
        scaled = (
            self._color_pods.match_replicas(standby, like=live, timeout=timeout)
            if self._color_pods is not None
            else None
        )
        return f"{detail}; {scaled}" if scaled else detail

    # -- rollback ------------------------------------------------------------------------

    def rollback(self) -> Operation:
        """Flip back to the standby color, which must still hold the previous live version.

        During a bake, ends the bake: the release flips back and ends `rolled_back`.
        """
        bake = self._analysis.active_bake if self._analysis is not None else None
        if bake is not None:
            bake.request_rollback("rolled back on request during the bake")
            bake.done.wait(timeout=60)
            settled = self._log.history(1)
            if settled and settled[0].status == "rolled_back":
                return settled[0]
        ticket = self._begin("rollback", {})

        def flip_back() -> Operation:
            with self._log.step(ticket, "rollback") as step:
                step.detail = self._flip_back(ticket)
            return self._log.finish(ticket, "rolled_back")

        return self._guarded(ticket, flip_back)

    def _flip_back(self, ticket: Ticket) -> str:
        op = ticket.operation
        route = self._router.current()
        live, standby = route.color, other_color(route.color)
        previous = self._log.previous
        held = self._backend.pinned_version(standby)
        op.from_color, op.to_color = live, standby
        op.from_version, op.target_version = self._backend.pinned_version(live), held
        op.route_revision = route.revision
        self._log.save()  # what recovery compares the route against, should we die mid-flip
        if held is None:
            raise RollbackUnavailable(f"nothing to roll back to: standby {standby} holds nothing")
        if previous is None:
            raise RollbackUnavailable(
                f"nothing to roll back to: standby {standby} holds v{held}, but no earlier "
                "release is recorded"
            )
        if previous.color != standby or previous.version != held:
            raise RollbackUnavailable(
                f"standby {standby} holds v{held}, not v{previous.version} that was live "
                f"before on {previous.color}; release the version you want instead"
            )
        if not self._backend.is_ready(standby):
            raise RollbackUnavailable(f"standby {standby} (v{held}) is not ready")
        new_route = self._flip(ticket, to=standby, revision=route.revision)
        return f"live route back on {standby} (v{held}, revision {new_route.revision})"

    # -- the flip, shared by promote and rollback ------------------------------------------

    def _flip(
        self, ticket: Ticket, *, to: Color, revision: str, alias_later: bool = False
    ) -> Route:
        """Move live traffic to `to`, then keep what a rollback needs and tell the colors.

        `alias_later`: move the serving alias in the background (the bake joins it), so
        judging the new version starts the moment traffic reaches it.
        """
        op = ticket.operation
        assert op.target_version is not None
        if self._fence is not None:
            self._fence.check()  # ReleaseInProgress: another controller may be releasing now
        new_route = self._router.switch(to=to, expected_revision=revision)
        ticket.flipped = True
        op.route_revision = new_route.revision
        log.info(
            "switched from %s (v%s) to %s (v%s)%s",
            op.from_color,
            op.from_version,
            to,
            op.target_version,
            ": rollback" if op.kind == "rollback" else "",
        )
        self._log.previous = (
            Stable(color=op.from_color, version=op.from_version)
            if op.from_color and op.from_version
            else None
        )
        if alias_later:
            version = op.target_version
            ticket.alias_update = threading.Thread(
                target=lambda: self._after_flip(live=to, version=version), name="alias-update"
            )
            ticket.alias_update.start()
        else:
            self._after_flip(live=to, version=op.target_version)
        return new_route

    def _after_flip(self, *, live: Color, version: str) -> None:
        """Bookkeeping once traffic moved; failures here never undo the flip."""
        self.roles.announce(live)  # first: keep-alive clients of the old color move now
        try:
            self._registry.mark_live(
                self.model, version=version, alias=self._policy.live_alias, color=live
            )
        except BluegreenError as exc:
            log.warning(
                "traffic moved, but alias %r not updated: %s", self._policy.live_alias, exc.detail
            )

    # -- recovery ------------------------------------------------------------------------

    def recover(self) -> Operation | None:
        """Settle an operation a previous controller left running; the route decides.

        Takes the lock: while another controller still holds it, its operation is alive
        and not ours to settle (`ReleaseInProgress` propagates).
        """
        with self._release_lock.hold("recover"):
            return self._settle_stale()

    def _settle_stale(self) -> Operation | None:
        return settle_stale(
            self._log,
            router=self._router,
            backend=self._backend,
            after_flip=lambda color, version: self._after_flip(live=color, version=version),
        )

    # -- bookkeeping ---------------------------------------------------------------------

    def _begin(self, kind: OperationKind, requested: dict[str, str]) -> Ticket:
        held = ExitStack()
        handle = held.enter_context(self._release_lock.hold(f"{kind} {utcnow()}"))  # 409
        self._fence = handle if isinstance(handle, Fence) else None
        try:
            self._log.reload()  # another controller may have released since we loaded it
            if self._log.current is not None:  # we hold the lock: whoever left it is gone
                self._settle_stale()
        except BaseException:
            held.close()
            raise
        return self._log.begin(kind, requested, held)

    def _guarded(self, ticket: Ticket, run: Callable[[], _T]) -> _T:
        """Run part of an operation; a failure before the flip finishes it as aborted.

        After the flip nothing may record "aborted": traffic moved, so the operation ends
        as what the flip made it, with the problem in its reason.
        """
        try:
            return run()
        except BluegreenError as exc:
            if ticket.flipped:
                # Only the runs that flip (release, rollback) can get here; they return records.
                return cast(_T, self._finish_flipped(ticket, exc.detail))
            self._log.finish(ticket, "aborted", reason=exc.detail)
            if isinstance(exc, RollbackUnavailable):
                raise
            raise ReleaseAborted(exc, ticket.operation.model_dump()) from exc
        except Exception as exc:  # a bug must not leave the record "running"
            if ticket.flipped:
                self._finish_flipped(ticket, f"internal error after the flip: {exc!r}")
            else:
                self._log.finish(ticket, "aborted", reason=f"internal error: {exc!r}")
            raise

    def _finish_flipped(self, ticket: Ticket, problem: str) -> Operation:
        status: OperationStatus = "promoted" if ticket.operation.kind == "switch" else "rolled_back"
        log.error("%s %s after the flip: %s", status, ticket.operation.id, problem)
        return self._log.finish(ticket, status, reason=f"{status}; then: {problem}")
