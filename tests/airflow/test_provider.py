"""The Airflow provider against a real controller API over real HTTP, in this process.

The controller is the real one (`controller.api` over a `ReleaseEngine`) on the in-memory
backends of `tests/support/engine_fakes.py`, served by uvicorn in a thread; a gate holds
the stage step so a release stays `running` as long as a test needs. The operators run
as Airflow runs them: `execute` raises `TaskDeferred`, the trigger is serialised and
rebuilt from its class path and kwargs, its event goes to the method the task named.
Light: no Airflow process, no MLflow, no model server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from bluegreen.airflow.hooks import BluegreenHook, controller_url
from bluegreen.airflow.operators import BluegreenReleaseOperator, BluegreenRollbackOperator
from bluegreen.airflow.sensors import BluegreenPausedSensor
from bluegreen.airflow.triggers import BluegreenOperationTrigger
from bluegreen.client import ControllerClient
from controller.api import create_app
from controller.metrics import ControllerMetrics
from tests.support.engine_fakes import World
from tests.support.http_servers import ServerThread
from tests.support.ports import free_port

TOKEN = "tok-airflow-7c1e9d0b55a2"  # distinctive, so a leak into logs is easy to find


@dataclass
class Controller:
    url: str
    world: World
    gate: threading.Event
    """Cleared: the stage step waits (the release stays `running`) until it is set."""

    def client(self) -> ControllerClient:
        return ControllerClient(self.url, token=TOKEN, timeout_s=10)

    def live(self) -> str | None:
        with self.client() as client:
            version: str | None = client.status()["live"]["version"]
        return version


@pytest.fixture
def controller(monkeypatch: pytest.MonkeyPatch) -> Iterator[Controller]:
    world = World()
    gate = threading.Event()
    gate.set()
    pin = world.backend.pin

    def gated_pin(color: Any, **kwargs: Any) -> None:
        assert gate.wait(30), "the test never opened the stage gate"
        pin(color, **kwargs)

    world.backend.pin = gated_pin  # type: ignore[method-assign]
    app = create_app(world.engine(), token=TOKEN, metrics=ControllerMetrics(), max_body_bytes=65536)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_BLUEGREEN_DEFAULT",
        json.dumps({"conn_type": "bluegreen", "host": url, "password": TOKEN}),
    )
    with ServerThread(app, port):
        yield Controller(url=url, world=world, gate=gate)
        gate.set()  # let a release still staging finish before the server stops


def _deferred(call: Any) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        call()
    return deferred.value


def _deferred_while_staging(controller: Controller, call: Any) -> TaskDeferred:
    """`call` defers: the stage step holds until it has (the fakes are faster than a poll)."""
    controller.gate.clear()
    try:
        return _deferred(call)
    finally:
        controller.gate.set()


def _fire(deferred: TaskDeferred) -> dict[str, Any]:
    """Serialise the trigger as Airflow stores it, rebuild it, run it to its one event."""
    classpath, kwargs = deferred.trigger.serialize()
    module, _, name = classpath.rpartition(".")
    trigger = getattr(import_module(module), name)(**json.loads(json.dumps(kwargs)))

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            payload: dict[str, Any] = event.payload
            return payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first_event(), timeout=30))


def _resume(task: Any, deferred: TaskDeferred, event: dict[str, Any]) -> Any:
    """What the worker does with the event: call the method the task named, with its kwargs."""
    assert deferred.method_name is not None
    return getattr(task, deferred.method_name)({}, event=event, **(deferred.kwargs or {}))


def _release(**kwargs: Any) -> BluegreenReleaseOperator:
    return BluegreenReleaseOperator(task_id="release", poll_interval_s=0.1, **kwargs)


# -- the provider as Airflow discovers it ---------------------------------------------------


def test_the_provider_is_registered_and_its_info_is_valid() -> None:
    found = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("bluegreen")
    ]
    assert [ep.value for ep in found] == ["bluegreen.airflow:get_provider_info"]
    info = found[0].load()()
    schema_path = Path(import_module("airflow").__file__ or "").parent / "provider_info.schema.json"
    jsonschema.validate(info, json.loads(schema_path.read_text()))
    assert info["package-name"] == "bluegreen"  # Airflow checks it against the distribution
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "bluegreen"
    assert conn["ui-field-behaviour"]["relabeling"] == {
        "host": "Controller URL",
        "password": "API token",
    }
    module, _, name = conn["hook-class-name"].rpartition(".")
    hook = getattr(import_module(module), name)
    assert hook is BluegreenHook and hook.conn_type == "bluegreen"
    for kind in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[kind]:
            for module_name in entry["python-modules"]:
                import_module(module_name)


def test_airflow_lists_the_connection_type_and_its_form() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "bluegreen" in manager.providers
    assert manager.hooks["bluegreen"].hook_class_name == "bluegreen.airflow.hooks.BluegreenHook"
    behaviour = manager.field_behaviours["bluegreen"]
    assert {"schema", "login", "extra"} <= set(behaviour["hidden_fields"])
    assert behaviour["relabeling"]["password"] == "API token"


@pytest.mark.parametrize(
    ("fields", "url"),
    [
        ({"host": "http://ctl.ml.svc:8080/"}, "http://ctl.ml.svc:8080"),
        ({"host": "https://ctl.example"}, "https://ctl.example"),
        ({"host": "ctl.ml.svc", "port": 80}, "http://ctl.ml.svc:80"),
        ({"host": "ctl.ml.svc", "port": 443, "schema": "https"}, "https://ctl.ml.svc:443"),
        ({"host": "http://ctl:8080", "port": 9999}, "http://ctl:8080"),  # the URL's port wins
        ({"host": "http://[::1]", "port": 8080}, "http://[::1]:8080"),
    ],
)
def test_the_controller_url_from_a_connection(fields: dict[str, Any], url: str) -> None:
    assert controller_url(**fields) == url


def test_a_connection_without_a_host_says_what_to_set() -> None:
    with pytest.raises(ValueError, match="controller's URL"):
        controller_url(host="  ")


# -- the hook -------------------------------------------------------------------------------


def test_the_hook_reaches_the_controller_with_the_token_and_never_logs_it(
    controller: Controller, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = BluegreenHook()
    ok, message = hook.test_connection()
    assert ok, message
    assert message == "controller releases 'iris'; live: v1 on blue"
    with hook.get_conn() as client:
        op = client.switch(version="2")  # a mutation: refused without the token
    assert op["status"] == "promoted"
    assert controller.live() == "2"

    monkeypatch.setenv(
        "AIRFLOW_CONN_BLUEGREEN_DEFAULT",
        json.dumps({"conn_type": "bluegreen", "host": controller.url, "password": "wrong"}),
    )
    with pytest.raises(AirflowFailException, match="401 unauthorized"):
        _release(version="3").execute({})
    assert controller.live() == "2"
    assert TOKEN not in caplog.text


# -- the release operator -------------------------------------------------------------------


def test_a_deferred_release_waits_in_the_trigger_and_ends_live(controller: Controller) -> None:
    task = _release(version="2", model="iris", bake_s=0, pause=False)
    controller.gate.clear()  # stage holds: the release is running when the task defers

    deferred = _deferred(lambda: task.execute({}))

    trigger = deferred.trigger
    assert isinstance(trigger, BluegreenOperationTrigger)
    assert (trigger.until, deferred.method_name) == ("finished", "execute_complete")
    with controller.client() as client:
        running = client.operation(str(trigger.operation_id))
    assert running["status"] == "running" and running["target_version"] == "2"
    assert controller.live() == "1", "nothing flipped before the stage step finished"
    controller.gate.set()
    event = _fire(deferred)
    assert event["status"] == "done" and event["record"]["status"] == "promoted"
    summary = _resume(task, deferred, event)
    assert summary == {
        "id": trigger.operation_id,
        "status": "promoted",
        "target_version": "2",
        "from_version": "1",
        "live_color": "green",
    }
    assert controller.live() == "2"


def test_a_release_by_alias_and_again_unchanged(controller: Controller) -> None:
    controller.world.registry.aliases["champion"] = "3"
    deferred = _deferred_while_staging(controller, lambda: _release(alias="champion").execute({}))
    assert _resume(_release(alias="champion"), deferred, _fire(deferred))["target_version"] == "3"

    again = _release(version="3").execute({})  # already live: no wait, nothing moves

    assert again["status"] == "unchanged" and again["live_color"] == "green"
    assert controller.live() == "3"


def test_an_aborted_release_fails_for_good_with_the_step_and_reason(
    controller: Controller,
) -> None:
    controller.world.backend.broken.add("3")
    task = _release(version="3")
    deferred = _deferred_while_staging(controller, lambda: task.execute({}))

    with pytest.raises(AirflowFailException) as failed:
        _resume(task, deferred, _fire(deferred))

    message = str(failed.value)
    assert "release of v3 aborted at step 'stage': v3 does not load" in message
    assert "not retryable (stage_failed)" in message
    assert controller.live() == "1"


def test_refusals_fail_for_good_and_a_dependency_outage_may_retry(controller: Controller) -> None:
    with pytest.raises(AirflowFailException) as missing:
        _release(version="999").execute({})
    with pytest.raises(AirflowFailException) as wrong_model:
        _release(version="2", model="not-iris").execute({})
    controller.world.registry.down = True
    with pytest.raises(AirflowException) as outage:
        _release(version="2").execute({})

    assert "404 version_not_found" in str(missing.value)
    assert "failed step: resolve" in str(missing.value) and "999" in str(missing.value)
    assert "400 bad_request" in str(wrong_model.value) and "'not-iris'" in str(wrong_model.value)
    assert not isinstance(outage.value, AirflowFailException), outage.value
    assert "503 registry_unavailable" in str(outage.value)
    assert controller.live() == "1"


def test_a_release_behind_a_paused_one_waits_for_the_lock_then_runs(
    controller: Controller,
) -> None:
    with controller.client() as client:
        paused = client.switch(version="2", pause=True)
    assert paused["status"] == "paused"
    task = _release(version="3")

    waiting = _deferred(lambda: task.execute({}))
    assert (waiting.trigger.until, waiting.method_name) == ("idle", "resume_after_lock")
    with controller.client() as client:
        client.abort()  # someone decides against v2: the lock is free
    started = _deferred_while_staging(controller, lambda: _resume(task, waiting, _fire(waiting)))
    summary = _resume(task, started, _fire(started))

    assert summary["status"] == "promoted" and summary["target_version"] == "3"
    assert summary["from_version"] == "1"
    assert controller.live() == "3"


def test_a_paused_release_ends_the_task_paused(controller: Controller) -> None:
    task = _release(version="2", pause="True")  # a rendered template: a string
    deferred = _deferred_while_staging(controller, lambda: task.execute({}))

    summary = _resume(task, deferred, _fire(deferred))

    assert summary["status"] == "paused" and summary["target_version"] == "2"
    assert controller.live() == "1"


def test_without_deferral_the_worker_waits(controller: Controller) -> None:
    summary = _release(version="2", deferrable=False, shadow_s="0", min_agreement="None").execute(
        {}
    )
    assert summary["status"] == "promoted" and summary["live_color"] == "green"


def test_a_release_still_running_at_its_deadline_fails_retryably(controller: Controller) -> None:
    controller.gate.clear()
    task = _release(version="2", release_timeout=timedelta(seconds=0.5))
    deferred = _deferred(lambda: task.execute({}))

    event = _fire(deferred)

    assert event["status"] == "timeout"
    with pytest.raises(AirflowException) as late:
        _resume(task, deferred, event)
    assert not isinstance(late.value, AirflowFailException)
    assert f"operation {deferred.trigger.operation_id} not finished at the deadline" in str(
        late.value
    )


def test_the_trigger_keeps_looking_while_the_controller_does_not_answer() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW_CONN_BLUEGREEN_GONE", json.dumps({"conn_type": "bluegreen", "host": nobody})
        )
        trigger = BluegreenOperationTrigger(
            until="finished",
            operation_id="op-1",
            deadline=datetime.now(UTC).timestamp() + 0.5,
            bluegreen_conn_id="bluegreen_gone",
            poll_interval_s=0.1,
        )
        event = _fire(SimpleNamespace(trigger=trigger))  # type: ignore[arg-type]
    assert event["status"] == "timeout", event  # not an error: a restart heals


# -- the sensor -----------------------------------------------------------------------------


def test_the_sensor_defers_until_the_release_pauses(controller: Controller) -> None:
    controller.gate.clear()
    with controller.client() as client:
        op = client.switch(version="2", pause=True, wait=False)
    sensor = BluegreenPausedSensor(task_id="approve", operation_id=op["id"], poke_interval=0.1)

    deferred = _deferred(lambda: sensor.execute({}))
    controller.gate.set()
    summary = _resume(sensor, deferred, _fire(deferred))

    assert summary == {
        "id": op["id"],
        "status": "paused",
        "target_version": "2",
        "from_version": "1",
    }
    # Already paused: a sensor without an id finds it at once, no deferral.
    assert BluegreenPausedSensor(task_id="any").execute({})["id"] == op["id"]


def test_the_sensor_fails_when_the_release_ends_without_pausing(controller: Controller) -> None:
    controller.gate.clear()
    with controller.client() as client:
        op = client.switch(version="2", wait=False)
    sensor = BluegreenPausedSensor(task_id="approve", operation_id=op["id"], poke_interval=0.1)
    deferred = _deferred(lambda: sensor.execute({}))
    controller.gate.set()

    with pytest.raises(AirflowFailException, match=r"ended 'promoted' without pausing"):
        _resume(sensor, deferred, _fire(deferred))


# -- the rollback operator ------------------------------------------------------------------


def _context(try_number: int, started: datetime) -> dict[str, Any]:
    return {
        "ti": SimpleNamespace(try_number=try_number),
        "dag_run": SimpleNamespace(start_date=started),
    }


def test_rollback_with_nothing_to_go_back_to_fails_for_good(controller: Controller) -> None:
    with pytest.raises(AirflowFailException, match="409 rollback_unavailable"):
        BluegreenRollbackOperator(task_id="roll_back").execute(_context(1, datetime.now(UTC)))
    assert controller.live() == "1"


def test_rollback_flips_back_once_and_a_retry_does_not_flip_again(
    controller: Controller,
) -> None:
    with controller.client() as client:
        client.switch(version="2")
    started = datetime.now(UTC)
    task = BluegreenRollbackOperator(task_id="roll_back")

    summary = task.execute(_context(1, started))
    assert summary["status"] == "rolled_back" and summary["target_version"] == "1"
    revision = controller.world.router.route.revision
    retried = task.execute(_context(2, started))

    assert retried == summary, "the retry found the first try's rollback"
    assert controller.world.router.route.revision == revision, "no second flip"
    assert controller.live() == "1"
