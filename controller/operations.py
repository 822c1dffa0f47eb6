"""The operation journal, in memory and in its store: begin, step, finish, and what is kept.

Used by the release engine only. The in-memory journal is the truth while the controller
runs (`/status`, `/operations/{id}` read it); every change is saved to the store (file or
ConfigMap) before the engine moves on, so a controller killed at any instant comes back
knowing where it stopped. A save that fails after traffic moved is never turned into an
"aborted" record: the operation keeps its outcome, says the journal was not saved, and
the save is retried in the background until the store takes it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from controller.domain import (
    Journal,
    Operation,
    OperationId,
    OperationKind,
    OperationStatus,
    Stable,
    StepName,
    StepRecord,
    utcnow,
)
from controller.errors import BluegreenError, JournalUnavailable, OperationNotFound
from controller.ports import JournalStore

log = logging.getLogger("bluegreen.operations")

Observer = Callable[[Operation], None]
_RETRY_WAITS_S = (0.5, 1.0, 2.0, 5.0)


@dataclass
class Ticket:
    """A started operation and the release lock it holds until it is finished."""

    operation: Operation
    held: ExitStack
    started: float = field(default_factory=time.perf_counter)
    flipped: bool = False
    """Traffic moved: from here on the operation can only end as the flip's outcome."""
    flipped_at: float | None = None
    """When (`time.monotonic()`) the route last moved: what a flip's timing is measured to."""
    alias_update: threading.Thread | None = None
    """The serving alias moving in the background after the flip (see `engine._flip`)."""


