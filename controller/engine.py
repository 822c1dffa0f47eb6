"""The release engine: resolve → stage → verify → [shadow] → [pause] → promote → [bake].

Called by the controller API (`api.py`). It talks only to the small protocols in
`ports.py` and to release analysis (`controller/analysis/`), whose verdicts it alone acts
on; it knows no Kubernetes, no subprocess and no MLflow. Every step is recorded in the
journal (`operations.py`) before it runs, so a controller killed mid-release comes back
knowing where it stopped; the route is the truth for what is live.

Traffic moves in one place, `_flip`, used by promote, rollback, the bake's flip back and
(for its bookkeeping) recovery: fence check, conditional switch, the rollback target,
the colors told their roles, the serving alias, in that order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from controller.analysis.analyzer import NoAnalysis, Probes, ReleaseAnalyzer, TrafficAnalysis
from controller.analysis.windows import BakeControl, BakeStart, BakeWindow, Baseline, ShadowWindow
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
from controller.domain.analysis import Analysis, AnalysisPolicy, BakeResult
from controller.domain.signature import input_changes, parse_inputs
from controller.errors import (
    AbortedByRequest,
    BadRequest,
    BluegreenError,
    NotPaused,
    ReleaseAborted,
    ReleaseInProgress,
    RollbackUnavailable,
    SchemaIncompatible,
    ShadowFailed,
    StageCancelled,
)
from controller.operations import Observer, OperationLog, Ticket
from controller.ports import (
    ColorBackend,
    ColorPods,
    Fence,
    JournalStore,
    ModelRegistry,
    Notifier,
    ReleaseLock,
    SmokeTester,
    TrafficRouter,
)
from controller.recovery import settle_stale
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
    pause_timeout_s: float = 3600.0
    rollback_window: int = 10
    scale_down_delay_s: float | None = None
    """The warm window: this long after a release settles the standby is scaled down to
    `standby_replicas` (None: never). Within it a rollback is one flip; after it, rollback
    stages the version again."""
    standby_replicas: int = 0


@dataclass(frozen=True)
class ReleasePlan:
    target: ResolvedVersion
    golden: Golden | None
    analysis: AnalysisPolicy


@dataclass
class _Paused:
    """A release waiting for `promote` or `abort`; it keeps the release lock."""

    ticket: Ticket
    plan: ReleasePlan
    opening: Baseline | None
    resumed: threading.Event = field(default_factory=threading.Event)


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
        notifier: Notifier | None = None,
    ) -> None:
        self.model = model
        self._registry = registry
        self._backend = backend
        self._router = router
        self._release_lock = release_lock
        self._smoke = smoke
        self._policy = policy
        self._color_pods = pods
        self._notifier = notifier
        self._fence: Fence | None = None  # the held lock's proof, checked right before a flip
        self._analyzer: ReleaseAnalyzer = (
            TrafficAnalysis(probes) if probes is not None else NoAnalysis()
        )
        self._bake: BakeControl | None = None
        self._paused: _Paused | None = None
        self._abort_requested = threading.Event()
        self._window: threading.Timer | None = None
        self._window_ends: str | None = None
        self._control = threading.Lock()  # pause, promote and abort see one another in order
        self.roles = RoleKeeper(
            router=router,
            pods=self._pods,
            announce=lambda url, live: smoke.announce(url, live=live),
        )
        self._journal = OperationLog(
            model=model,
            store=journal_store,
            history_limit=policy.history_limit,
            observe=self._observed(observe),
        )

    # -- reading -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Live and standby as the route and the backend see them, plus any running operation."""
        route = self._router.current()
        live, standby = route.color, other_color(route.color)
        current = self._journal.current
        parked = self._journal.parked
        window = (
            {"scaled_down": parked is not None and parked.color == standby}
            | {"scale_down_at": self._window_ends}
            | {"scale_down_to": self._policy.standby_replicas}
            if self._policy.scale_down_delay_s is not None or parked is not None
            else {}
        )  # only where a warm window is configured: the plain answer stays as it was
        return {
            "model": self.model,
            "live": self._color_status(live).model_dump(),
            "standby": {**self._color_status(standby).model_dump(), **window},
            "operation": current.model_dump() if current else None,
            "route_revision": route.revision,
            "rollback_versions": self.rollback_versions(),
        }

    def history(self, limit: int = 50) -> list[Operation]:
        return self._journal.history(limit)

    def operation(self, operation_id: str) -> Operation:
        return self._journal.find(operation_id)

    @property
    def analysis_defaults(self) -> AnalysisPolicy:
        return self._policy.analysis

    @property
    def journal(self) -> Journal:
        return self._journal.journal

    def rollback_versions(self) -> list[str]:
        """The versions `rollback(version=...)` may return to, newest first."""
        live = self._journal.live_versions
        return list(reversed(live[-self._policy.rollback_window :]))

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
        pause: bool = False,
        allow_schema_change: bool = False,
        wait: bool = True,
    ) -> Operation:
        """Release a version into the standby color and move traffic to it.

        Raises `ReleaseInProgress` at once when another operation holds the lock. With
        `wait`, returns the finished record (or the paused one, with `pause`) or raises
        `ReleaseAborted`; without, returns the running record and goes on in a thread.
        """
        requested = {"version": version} if version is not None else {"alias": alias or ""}
        analysis = analysis or self._policy.analysis
        if (analysis.shadow_s or analysis.bake_s) and not self._analyzer.available:
            raise BadRequest("this controller has no traffic probes: shadow and bake are off")
        ticket = self._begin("switch", requested)
        # Resolve before answering, even without `wait`: an unknown version is a 404 now.
        target = self._guarded(
            ticket, lambda: self._resolve(ticket, version, alias, gate=not allow_schema_change)
        )
        if target is None:
            return self._journal.finish(
                ticket, "unchanged", reason=f"v{ticket.operation.target_version} is live"
            )
        plan = ReleasePlan(
            target=target, golden=golden or self._policy.default_golden, analysis=analysis
        )
        ticket.operation.policy = analysis
        self._notify("release.started", ticket.operation)
        return self._run(ticket, lambda: self._release(ticket, plan, pause=pause), wait=wait)

    def _run(self, ticket: Ticket, work: Callable[[], Operation], *, wait: bool) -> Operation:
        if wait:
            return self._guarded(ticket, work)

        def run_in_background() -> None:
            try:
                self._guarded(ticket, work)
            except ReleaseAborted as exc:
                log.warning("operation %s aborted: %s", ticket.operation.id, exc.detail)
            except Exception:
                log.exception("operation %s crashed", ticket.operation.id)

        threading.Thread(target=run_in_background, name=f"op-{ticket.operation.id}").start()
        return ticket.operation.model_copy(deep=True)

    def _resolve(
        self, ticket: Ticket, version: str | None, alias: str | None, *, gate: bool
    ) -> ResolvedVersion | None:
        """The target version; None when it is already live.

        `gate`: refuse, before anything loads, a version whose input signature no longer
        accepts what the live version accepts (`SchemaIncompatible`).
        """
        op = ticket.operation
        with self._journal.step(ticket, "resolve") as step:
            route = self._router.current()
            target = self._registry.resolve(self.model, version=version, alias=alias)
            op.target_version = target.version
            op.from_color, op.to_color = route.color, other_color(route.color)
            op.from_version = self._backend.pinned_version(route.color)
            op.route_revision = route.revision
            if gate and op.from_version and op.from_version != target.version:
                step.detail = self._schema_gate(op.from_version, target)
        if op.from_version == target.version:
            op.to_color = route.color  # nothing moves
            return None
        return target

    def _schema_gate(self, live_version: str, target: ResolvedVersion) -> str:
        live = self._registry.resolve(self.model, version=live_version, alias=None)
        before, after = parse_inputs(live.signature_inputs), parse_inputs(target.signature_inputs)
        if before is None or after is None:
            return "schema gate skipped: a version has no input signature"
        changes = input_changes(before, after)
        if changes:
            raise SchemaIncompatible(
                f"v{target.version} no longer accepts what v{live_version} accepts: "
                + "; ".join(changes)
                + " (send allow_schema_change: true to release it anyway)"
            )
        return f"v{target.version} accepts every input v{live_version} accepts"

    def _release(self, ticket: Ticket, plan: ReleasePlan, *, pause: bool) -> Operation:
        op = ticket.operation
        assert op.from_color and op.to_color
        live, standby, policy = op.from_color, op.to_color, plan.analysis
        opening = self._analyzer.opening(self._pods(live), policy)
        self._checkpoint(ticket)
        with self._journal.step(ticket, "stage") as step:
            step.detail = self._stage(standby, plan.target)
        self._checkpoint(ticket)
        with self._journal.step(ticket, "verify") as step:
            step.detail = self._verify(standby, plan)
        self._checkpoint(ticket)
        if policy.shadow_s:
            with self._journal.step(ticket, "shadow") as step:
                step.detail = self._shadow(ticket, policy)
            self._checkpoint(ticket)
        if pause:
            return self._pause(ticket, plan, opening)
        return self._promote(ticket, plan, opening)

    def _shadow(self, ticket: Ticket, policy: AnalysisPolicy) -> str:
        """The shadow gate: the analyzer's verdict, acted on here."""
        op = ticket.operation
        assert op.from_color and op.to_color
        window = ShadowWindow(
            live=self._pods(op.from_color),
            standby=self._pods(op.to_color),
            target=self._backend.endpoint(op.to_color),
            session=op.id,
            stop=self._abort_requested,
        )
        result = self._analyzer.shadow(window, policy)
        self._journal.update(lambda: setattr(op, "analysis", Analysis(shadow=result)))
        summary = "; ".join(f"{c.name} {c.verdict}: {c.detail}" for c in result.checks)
        if result.verdict == "fail":
            raise ShadowFailed(f"shadow gate failed: {summary}")
        return f"{result.compared} mirrored requests, verdict {result.verdict}: {summary}"

    def _promote(self, ticket: Ticket, plan: ReleasePlan, opening: Baseline | None) -> Operation:
        op = ticket.operation
        assert op.from_color and op.to_color and op.route_revision is not None
        live, standby, policy = op.from_color, op.to_color, plan.analysis
        before = self._journal.previous  # what a rollback returned to before this release
        with self._journal.step(ticket, "promote") as step:
            start = (
                self._analyzer.bake_start(opening, self._pods(live), self._pods(standby), policy)
                if policy.bake_s
                else None
            )
            if self._color_pods is not None:  # the live color may have autoscaled meanwhile
                self._color_pods.match_replicas(
                    standby, like=live, timeout=self._policy.stage_timeout_s
                )
            route = self._flip(
                ticket,
                to=standby,
                version=plan.target.version,
                revision=op.route_revision,
                previous=Stable(color=live, version=op.from_version) if op.from_version else None,
                alias_later=start is not None,
            )
            step.detail = f"live route now {standby} (revision {route.revision})"
        if start is None:
            return self._finish(ticket, "promoted")
        return self._bake_step(ticket, policy, start, before=before)

    def _bake_step(
        self, ticket: Ticket, policy: AnalysisPolicy, start: BakeStart, *, before: Stable | None
    ) -> Operation:
        """Watch the new live color; on a failed check flip back and end `rolled_back`."""
        op = ticket.operation
        assert op.from_color and op.to_color and op.route_revision is not None
        control = self._bake = BakeControl()
        analysis = op.analysis or Analysis()
        try:
            starting = BakeResult(seconds_planned=policy.bake_s, baseline=start.baseline)
            self._journal.update(
                lambda: _baking(op, analysis.model_copy(update={"bake": starting}))
            )
            self._journal.save_after_flip()
            with self._journal.step(ticket, "bake") as step:
                window = BakeWindow(
                    start=start,
                    live=self._pods(op.to_color),
                    control=control,
                    progress=lambda now: self._journal.update(
                        lambda: setattr(op, "analysis", analysis.model_copy(update={"bake": now}))
                    ),
                )
                result = self._analyzer.bake(window, policy)
                analysis.bake = result
                self._journal.update(lambda: setattr(op, "analysis", analysis))
                if result.verdict != "fail":
                    step.detail = f"baked {result.seconds:.1f} s: verdict {result.verdict}"
                    return self._finish(ticket, "promoted")
                self._notify("bake.breached", op)
                seen = time.monotonic()
                self._flip(
                    ticket,
                    to=op.from_color,
                    version=op.from_version or "",
                    revision=op.route_revision,
                    previous=before,  # the release did not take: rollback as it was before
                    reason=f"bake failed ({result.breached_check})",
                )
                # To the route's move, not past the bookkeeping after it (journal, roles, alias).
                result.flip_back_ms = round(((ticket.flipped_at or seen) - seen) * 1000, 1)
                failed = next((c for c in result.checks if c.verdict == "fail"), None)
                why = f"{failed.name}: {failed.detail}" if failed else "a check failed"
                step.detail = (
                    f"bake check {why}; traffic back on {op.from_color} (v{op.from_version}) "
                    f"{result.flip_back_ms:.0f} ms after the breach was seen"
                )
            op.failed_step = "bake"
            op.error, op.retryable = "bake_failed", False
            return self._finish(ticket, "rolled_back", reason=step.detail)
        finally:
            _join_alias_update(ticket)
            control.done.set()
            self._bake = None

    def pods(self, color: Color) -> list[str]:
        """Every ready pod of the color where the backend lists them, else its one endpoint."""
        return self._pods(color)

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
        """Load the target into the standby; an abort meanwhile stops the wait at once."""
        live, timeout = other_color(standby), self._policy.stage_timeout_s
        try:
            if self._backend.pinned_version(standby) == target.version and self._backend.is_ready(
                standby
            ):
                detail = f"{standby} already holds v{target.version}"
            else:
                self._backend.pin(
                    standby,
                    model=self.model,
                    version=target.version,
                    timeout=timeout,
                    cancel=self._abort_requested,
                )
                detail = f"{standby} ready with v{target.version}"
            scaled = (
                self._color_pods.match_replicas(
                    standby, like=live, timeout=timeout, cancel=self._abort_requested
                )
                if self._color_pods is not None
                else None
            )
        except StageCancelled as exc:
            self._abort_requested.clear()
            raise AbortedByRequest(
                f"aborted by request during stage ({exc.detail}); live traffic stayed on {live}"
            ) from None
        return f"{detail}; {scaled}" if scaled else detail

    # -- pause, promote, abort -----------------------------------------------------------

    def _pause(self, ticket: Ticket, plan: ReleasePlan, opening: Baseline | None) -> Operation:
        """Stop before the flip, keeping the lock; `promote` or `abort` decides."""
        with self._control:
            paused = self._paused = _Paused(ticket=ticket, plan=plan, opening=opening)
            self._journal.update(lambda: setattr(ticket.operation, "status", "paused"))
            self._journal.save()
        self._notify("release.paused", ticket.operation)
        threading.Thread(
            target=self._expire_pause, args=(paused,), name="pause-timeout", daemon=True
        ).start()
        log.info("release %s paused before the flip", ticket.operation.id)
        return ticket.operation.model_copy(deep=True)

    def _expire_pause(self, paused: _Paused) -> None:
        if paused.resumed.wait(self._policy.pause_timeout_s):
            return
        with self._control:
            if self._paused is not paused:
                return
            self._paused = None
        paused.resumed.set()
        self._end_aborted(
            paused.ticket,
            AbortedByRequest(
                f"paused longer than {self._policy.pause_timeout_s:g} s without promote; "
                f"live traffic stayed on {paused.ticket.operation.from_color}"
            ),
        )

    def promote(self, *, wait: bool = True) -> Operation:
        """Continue a paused release: flip, then bake. 409 `not_paused` when none is."""
        with self._control:
            paused, self._paused = self._paused, None
            if paused is None:
                raise NotPaused("no release is paused; nothing to promote")
            paused.resumed.set()
        ticket = paused.ticket
        self._journal.update(lambda: setattr(ticket.operation, "status", "running"))
        return self._run(
            ticket, lambda: self._promote(ticket, paused.plan, paused.opening), wait=wait
        )

    def abort(self) -> Operation:
        """End a paused or running release before its flip; during a bake, roll back."""
        with self._control:
            paused, self._paused = self._paused, None
            if paused is not None:
                paused.resumed.set()
        if paused is not None:
            return self._end_aborted(
                paused.ticket,
                AbortedByRequest(
                    f"aborted by request while paused; live traffic stayed on "
                    f"{paused.ticket.operation.from_color}"
                ),
            )
        if self._bake is not None:
            return self._end_bake("aborted by request during the bake")
        current = self._journal.current
        if current is None or current.kind != "switch" or current.status != "running":
            raise NotPaused("no release is running; nothing to abort")
        self._abort_requested.set()
        deadline = time.monotonic() + self._policy.stage_timeout_s + 30
        while time.monotonic() < deadline:  # the next safe point ends it
            settled = self._journal.find(current.id)
            if settled.status != "running":
                return settled
            time.sleep(0.05)
        return self._journal.find(current.id)

    def _checkpoint(self, ticket: Ticket) -> None:
        """A safe point between steps: an abort requested meanwhile ends the release here."""
        if self._abort_requested.is_set():
            self._abort_requested.clear()
            op = ticket.operation
            op.failed_step = op.steps[-1].name if op.steps else None
            raise AbortedByRequest(
                f"aborted by request after {op.failed_step or 'start'}; "
                f"live traffic stayed on {op.from_color}"
            )

    def _end_aborted(self, ticket: Ticket, reason: AbortedByRequest) -> Operation:
        op = ticket.operation
        op.failed_step = op.steps[-1].name if op.steps else None
        op.error, op.retryable = reason.error, reason.retryable
        return self._finish(ticket, "aborted", reason=reason.detail)

    # -- rollback ------------------------------------------------------------------------

    def rollback(self, *, version: str | None = None) -> Operation:
        """Go back to the version live before (one flip), or to `version` if given.

        During a bake, ends the bake: the release flips back and ends `rolled_back`. A
        `version` the standby does not hold is staged and verified before the flip.
        """
        if self._bake is not None and version is None:
            return self._end_bake("rolled back on request during the bake")
        if version is not None and version not in self.rollback_versions():
            allowed = ", ".join(f"v{v}" for v in self.rollback_versions()) or "none yet"
            raise RollbackUnavailable(
                f"v{version} was not live within the last {self._policy.rollback_window} "
                f"releases; rollback can go to: {allowed}"
            )
        ticket = self._begin("rollback", {"version": version} if version else {})
        return self._guarded(ticket, lambda: self._rollback(ticket, version))

    def _end_bake(self, reason: str) -> Operation:
        bake = self._bake
        if bake is None:
            raise RollbackUnavailable("no bake is running")
        bake.request_rollback(reason)
        bake.done.wait(timeout=60)
        settled = self._journal.history(1)
        if settled and settled[0].status == "rolled_back":
            return settled[0]
        raise RollbackUnavailable(f"the bake ended before the request took: {reason}")

    def _rollback(self, ticket: Ticket, version: str | None) -> Operation:
        op = ticket.operation
        route = self._router.current()
        live, standby = route.color, other_color(route.color)
        held = self._backend.pinned_version(standby)
        op.from_color, op.to_color = live, standby
        op.from_version = self._backend.pinned_version(live)
        op.target_version = version or held
        op.route_revision = route.revision
        self._journal.save()  # what recovery compares the route against, should we die mid-flip
        if version is not None and version == op.from_version:
            return self._finish(ticket, "unchanged", reason=f"v{version} is live")
        parked = self._journal.parked
        # Past the warm window the standby holds its version on fewer pods, or on none: stage
        # it again (back to the live color's size), verify, then flip.
        restage = parked is not None and parked.color == standby and held in (None, parked.version)
        if restage and version is None and parked is not None:
            version = op.target_version = parked.version
        if version is not None and (
            restage or held != version or not self._backend.is_ready(standby)
        ):
            target = self._registry.resolve(self.model, version=version, alias=None)
            plan = ReleasePlan(target=target, golden=self._policy.default_golden, analysis=_OFF)
            with self._journal.step(ticket, "stage") as step:
                step.detail = self._stage(standby, target)
            with self._journal.step(ticket, "verify") as step:
                step.detail = self._verify(standby, plan)
        else:
            self._check_one_flip_back(standby, held, explicit=version is not None)
        with self._journal.step(ticket, "rollback") as step:
            assert op.target_version is not None
            new_route = self._flip(
                ticket,
                to=standby,
                version=op.target_version,
                revision=route.revision,
                previous=Stable(color=live, version=op.from_version) if op.from_version else None,
            )
            step.detail = (
                f"live route back on {standby} (v{op.target_version}, "
                f"revision {new_route.revision})"
            )
        return self._finish(ticket, "rolled_back")

    def _check_one_flip_back(self, standby: Color, held: str | None, *, explicit: bool) -> None:
        previous = self._journal.previous
        if held is None:
            raise RollbackUnavailable(f"nothing to roll back to: standby {standby} holds nothing")
        if not explicit:
            if previous is None:
                raise RollbackUnavailable(
                    f"nothing to roll back to: standby {standby} holds v{held}, but no "
                    "earlier release is recorded"
                )
            if previous.color != standby or previous.version != held:
                raise RollbackUnavailable(
                    f"standby {standby} holds v{held}, not v{previous.version} that was live "
                    f"before on {previous.color}; release the version you want instead"
                )
        if not self._backend.is_ready(standby):
            raise RollbackUnavailable(f"standby {standby} (v{held}) is not ready")

    # -- the one flip --------------------------------------------------------------------

    def _flip(
        self,
        ticket: Ticket,
        *,
        to: Color,
        version: str,
        revision: str,
        previous: Stable | None,
        alias_later: bool = False,
        reason: str = "",
    ) -> Route:
        """Move live traffic to `to` (holding `version`), then settle what follows a flip.

        Fence check first: a controller that lost its lock writes nothing. `alias_later`
        moves the serving alias in the background (the bake joins it), so judging the new
        version starts the moment traffic reaches it.
        """
        op = ticket.operation
        if self._fence is not None:
            self._fence.check()  # ReleaseInProgress: another controller may be releasing now
        new_route = self._router.switch(to=to, expected_revision=revision)
        ticket.flipped, ticket.flipped_at = True, time.monotonic()
        op.route_revision = new_route.revision
        log.info(
            "switched to %s (v%s), revision %s: %s %s%s",
            to,
            version,
            new_route.revision,
            op.kind,
            op.id,
            f" ({reason})" if reason else "",
        )
        if alias_later:
            ticket.alias_update = threading.Thread(
                target=lambda: self._after_flip(previous=previous, live=to, version=version),
                name="alias-update",
            )
            ticket.alias_update.start()
        else:
            _join_alias_update(ticket)  # the alias moves back only after it moved forward
            self._after_flip(previous=previous, live=to, version=version)
        return new_route

    def _after_flip(self, *, previous: Stable | None, live: Color, version: str) -> None:
        """What follows every flip, recovery's included; failures here never undo it."""
        self._journal.record_live(previous=previous, version=version)
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
        and not ours to settle (`ReleaseInProgress` propagates). A release left paused
        comes back paused, still holding the lock, when nothing moved meanwhile.
        """
        held = ExitStack()
        handle = held.enter_context(self._release_lock.hold("recover"))
        try:
            resumed = self._resume_paused(held, handle)
            if resumed is not None:
                return resumed
            return self._settle_stale()
        finally:
            if self._paused is None or self._paused.ticket.held is not held:
                held.close()
                if self._journal.parked is None:
                    self.open_warm_window()  # a restart restarts the countdown, never skips it

    def _resume_paused(self, held: ExitStack, handle: object) -> Operation | None:
        op = self._journal.current
        if op is None or op.status != "paused" or op.to_color is None or op.target_version is None:
            return None
        route = self._router.current()
        held_now = self._backend.pinned_version(op.to_color)
        if route.revision != op.route_revision or held_now != op.target_version:
            log.warning(
                "release %s was paused, but the route (revision %s, was %s) or the standby "
                "(holds v%s, was v%s) changed while no controller ran: settling it",
                op.id,
                route.revision,
                op.route_revision,
                held_now,
                op.target_version,
            )
            return None
        self._fence = handle if isinstance(handle, Fence) else None
        ticket = self._journal.adopt(op, held)
        plan = ReleasePlan(
            target=ResolvedVersion(model=self.model, version=op.target_version),
            golden=self._policy.default_golden,
            analysis=op.policy or self._policy.analysis,
        )
        opening = self._analyzer.opening(self._pods(route.color), plan.analysis)
        with self._control:
            paused = self._paused = _Paused(ticket=ticket, plan=plan, opening=opening)
        threading.Thread(
            target=self._expire_pause, args=(paused,), name="pause-timeout", daemon=True
        ).start()
        log.warning("release %s was paused when the controller stopped: paused again", op.id)
        return op.model_copy(deep=True)

    def _settle_stale(self) -> Operation | None:
        return settle_stale(
            self._journal,
            router=self._router,
            backend=self._backend,
            after_flip=lambda previous, color, version: self._after_flip(
                previous=previous, live=color, version=version
            ),
        )

    # -- bookkeeping ---------------------------------------------------------------------

    def _begin(self, kind: OperationKind, requested: dict[str, str]) -> Ticket:
        if self._paused is not None:
            op = self._paused.ticket.operation
            raise ReleaseInProgress(
                f"release {op.id} (v{op.target_version}) is paused: promote or abort it first"
            )
        held = ExitStack()
        handle = held.enter_context(self._release_lock.hold(f"{kind} {utcnow()}"))  # 409
        self._fence = handle if isinstance(handle, Fence) else None
        self._abort_requested.clear()
        try:
            self._journal.reload()  # another controller may have released since we loaded it
            if self._journal.current is not None:  # we hold the lock: whoever left it is gone
                self._settle_stale()
        except BaseException:
            held.close()
            raise
        return self._journal.begin(kind, requested, held)

    def _finish(
        self, ticket: Ticket, status: OperationStatus, *, reason: str | None = None
    ) -> Operation:
        finished = self._journal.finish(ticket, status, reason=reason)
        if status in ("promoted", "rolled_back") or (status == "aborted" and ticket.flipped):
            self.open_warm_window()
        return finished

    # -- the warm window -----------------------------------------------------------------

    def open_warm_window(self) -> None:
        """Start (or restart) the countdown after which the standby is scaled down."""
        delay = self._policy.scale_down_delay_s
        if delay is None:
            return
        if self._window is not None:
            self._window.cancel()
        self._window = threading.Timer(delay, self._scale_down_standby)
        self._window.daemon = True
        self._window_ends = _utc_in(delay)
        self._window.start()

    def _scale_down_standby(self) -> None:
        """Stop the standby, under the release lock so no release or rollback races it."""
        try:
            with self._release_lock.hold("scale-down"):
                if self._journal.current is not None or self._paused is not None:
                    return  # an operation runs: it opens a new window when it settles
                standby = other_color(self._router.current().color)
                version = self._backend.pinned_version(standby)
                if version is None:
                    return
                replicas = self._policy.standby_replicas
                self._backend.scale_down(standby, replicas=replicas)
                self._journal.park(Stable(color=standby, version=version))
                self._window_ends = None
                log.info(
                    "warm window over: standby %s (v%s) scaled down to %d",
                    standby,
                    version,
                    replicas,
                )
        except BluegreenError as exc:
            log.warning("standby not scaled down (next settle retries): %s", exc.detail)

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
            op = ticket.operation
            op.error, op.retryable = exc.error, exc.retryable
            self._finish(ticket, "aborted", reason=exc.detail)
            if isinstance(exc, RollbackUnavailable):
                raise
            raise ReleaseAborted(exc, op.model_dump()) from exc
        except Exception as exc:  # a bug must not leave the record "running"
            if ticket.flipped:
                self._finish_flipped(ticket, f"internal error after the flip: {exc!r}")
            else:
                ticket.operation.error = "internal_error"
                self._finish(ticket, "aborted", reason=f"internal error: {exc!r}")
            raise

    def _finish_flipped(self, ticket: Ticket, problem: str) -> Operation:
        status: OperationStatus = "promoted" if ticket.operation.kind == "switch" else "rolled_back"
        log.error("%s %s after the flip: %s", status, ticket.operation.id, problem)
        return self._finish(ticket, status, reason=f"{status}; then: {problem}")

    def _observed(self, observe: Observer | None) -> Observer:
        """Every finished operation goes to the metrics and, as an event, to the notifier."""

        def finished(op: Operation) -> None:
            if observe is not None:
                observe(op)
            if op.status in ("promoted", "aborted", "rolled_back"):
                self._notify(f"release.{op.status}", op)

        return finished

    def _notify(self, event: str, op: Operation) -> None:
        if self._notifier is not None:
            self._notifier.publish(event, op.model_copy(deep=True))


_OFF = AnalysisPolicy()


def _utc_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def _baking(op: Operation, analysis: Analysis) -> None:
    op.status = "baking"
    op.analysis = analysis


def _join_alias_update(ticket: Ticket) -> None:
    if ticket.alias_update is not None and ticket.alias_update is not threading.current_thread():
        ticket.alias_update.join()
        ticket.alias_update = None
