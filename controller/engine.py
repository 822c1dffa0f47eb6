"""The release engine: resolve → stage → verify → promote, and rollback.

Called by the controller API (`api.py`). It talks only to the small protocols in
`ports.py` and `router.protocol`; it knows no Kubernetes, no subprocess and no MLflow.
Every step is recorded in the journal before and after it runs, so a controller killed
mid-release comes back knowing where it stopped; the route is the truth for what is live.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from controller.errors import (
    BluegreenError,
    OperationNotFound,
    ReleaseAborted,
    RollbackUnavailable,
)
from controller.model import (
    COLORS,
    Color,
    ColorStatus,
    Golden,
    Journal,
    Operation,
    OperationId,
    OperationKind,
    ResolvedVersion,
    Route,
    Stable,
    StepName,
    StepRecord,
    other_color,
    utcnow,
)
from controller.ports import ColorBackend, JournalStore, ModelRegistry, ReleaseLock, SmokeTester
from router.protocol import TrafficRouter

log = logging.getLogger("bluegreen.engine")


@dataclass(frozen=True)
class EnginePolicy:
    """The knobs of a release."""

    live_alias: str = "live"
    stage_timeout_s: float = 180.0
    history_limit: int = 200
    default_golden: Golden | None = None


@dataclass
class _Ticket:
    """A started operation and the lock it holds until it finishes."""

    operation: Operation
    held: ExitStack
    started: float


Observer = Callable[[Operation], None]
_T = TypeVar("_T")


class ReleaseEngine:
    def __init__(
        self,
        *,
        model: str,
        registry: ModelRegistry,
        backend: ColorBackend,
        router: TrafficRouter,
        journal_store: JournalStore,
        lock: ReleaseLock,
        smoke: SmokeTester,
        policy: EnginePolicy | None = None,
        observe: Observer | None = None,
    ) -> None:
        self.model = model
        self._registry = registry
        self._backend = backend
        self._router = router
        self._store = journal_store
        self._lock = lock
        self._smoke = smoke
        self._policy = policy or EnginePolicy()
        self._observe = observe
        self._memory = threading.RLock()  # guards the in-memory journal
        self._journal = journal_store.load(model)

    # -- reading -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Live and standby as the route and the backend see them, plus any running operation."""
        route = self._router.current()
        live, standby = route.color, other_color(route.color)
        with self._memory:
            current = self._journal.current
        return {
            "model": self.model,
            "live": self._color_status(live).model_dump(),
            "standby": self._color_status(standby).model_dump(),
            "operation": current.model_dump() if current else None,
            "route_revision": route.revision,
        }

    def history(self, limit: int = 50) -> list[Operation]:
        with self._memory:
            return list(reversed(self._journal.history[-limit:]))

    def operation(self, operation_id: str) -> Operation:
        with self._memory:
            current = self._journal.current
            if current is not None and current.id == operation_id:
                return current.model_copy(deep=True)
            for op in self._journal.history:
                if op.id == operation_id:
                    return op
        raise OperationNotFound(f"no operation {operation_id!r}")

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
        wait: bool = True,
    ) -> Operation:
        """Release a version into the standby color and move traffic to it.

        Raises `ReleaseInProgress` at once when another operation holds the lock. With
        `wait`, returns the finished record or raises `ReleaseAborted`; without, returns
        the running record and finishes in a background thread.
        """
        requested = {"version": version} if version is not None else {"alias": alias or ""}
        ticket = self._begin("switch", requested)
        # Resolve before answering, even without `wait`: an unknown version is a 404 now.
        plan = self._guarded(ticket, lambda: self._resolve(ticket.operation, version, alias))
        if plan is None:
            return self._finish(
                ticket, "unchanged", reason=f"v{ticket.operation.target_version} is live"
            )
        route, target = plan
        if wait:
            return self._guarded(ticket, lambda: self._release(ticket, route, target, golden))

        def run_in_background() -> None:
            try:
                self._guarded(ticket, lambda: self._release(ticket, route, target, golden))
            except ReleaseAborted as exc:
                log.warning("release %s aborted: %s", ticket.operation.id, exc.detail)
            except Exception:
                log.exception("release %s crashed", ticket.operation.id)

        threading.Thread(target=run_in_background, name=f"release-{ticket.operation.id}").start()
        return ticket.operation.model_copy(deep=True)

    def _guarded(self, ticket: _Ticket, run: Callable[[], _T]) -> _T:
        """Run part of an operation; any failure finishes it as aborted and frees the lock."""
        try:
            return run()
        except BluegreenError as exc:
            self._finish(ticket, "aborted", reason=exc.detail)
            if isinstance(exc, RollbackUnavailable):
                raise
            raise ReleaseAborted(exc, ticket.operation.model_dump()) from exc
        except Exception as exc:  # a bug must not leave the record "running"
            self._finish(ticket, "aborted", reason=f"internal error: {exc!r}")
            raise

    def _resolve(
        self, op: Operation, version: str | None, alias: str | None
    ) -> tuple[Route, ResolvedVersion] | None:
        """The route and the target version; None when the target is already live."""
        with self._step(op, "resolve"):
            route = self._router.current()
            target = self._registry.resolve(self.model, version=version, alias=alias)
            op.target_version = target.version
            op.from_color, op.to_color = route.color, other_color(route.color)
            op.from_version = self._backend.pinned_version(route.color)
            op.route_revision = route.revision
        if op.from_version == target.version:
            op.to_color = route.color  # nothing moves
            return None
        return route, target

    def _release(
        self, ticket: _Ticket, route: Route, target: ResolvedVersion, golden: Golden | None
    ) -> Operation:
        op = ticket.operation
        standby = other_color(route.color)
        with self._step(op, "stage") as step:
            step.detail = self._stage(standby, target)
        with self._step(op, "verify") as step:
            step.detail = self._smoke.verify(
                self._backend.endpoint(standby),
                target=target,
                golden=golden or self._policy.default_golden,
            )
        with self._step(op, "promote") as step:
            step.detail = self._promote(op, route.revision, target)
        return self._finish(ticket, "promoted")

    def _stage(self, standby: Color, target: ResolvedVersion) -> str:
        if self._backend.pinned_version(standby) == target.version and self._backend.is_ready(
            standby
        ):
            return f"{standby} already holds v{target.version}"
        self._backend.pin(
            standby,
            model=self.model,
            version=target.version,
            timeout=self._policy.stage_timeout_s,
        )
        return f"{standby} ready with v{target.version}"

    def _promote(self, op: Operation, revision: str, target: ResolvedVersion) -> str:
        assert op.from_color is not None and op.to_color is not None
        new_route = self._router.switch(to=op.to_color, expected_revision=revision)
        op.route_revision = new_route.revision
        log.info(
            "switched from %s (v%s) to %s (v%s)",
            op.from_color,
            op.from_version,
            op.to_color,
            target.version,
        )
        with self._memory:
            self._journal.previous = (
                Stable(color=op.from_color, version=op.from_version) if op.from_version else None
            )
        self._after_flip(live=op.to_color, version=target.version)
        return f"live route now {op.to_color} (revision {new_route.revision})"

    def _after_flip(self, *, live: Color, version: str) -> None:
        """Bookkeeping once traffic moved; failures here never undo the flip."""
        try:
            self._registry.mark_live(
                self.model, version=version, alias=self._policy.live_alias, color=live
            )
        except BluegreenError as exc:
            log.warning(
                "traffic moved, but alias %r not updated: %s", self._policy.live_alias, exc.detail
            )
        for color in COLORS:
            try:
                self._smoke.announce(self._backend.endpoint(color), live=color == live)
            except BluegreenError as exc:
                log.info(
                    "could not tell %s it is %s: %s",
                    color,
                    "live" if color == live else "standby",
                    exc.detail,
                )

    # -- rollback ------------------------------------------------------------------------

    def rollback(self) -> Operation:
        """Flip back to the standby color, which must still hold the previous live version."""
        ticket = self._begin("rollback", {})

        def flip_back() -> Operation:
            with self._step(ticket.operation, "rollback") as step:
                step.detail = self._flip_back(ticket.operation)
            return self._finish(ticket, "rolled_back")

        return self._guarded(ticket, flip_back)

    def _flip_back(self, op: Operation) -> str:
        route = self._router.current()
        live, standby = route.color, other_color(route.color)
        with self._memory:
            previous = self._journal.previous
        held = self._backend.pinned_version(standby)
        op.from_color, op.to_color = live, standby
        op.from_version, op.target_version = self._backend.pinned_version(live), held
        op.route_revision = route.revision
        self._save()  # what recovery compares the route against, should we die mid-flip
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
        new_route = self._router.switch(to=standby, expected_revision=route.revision)
        op.route_revision = new_route.revision
        log.info(
            "switched from %s (v%s) to %s (v%s): rollback", live, op.from_version, standby, held
        )
        with self._memory:
            self._journal.previous = (
                Stable(color=live, version=op.from_version) if op.from_version else None
            )
        self._after_flip(live=standby, version=held)
        return f"live route back on {standby} (v{held}, revision {new_route.revision})"

    # -- recovery ------------------------------------------------------------------------

    def recover(self) -> Operation | None:
        """Settle an operation a previous controller left running; the route decides.

        Takes the lock: while another controller still holds it, its operation is alive
        and not ours to settle (`ReleaseInProgress` propagates).
        """
        with self._lock.hold("recover"):
            return self._settle_stale()

    def _settle_stale(self) -> Operation | None:
        with self._memory:
            op = self._journal.current
        if op is None:
            return None
        route = self._router.current()
        flipped = (
            op.to_color is not None
            and route.color == op.to_color
            and route.revision != op.route_revision
            and self._backend.pinned_version(op.to_color) == op.target_version
        )
        last_step: StepName | None = op.steps[-1].name if op.steps else None
        if flipped and op.target_version is not None:
            op.status = "promoted" if op.kind == "switch" else "rolled_back"
            op.reason = "controller restarted after the flip; recovered"
            with self._memory:
                if op.from_color and op.from_version:
                    self._journal.previous = Stable(color=op.from_color, version=op.from_version)
            self._after_flip(live=route.color, version=op.target_version)
        else:
            op.status = "aborted"
            op.failed_step = last_step
            op.reason = (
                f"controller stopped during {last_step or 'start'}; "
                f"live traffic stayed on {route.color}"
            )
        op.finished_at = utcnow()
        with self._memory:
            self._journal.current = None
            self._append_history(op)
            self._store.save(self._journal)
        log.warning(
            "recovered operation %s left by a previous controller: %s (%s)",
            op.id,
            op.status,
            op.reason,
        )
        return op

    # -- bookkeeping ---------------------------------------------------------------------

    def _begin(self, kind: OperationKind, requested: dict[str, str]) -> _Ticket:
        held = ExitStack()
        op_id = OperationId(f"{kind[:2]}-{uuid.uuid4().hex[:12]}")
        held.enter_context(self._lock.hold(op_id))  # raises ReleaseInProgress
        with self._memory:
            stale = self._journal.current is not None
        if stale:  # we hold the lock, so whoever left this record running is gone
            try:
                self._settle_stale()
            except BaseException:
                held.close()
                raise
        op = Operation(id=op_id, kind=kind, model=self.model, requested=requested)
        with self._memory:
            self._journal.current = op
        self._save()
        return _Ticket(operation=op, held=held, started=time.perf_counter())

    @contextmanager
    def _step(self, op: Operation, name: StepName) -> Iterator[StepRecord]:
        record = StepRecord(name=name, started_at=utcnow())
        started = time.perf_counter()
        with self._memory:
            op.steps.append(record)
        self._save()
        try:
            yield record
        except BluegreenError as exc:
            record.ok, record.detail = False, exc.detail
            op.failed_step = name
            raise
        finally:
            record.seconds = round(time.perf_counter() - started, 4)
        record.ok = True

    def _finish(self, ticket: _Ticket, status: str, *, reason: str | None = None) -> Operation:
        op = ticket.operation
        op.status = status  # type: ignore[assignment]
        op.reason = reason
        op.finished_at = utcnow()
        op.seconds = round(time.perf_counter() - ticket.started, 4)
        try:
            with self._memory:
                self._journal.current = None
                self._append_history(op)
                self._store.save(self._journal)
        finally:
            ticket.held.close()  # the lock goes only once the record is final
        if self._observe is not None:
            self._observe(op)
        return op.model_copy(deep=True)

    def _save(self) -> None:
        with self._memory:
            self._store.save(self._journal)

    def _append_history(self, op: Operation) -> None:
        self._journal.history.append(op)
        del self._journal.history[: -self._policy.history_limit]

    @property
    def journal(self) -> Journal:
        with self._memory:
            return self._journal.model_copy(deep=True)
