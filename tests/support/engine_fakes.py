"""In-memory stand-ins for the release engine's protocols, for the engine's own tests.

The real adapters are exercised end to end in tests/release and tests/kubernetes; these
let a test choose every answer (a broken version, a dead router, a failing store).
`soon`, `wait_for_status` and `wait_for_step` hold a test until the engine's threads get there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from controller.domain import Color, Golden, Journal, ResolvedVersion, Route
from controller.engine import EnginePolicy, ReleaseEngine
from controller.errors import (
    RegistryUnavailable,
    ReleaseInProgress,
    StageCancelled,
    StageFailed,
    StageTimeout,
    VerifyFailed,
    VersionNotFound,
)
from controller.ports import Cancel
from tests.support.waiting import wait_for


class Died(BaseException):
    """The controller process dies here: nothing may catch it."""


class Registry:
    def __init__(self, versions: set[str]) -> None:
        self.versions = versions
        self.aliases: dict[str, str] = {}
        self.signatures: dict[str, str] = {}
        self.tags: dict[str, str] = {}  # each version's `bluegreen.release` tag
        self.down = False

    def resolve(self, model: str, *, version: str | None, alias: str | None) -> ResolvedVersion:
        if self.down:
            raise RegistryUnavailable("MLflow unreachable")
        found = version if version is not None else self.aliases.get(alias or "")
        if found not in self.versions:
            raise VersionNotFound(f"models:/{model}/{found} is not in the registry")
        return ResolvedVersion(
            model=model,
            version=found,
            serving_input_example="[[1]]",
            signature_inputs=self.signatures.get(found),
        )

    def mark_live(self, model: str, *, version: str, alias: str, color: Color) -> None:
        self.aliases[alias] = version

    def alias_target(self, model: str, alias: str) -> tuple[str, str | None] | None:
        if self.down:
            raise RegistryUnavailable("MLflow unreachable")
        version = self.aliases.get(alias)
        return None if version is None else (version, self.tags.get(version))

    def tag_release(self, model: str, *, version: str, outcome: str) -> None:
        self.tags[version] = outcome


class Backend:
    def __init__(self) -> None:
        self.pinned: dict[Color, str | None] = {"blue": "1", "green": None}
        self.broken: set[str] = set()
        self.slow: set[str] = set()
        self.scaled_to: dict[Color, int] = {}  # versions whose load takes the whole stage timeout
        self.pins = 0

    def pinned_version(self, color: Color) -> str | None:
        return self.pinned[color]

    def is_ready(self, color: Color) -> bool:
        return self.pinned[color] is not None

    def pin(
        self, color: Color, *, model: str, version: str, timeout: float, cancel: Cancel = None
    ) -> None:
        self.pins += 1
        if version in self.slow:
            self.pinned[color] = None
            if (cancel or threading.Event()).wait(timeout):
                raise StageCancelled(f"{color} stopped while loading v{version}")
            raise StageTimeout(f"v{version} not ready within {timeout:g} s")
        if version in self.broken:
            self.pinned[color] = None
            raise StageFailed(f"v{version} does not load")
        self.pinned[color] = version

    def endpoint(self, color: Color) -> str:
        return f"http://{color}"

    def scale_down(self, color: Color, *, replicas: int = 0) -> None:
        self.scaled_to[color] = replicas
        if replicas == 0:
            self.pinned[color] = None


class Router:
    def __init__(self) -> None:
        self.route = Route(color="blue", revision="1")
        self.die_after_switch = False

    def current(self) -> Route:
        return self.route

    def switch(self, *, to: Color, expected_revision: str) -> Route:
        assert expected_revision == self.route.revision
        if to != self.route.color:
            self.route = Route(color=to, revision=str(int(self.route.revision) + 1))
        if self.die_after_switch:
            raise Died
        return self.route


class Store:
    def __init__(self) -> None:
        self.saved: str | None = None

    def load(self, model: str) -> Journal:
        return Journal.model_validate_json(self.saved) if self.saved else Journal(model=model)

    def save(self, journal: Journal) -> None:
        self.saved = journal.model_dump_json()


class Lock:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, holder: str) -> Iterator[None]:
        if not self._lock.acquire(blocking=False):
            raise ReleaseInProgress("another operation is running")
        try:
            yield
        finally:
            self._lock.release()


class Smoke:
    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.announced: list[tuple[str, bool]] = []

    def verify(self, endpoint: str, *, target: ResolvedVersion, golden: Golden | None) -> str:
        if target.version in self.failing:
            raise VerifyFailed(f"v{target.version} predicts wrong")
        return "ok"

    def announce(self, endpoint: str, *, live: bool) -> None:
        self.announced.append((endpoint, live))


class World:
    def __init__(self) -> None:
        self.registry = Registry({"1", "2", "3"})
        self.backend = Backend()
        self.router = Router()
        self.store = Store()
        self.lock = Lock()  # survives "restarts": a dead process's lock is gone with it
        self.smoke = Smoke()

    def engine(self, policy: dict[str, Any] | None = None, **optional_ports: Any) -> ReleaseEngine:
        """The engine on this world's fakes; `probes`, `pods`, `observe`, `notifier` are passed
        through, `policy` adds to the test policy (`pause_timeout_s`, ...)."""
        return ReleaseEngine(
            model="iris",
            registry=self.registry,
            backend=self.backend,
            router=self.router,
            journal_store=self.store,
            release_lock=self.lock,
            smoke=self.smoke,
            policy=EnginePolicy(
                live_alias="live", stage_timeout_s=5, history_limit=200, **(policy or {})
            ),
            **optional_ports,
        )


def soon(what: str, condition: Callable[[], object]) -> None:
    """Until `condition()` holds, as the engine's threads and timers get there (5 s at most)."""
    wait_for(what, condition, timeout_s=5, interval_s=0.01)


def wait_for_status(release: ReleaseEngine, status: str) -> None:
    """Until the running operation's status is `status`."""
    soon(f"status {status}", lambda: _running(release).get("status") == status)


def wait_for_step(release: ReleaseEngine, step: str) -> None:
    """Until the running operation's latest step is `step`."""
    soon(f"step {step}", lambda: (_running(release).get("steps") or [{}])[-1].get("name") == step)


def _running(release: ReleaseEngine) -> dict[str, Any]:
    return release.status()["operation"] or {}
