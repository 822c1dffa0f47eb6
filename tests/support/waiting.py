"""Waiting in the tests for something a server does in its own time.

`wait_for` polls a check until it answers something truthy and hands that answer back, or fails
the test naming what it waited for. Used by the tiers that watch a running stack from outside
(the release page, Prometheus, following an alias); the cluster tier's `tests.support.kube.wait_for`
also rides out Kubernetes API errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    what: str, check: Callable[[], Any], *, timeout_s: float = 60.0, interval_s: float = 0.5
) -> Any:
    """`check()`'s first truthy answer; an AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what}")
