"""The one retry policy for temporary failures (an unreachable registry, router or API server).

Each adapter says what is temporary; the shape of the back-off is the same everywhere:
exponential, capped, bounded by attempts or by a deadline, never retrying a permanent error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)


def retry_transient(
    is_transient: Callable[[BaseException], bool],
    *,
    attempts: int | None = None,
    within_s: float | None = None,
    first_wait_s: float = 0.2,
    max_wait_s: float = 2.0,
    log: logging.Logger | None = None,
    what: str = "call",
) -> Retrying:
    """A `Retrying` that retries only what `is_transient` accepts, then re-raises it."""
    if (attempts is None) == (within_s is None):
        raise ValueError("give exactly one of attempts or within_s")
    stop = stop_after_attempt(attempts) if attempts is not None else stop_after_delay(within_s or 0)

    def before_sleep(state: RetryCallState) -> None:
        if log is not None and state.outcome is not None:
            log.info(
                "%s failed (attempt %d), retrying: %s",
                what,
                state.attempt_number,
                state.outcome.exception(),
            )

    return Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop,
        wait=wait_exponential(multiplier=first_wait_s, max=max_wait_s),
        before_sleep=before_sleep,
        reraise=True,
    )
