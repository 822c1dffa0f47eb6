"""The small interfaces the release engine talks to; adapters live in their own modules.

The engine imports only these, never `mlflow`, `kubernetes`, `httpx` or `subprocess`:
`mlflow_registry` (the registry), `smoke` (smoke test and live notice over HTTP),
`local/` (process colors, the local router's admin API, file journal, file lock),
`kubernetes/` (Deployment colors, the live Service's selector, ConfigMap journal, Lease),
`serving_probe` (traffic probes) and `notify` (event delivery).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from controller.domain import Color, Golden, Journal, Operation, ResolvedVersion, Route
from controller.domain.analysis import (
    MirrorCounts,
    PrometheusCheck,
    ServingSnapshot,
    ShadowReport,
)

Cancel = threading.Event | None
"""Set by an operator's abort: a backend's bounded wait gives up at once (`StageCancelled`)."""


class ModelRegistry(Protocol):
    def resolve(self, model: str, *, version: str | None, alias: str | None) -> ResolvedVersion:
        """One concrete version. Raises `VersionNotFound` or `RegistryUnavailable`."""
        ...

    def mark_live(self, model: str, *, version: str, alias: str, color: Color) -> None:
        """Point the serving alias at `version` and tag it with the color serving it."""
        ...

    def alias_target(self, model: str, alias: str) -> tuple[str, str | None] | None:
        """The version `alias` points at and its `bluegreen.release` tag; None when the alias
        is unset. Raises `RegistryUnavailable`."""
        ...

    def tag_release(self, model: str, *, version: str, outcome: str) -> None:
        """Write how releasing `version` ended to its `bluegreen.release` tag."""
        ...


class ColorBackend(Protocol):
    """Puts a pinned version into a color and reports on it."""

    def pinned_version(self, color: Color) -> str | None:
        """The version the color is pinned to, or None when it holds nothing."""
        ...

    def is_ready(self, color: Color) -> bool:
        """Every replica of the color has loaded its version and passes readiness."""
        ...

    def pin(
        self, color: Color, *, model: str, version: str, timeout: float, cancel: Cancel = None
    ) -> None:
        """Pin `version` into `color` and wait until it is ready.

        Raises `StageFailed` (it will not come up), `StageTimeout` (bounded wait) or
        `StageCancelled` (`cancel` was set while waiting).
        """
        ...

    def endpoint(self, color: Color) -> str:
        """Base URL that reaches this color alone, for the smoke test."""
        ...

    def scale_down(self, color: Color, *, replicas: int = 0) -> None:
        """Leave `color` `replicas` (0: stop serving from it); `pin` and `match_replicas`
        bring it back. Raises `BackendUnavailable` when it cannot be done now."""
        ...


class ColorPods(Protocol):
    """Optional, for backends whose colors run several replicas (Kubernetes)."""

    def ready_endpoints(self, color: Color) -> list[str]:
        """Base URLs of every ready pod of the color ([] when they cannot be listed)."""
        ...

    def match_replicas(
        self, color: Color, *, like: Color, timeout: float, cancel: Cancel = None
    ) -> str | None:
        """Scale `color` up to `like`'s replica count and wait; a summary, or None if equal.
        `StageCancelled` when `cancel` is set while waiting."""
        ...


@runtime_checkable
class Fence(Protocol):
    """What a release lock's `hold` may yield: proof, right before a flip, it is still ours."""

    def check(self) -> None:
        """Raise `ReleaseInProgress` when the lock was lost (taken over, or not renewed)."""
        ...


class TrafficRouter(Protocol):
    """Where live traffic goes: read it, and flip it atomically and conditionally."""

    def current(self) -> Route:
        """The live color and the route's revision. Raises `RouterUnavailable`."""
        ...

    def switch(self, *, to: Color, expected_revision: str) -> Route:
        """Point live traffic at `to` if the route is still at `expected_revision`.

        Raises `RouteConflict` when someone else changed it meanwhile, `RouterUnavailable`
        when the router cannot be reached. Switching to the color already live is a no-op.
        """
        ...


class JournalStore(Protocol):
    def load(self, model: str) -> Journal: ...

    def save(self, journal: Journal) -> None:
        """Persist atomically: a crash leaves either the old or the new journal.

        Raises `JournalUnavailable` when it cannot be written.
        """
        ...


class ReleaseLock(Protocol):
    def hold(self, holder: str) -> AbstractContextManager[Any]:
        """Hold the one-release-at-a-time lock. Raises `ReleaseInProgress` when taken."""
        ...


class SmokeTester(Protocol):
    """Talks to one color's own endpoint: the smoke test and the live/standby notice."""

    def verify(self, endpoint: str, *, target: ResolvedVersion, golden: Golden | None) -> str:
        """Smoke-test the color; return a one-line summary. Raises `VerifyFailed`."""
        ...

    def announce(self, endpoint: str, *, live: bool) -> None:
        """Tell a color whether it is live (best effort: standbys drop keep-alives)."""
        ...


class ServingMetrics(Protocol):
    """Reads what a color served from the model servers' own metrics."""

    def snapshot(self, endpoints: Sequence[str]) -> ServingSnapshot:
        """Cumulative counters summed over `endpoints`. Raises `BackendUnavailable`."""
        ...

    def query(self, check: PrometheusCheck) -> float:
        """The scalar value of a PromQL query. Raises `DependencyUnavailable`."""
        ...


class ShadowTraffic(Protocol):
    """Mirrors live requests to the standby, which compares predictions."""

    def start(
        self,
        live: Sequence[str],
        *,
        target: str,
        sample: float,
        max_rps: float,
        session: str,
        max_seconds: float,
    ) -> None:
        """Make the live endpoints mirror a `sample` of their requests to `target`, at most
        `max_rps` a second between them.

        Mirroring stops by itself after `max_seconds`, should `stop` never come.
        """
        ...

    def stop(self, live: Sequence[str], *, session: str) -> MirrorCounts:
        """Stop mirroring; what was mirrored, skipped and dropped, summed over `live`.
        Best effort."""
        ...

    def report(self, standby: Sequence[str], *, session: str) -> ShadowReport:
        """What the standby endpoints compared in `session`, summed."""
        ...


class Notifier(Protocol):
    """Tells the outside world about a release's events, never on the release's path."""

    def publish(self, event: str, operation: Operation) -> None:
        """Queue one event (`release.started`, `release.paused`, `bake.breached`, ...).

        Must return at once and never raise: delivery and its retries run elsewhere.
        """
        ...
