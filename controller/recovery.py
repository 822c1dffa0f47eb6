"""Settling an operation a dead controller left running: the route decides what happened.

Called by the engine at start-up (`ReleaseEngine.recover`) and whenever it takes the
release lock and finds a running record, which can then only belong to a dead holder. If
traffic moved to the operation's target (the route is on its color, at a newer revision,
and that color holds its version), the flip happened: the operation ends as the flip made
it, and the bookkeeping after the flip runs again. Otherwise nothing moved: it ends
aborted at the step it was in (a paused release that
still can go on is resumed by the engine before this runs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from controller.domain import Color, Operation, Stable
from controller.operations import OperationLog
from controller.ports import ColorBackend, TrafficRouter

log = logging.getLogger("bluegreen.recovery")


def settle_stale(
    journal: OperationLog,
    *,
    router: TrafficRouter,
    backend: ColorBackend,
    after_flip: Callable[[Stable | None, Color, str], None],
) -> Operation | None:
    """Finish the running record a previous controller left, if any; the caller holds the lock."""
    op = journal.journal.current
    if op is None:
        return None
    route = router.current()
    flipped = (
        op.to_color is not None
        and route.color == op.to_color
        and route.revision != op.route_revision
        and backend.pinned_version(op.to_color) == op.target_version
    )
    ticket = journal.adopt(op)
    op = ticket.operation  # the journal's own record, which `finish` settles
    last_step = op.steps[-1].name if op.steps else None
    if flipped and op.target_version is not None:
        previous = (
            Stable(color=op.from_color, version=op.from_version)
            if op.from_color and op.from_version
            else None
        )
        after_flip(previous, route.color, op.target_version)
        settled = journal.finish(
            ticket,
            "promoted" if op.kind == "switch" else "rolled_back",
            reason="controller restarted after the flip; recovered",
        )
    else:
        op.failed_step = last_step
        op.error, op.retryable = "interrupted", True
        settled = journal.finish(
            ticket,
            "aborted",
            reason=f"controller stopped during {last_step or 'start'}; "
            f"live traffic stayed on {route.color}",
        )
    log.warning(
        "recovered operation %s left by a previous controller: %s (%s)",
        settled.id,
        settled.status,
        settled.reason,
    )
    return settled
