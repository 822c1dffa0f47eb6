"""Fuzzing our real servers with hypothesis and schemathesis.

`fuzz_settings(n)` is hypothesis set up for tests that drive a real process; `fuzz_operations`
is `@schema.parametrize()` with those settings: every operation of a schemathesis schema,
`n` examples each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from schemathesis.pytest.lazy import LazySchema

Test = TypeVar("Test", bound=Callable[..., Any])


def fuzz_settings(max_examples: int) -> settings:
    # One example is an HTTP round trip to a busy machine: no deadline. The health checks
    # are made for fast in-process code and trip on module-scoped server fixtures.
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck)
    )


def fuzz_operations(schema: LazySchema, max_examples: int) -> Callable[[Test], Test]:
    def decorate(test: Test) -> Test:
        fuzzed: Test = schema.parametrize()(fuzz_settings(max_examples)(test))
        return fuzzed

    return decorate