class OperationLog:
    def __init__(
        self,
        *,
        model: str,
        store: JournalStore,
        history_limit: int,
        observe: Observer | None = None,
    ) -> None:
        self._store = store
        self._history_limit = history_limit
        self._observe = observe
        self._journal_guard = threading.RLock()
        self._journal = store.load(model)
        self._unsaved = False
        self._retrying: threading.Thread | None = None

    # -- reading -------------------------------------------------------------------------

    @property
    def journal(self) -> Journal:
        with self._journal_guard:
            return self._journal.model_copy(deep=True)

    @property
    def current(self) -> Operation | None:
        with self._journal_guard:
            current = self._journal.current
            return current.model_copy(deep=True) if current else None

    @property
    def previous(self) -> Stable | None:
        with self._journal_guard:
            return self._journal.previous

    @previous.setter
    def previous(self, stable: Stable | None) -> None:
        with self._journal_guard:
            self._journal.previous = stable

    @property
    def parked(self) -> Stable | None:
        with self._journal_guard:
            return self._journal.parked

    @property
    def live_versions(self) -> list[str]:
        with self._journal_guard:
            return list(self._journal.live_versions)

    def history(self, limit: int) -> list[Operation]:
        with self._journal_guard:
            return [op.model_copy(deep=True) for op in reversed(self._journal.history[-limit:])]

    def find(self, operation_id: str) -> Operation:
        with self._journal_guard:
            current = self._journal.current
            if current is not None and current.id == operation_id:
                return current.model_copy(deep=True)
            for op in self._journal.history:
                if op.id == operation_id:
                    return op.model_copy(deep=True)
        raise OperationNotFound(f"no operation {operation_id!r}")

    # -- writing -------------------------------------------------------------------------

    def begin(self, kind: OperationKind, requested: dict[str, str], held: ExitStack) -> Ticket:
        """Record a new running operation; on a failed save nothing is left running."""
        op = Operation(
            id=OperationId(f"{kind[:2]}-{uuid.uuid4().hex[:12]}"),
            kind=kind,
            model=self._journal.model,
            requested=requested,
        )
        with self._journal_guard:
            self._journal.current = op
            try:
                self.save()
            except JournalUnavailable:
                self._journal.current = None
                held.close()
                raise
        return Ticket(operation=op, held=held)

    def adopt(self, op: Operation, held: ExitStack | None = None) -> Ticket:
        """A ticket for an operation a dead controller left running (the caller holds the lock).

        `held`: the lock, when the adopted operation goes on (a paused release) and keeps it.
        """
        with self._journal_guard:
            current = self._journal.current
            if current is not None and current.id == op.id:
                op = current  # the journal's own record: later changes land in it
        return Ticket(operation=op, held=held or ExitStack())

    def park(self, standby: Stable) -> None:
        """The standby was scaled down holding this version: a rollback stages it again."""
        with self._journal_guard:
            self._journal.parked = standby
        self._save_or_retry()

    def record_live(self, *, previous: Stable | None, version: str) -> None:
        """After a flip: what a rollback returns to, and the versions that were live."""
        with self._journal_guard:
            self._journal.previous = previous
            self._journal.parked = None
            live = self._journal.live_versions
            if not live and previous is not None:
                live.append(previous.version)  # the first flip: what served before counts too
            if version in live:
                live.remove(version)
            live.append(version)
            del live[: -self._history_limit]

    def save_after_flip(self) -> None:
        """Save once traffic moved: a store that refuses is logged, and `finish` retries it."""
        try:
            self.save()
        except JournalUnavailable as exc:
            log.error("journal not saved after the flip: %s", exc.detail)

    @contextmanager
    def step(self, ticket: Ticket, name: StepName) -> Iterator[StepRecord]:
        """Record one step: saved when it starts, its outcome kept on the record."""
        op = ticket.operation
        record = StepRecord(name=name, started_at=utcnow())
        started = time.perf_counter()
        with self._journal_guard:
            op.steps.append(record)
        self.save()
        try:
            yield record
        except BluegreenError as exc:
            record.ok, record.detail = False, exc.detail
            op.failed_step = name
            raise
        finally:
            record.seconds = round(time.perf_counter() - started, 4)
        record.ok = True

    def finish(
        self, ticket: Ticket, status: OperationStatus, *, reason: str | None = None
    ) -> Operation:
        """Make the record final, free the lock, report it; a failed save is said, not fatal."""
        op = ticket.operation
        try:
            with self._journal_guard:
                op.status = status
                op.reason = reason
                op.finished_at = utcnow()
                op.seconds = round(time.perf_counter() - ticket.started, 4)
                if self._journal.current is not None and self._journal.current.id == op.id:
                    self._journal.current = None
                self._journal.history.append(op)
                del self._journal.history[: -self._history_limit]
                problem = self._save_or_retry()
                if problem is not None:
                    op.reason = f"{reason + '; ' if reason else ''}journal not saved ({problem})"
        finally:
            ticket.held.close()  # the lock goes only once the record is final
        if self._observe is not None:
            self._observe(op)
        return op.model_copy(deep=True)

    def reload(self) -> None:
        """Re-read the stored journal (call with the release lock held): another controller
        may have released since we loaded it. Kept as is while our own save is pending."""
        with self._journal_guard:
            if not self._unsaved:
                self._journal = self._store.load(self._journal.model)

    def update(self, change: Callable[[], object]) -> None:
        """Change a running operation while no reader copies it (`/status` reads it live)."""
        with self._journal_guard:
            change()

    def save(self) -> None:
        """Persist the journal now; raises `JournalUnavailable` when the store refuses."""
        with self._journal_guard:
            self._store.save(self._journal)
            self._unsaved = False

    def _save_or_retry(self) -> str | None:
        """Save; on failure keep retrying in the background and say why it failed."""
        try:
            self.save()
        except JournalUnavailable as exc:
            log.error("journal not saved, retrying in the background: %s", exc.detail)
            self._unsaved = True
            if self._retrying is None or not self._retrying.is_alive():
                self._retrying = threading.Thread(
                    target=self._retry_save, name="journal-retry", daemon=True
                )
                self._retrying.start()
            return exc.detail
        return None

    def _retry_save(self) -> None:
        attempt = 0
        while self._unsaved:
            time.sleep(_RETRY_WAITS_S[min(attempt, len(_RETRY_WAITS_S) - 1)])
            attempt += 1
            try:
                self.save()
            except JournalUnavailable as exc:
                log.warning("journal still not saved (attempt %d): %s", attempt, exc.detail)
            else:
                log.info("journal saved after %d retries", attempt)
