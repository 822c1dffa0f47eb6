"""The release engine's decisions, with in-memory stand-ins for its five protocols.

The real adapters are exercised end to end in tests/release and tests/kubernetes; here
the point is the engine's own logic: step order, what an abort leaves behind, the lock,
and recovery when the controller dies at awkward moments.
"""

from __future__ import annotations

import pytest

from controller.domain import Route
from controller.errors import (
    RegistryUnavailable,
    ReleaseAborted,
    ReleaseInProgress,
    RollbackUnavailable,
    StageFailed,
    VerifyFailed,
    VersionNotFound,
)
from tests.support.engine_fakes import Died, Smoke, World


@pytest.fixture
def world() -> World:
    return World()


def test_release_runs_the_steps_in_order_and_moves_the_alias(world: World) -> None:
    op = world.engine().switch(version="2")
    assert op.status == "promoted"
    assert [s.name for s in op.steps] == ["resolve", "stage", "verify", "promote"]
    assert world.router.route.color == "green"
    assert world.registry.aliases["live"] == "2"
    assert ("http://green", True) in world.smoke.announced
    assert ("http://blue", False) in world.smoke.announced


@pytest.mark.parametrize(
    ("prepare", "step", "cause", "error", "retryable"),
    [
        (lambda w: None, "resolve", VersionNotFound, "version_not_found", False),
        (
            lambda w: setattr(w.registry, "down", True),
            "resolve",
            RegistryUnavailable,
            "registry_unavailable",
            True,
        ),
        (lambda w: w.backend.broken.add("9"), "stage", StageFailed, "stage_failed", False),
        (lambda w: w.smoke.failing.add("9"), "verify", VerifyFailed, "verify_failed", False),
    ],
    ids=["unknown", "mlflow-down", "does-not-load", "fails-smoke-test"],
)
def test_an_abort_leaves_the_route_and_a_clear_record(
    world, prepare, step, cause, error, retryable
) -> None:
    if cause is not VersionNotFound:  # the others fail for another reason than a missing version
        world.registry.versions.add("9")
    prepare(world)
    engine = world.engine()
    with pytest.raises(ReleaseAborted) as caught:
        engine.switch(version="9")
    assert isinstance(caught.value.cause, cause)
    assert caught.value.operation["failed_step"] == step
    assert world.router.route == Route(color="blue", revision="1")
    record = engine.history(1)[0]
    assert record.status == "aborted"
    # Whether to retry, in all three places a caller may read it.
    assert (record.error, record.retryable) == (error, retryable)
    assert (caught.value.error, caught.value.retryable) == (error, retryable)
    assert caught.value.operation["retryable"] is retryable
    assert engine.journal.current is None
    world.registry.down = False
    assert engine.switch(version="2").status == "promoted"  # the lock was released


def test_same_version_is_unchanged_and_stages_nothing(world: World) -> None:
    op = world.engine().switch(version="1")
    assert op.status == "unchanged"
    assert (op.from_color, op.to_color) == ("blue", "blue")
    assert world.backend.pins == 0


def test_second_operation_while_one_runs_is_refused(world: World) -> None:
    engine = world.engine()
    with world.lock.hold("someone else"), pytest.raises(ReleaseInProgress):
        engine.switch(version="2")
    assert engine.journal.history == []


def test_rollback_needs_the_previous_version_on_the_standby(world: World) -> None:
    engine = world.engine()
    with pytest.raises(RollbackUnavailable, match="holds nothing"):
        engine.rollback()
    engine.switch(version="2")
    world.backend.broken.add("3")
    with pytest.raises(ReleaseAborted):
        engine.switch(version="3")  # blue, the standby, now holds nothing usable
    with pytest.raises(RollbackUnavailable):
        engine.rollback()
    assert world.router.route.color == "green"


def test_rollback_and_roll_forward(world: World) -> None:
    engine = world.engine()
    engine.switch(version="2")
    assert engine.rollback().status == "rolled_back"
    assert (world.router.route.color, world.registry.aliases["live"]) == ("blue", "1")
    assert engine.rollback().status == "rolled_back"  # and forward again, no model load
    assert (world.router.route.color, world.registry.aliases["live"]) == ("green", "2")
    assert world.backend.pins == 1


def test_death_after_the_flip_of_a_rollback_recovers_as_rolled_back(world: World) -> None:
    world.engine().switch(version="2")
    world.router.die_after_switch = True
    with pytest.raises(Died):
        world.engine().rollback()
    world.router.die_after_switch = False
    restarted = world.engine()
    assert restarted.journal.current is not None  # left running by the dead controller
    settled = restarted.recover()
    assert settled is not None and settled.status == "rolled_back"
    assert world.registry.aliases["live"] == "1"
    assert restarted.rollback().status == "rolled_back"  # the rollback target was kept
    assert world.router.route.color == "green"


def test_death_before_the_flip_recovers_as_aborted(world: World) -> None:
    world.smoke.verify = lambda *a, **k: (_ for _ in ()).throw(Died())  # type: ignore[method-assign]
    with pytest.raises(Died):
        world.engine().switch(version="2")
    restarted = world.engine()
    settled = restarted.recover()
    assert settled is not None
    assert (settled.status, settled.failed_step) == ("aborted", "verify")
    assert "live traffic stayed on blue" in (settled.reason or "")
    assert restarted.status()["operation"] is None


def test_a_bug_inside_a_step_does_not_leave_a_running_record(world: World) -> None:
    def explode(*args: object, **kwargs: object) -> str:
        raise KeyError("bug")

    world.smoke.verify = explode  # type: ignore[method-assign]
    engine = world.engine()
    with pytest.raises(KeyError):
        engine.switch(version="2")
    assert engine.journal.current is None
    assert "internal error" in (engine.history(1)[0].reason or "")
    world.smoke.verify = Smoke().verify  # type: ignore[method-assign]
    assert engine.switch(version="2").status == "promoted"
