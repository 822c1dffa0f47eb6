"""The bluegreen DAGs in a real Airflow 3, run with `airflow dags test` against the local stack.

The end-to-end tests run in file order and share one stack, as a release history does:
nothing to roll back at first → a good release goes live (and its retried tasks change
nothing) → a bad one is skipped → the rollback brings the first version back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import httpx
import mlflow
import yaml
from mlflow import MlflowClient

from bluegreen.stack import LocalStack
from tests.support.airflow_env import DAGS_FOLDER, MODEL, AirflowEnv, DagRunResult, base_env

ROW = [[5.1, 3.5, 1.4, 0.2]]
RELEASE_TASKS = ("train", "evaluate", "register", "release_version")

# Run in a fresh interpreter: what the DAG processor does on every parse.
_DAGBAG_PROBE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from airflow.dag_processing.dagbag import BundleDagBag

    folder = Path(sys.argv[1])
    bag = BundleDagBag(folder, bundle_path=folder, bundle_name="dags-folder")
    print(json.dumps({
        "import_errors": bag.import_errors,
        "dag_ids": sorted(bag.dag_ids),
        "file_seconds": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
        "heavy_modules": [m for m in ("mlflow", "sklearn", "pandas") if m in sys.modules],
        "params": bag.dags["bluegreen_release"].params.dump() if bag.dags else {},
        "timetables": {i: type(d.timetable).__name__ for i, d in bag.dags.items()},
    }))
    """
)

# Runs the provider's operators outside a DAG run, with the same Connections.
_HELPER_PROBE = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime
    from types import SimpleNamespace
    from bluegreen.airflow.operators import BluegreenReleaseOperator, BluegreenRollbackOperator

    def release(**kwargs):
        return BluegreenReleaseOperator(task_id="release", deferrable=False, **kwargs).execute({})

    def rollback(*, try_number, started):
        context = {"ti": SimpleNamespace(try_number=try_number),
                   "dag_run": SimpleNamespace(start_date=started)}
        return BluegreenRollbackOperator(task_id="roll_back").execute(context)

    def outcome(call):
        try:
            return {"ok": call()}
        except Exception as exc:
            return {"raised": type(exc).__name__, "message": str(exc)}

    print(json.dumps({name: outcome(call) for name, call in CALLS.items()}))
    """
)


def _helpers(airflow_env: AirflowEnv, calls: str) -> dict[str, dict[str, str]]:
    """Run `CALLS = {name: lambda: ...}` through `_HELPER_PROBE`; each call's outcome."""
    done = airflow_env.python(f"{calls}\n{_HELPER_PROBE}")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _registry(stack: LocalStack) -> MlflowClient:
    assert stack.tracking_uri is not None
    return MlflowClient(tracking_uri=stack.tracking_uri, registry_uri=stack.tracking_uri)


def _versions(stack: LocalStack) -> list[int]:
    return sorted(int(v.version) for v in _registry(stack).search_model_versions(f"name='{MODEL}'"))


def _live(stack: LocalStack) -> str:
    status = httpx.get(f"{stack.controller_url}/status", timeout=10).json()
    return str(status["live"]["version"])


class _State(NamedTuple):
    """What a run that changes nothing leaves as it found it."""

    versions: list[int]
    live: str


def _state(stack: LocalStack) -> _State:
    return _State(_versions(stack), _live(stack))


def _served(stack: LocalStack) -> str:
    answer = httpx.post(f"{stack.router_url}/predict", json=ROW, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Model-Version"]


def _explain(result: DagRunResult | subprocess.CompletedProcess[str]) -> str:
    """Exit code, states and the output's tail, for assertion messages."""
    if isinstance(result, DagRunResult):
        head = f"exit {result.returncode}, run {result.state}, tasks {result.tasks}"
        return f"{head}\n{result.output[-4000:]}"
    return f"exit {result.returncode}\n{(result.stdout + result.stderr)[-4000:]}"


def test_dag_bag_imports_cleanly_and_cheaply(tmp_path: Path) -> None:
    """Both DAGs parse without errors, fast, and without importing mlflow/sklearn."""
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _DAGBAG_PROBE, str(DAGS_FOLDER)],
        env=base_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["import_errors"] == {}
    assert probe["dag_ids"] == ["bluegreen_approve", "bluegreen_release", "bluegreen_rollback"]
    assert probe["heavy_modules"] == [], "heavy imports belong inside the tasks"
    for name, seconds in probe["file_seconds"].items():
        assert seconds < 1.0, f"{name} takes {seconds:.2f} s to import"
    assert probe["params"] == {
        "model_name": "iris",
        "C": 1.0,
        "max_iter": 200,
        "min_accuracy": 0.9,
        "shadow_s": 0,
        "min_agreement": None,
        "bake_s": 0,
        "pause": False,
    }
    # Manual triggers only: a release, an approval or a rollback is a decision, never a schedule.
    assert probe["timetables"] == dict.fromkeys(probe["dag_ids"], "NullTimetable")


def test_rollback_with_nothing_to_roll_back_to_fails_with_the_reason(
    airflow_env: AirflowEnv, bluegreen_stack: tuple[LocalStack, str]
) -> None:
    stack, first = bluegreen_stack
    status = httpx.get(f"{stack.controller_url}/status", timeout=10).json()
    assert status["standby"]["version"] is None, "precondition: only one version ever served"

    result = airflow_env.run_dag("bluegreen_rollback")

    assert result.returncode != 0 and result.state == "failed", _explain(result)
    assert result.tasks == {"roll_back": "failed"}, _explain(result)
    assert "409 rollback_unavailable: nothing to roll back to" in result.output, _explain(result)
    assert _live(stack) == first
    assert airflow_env.token not in result.output


def test_release_above_the_bar_goes_live(
    airflow_env: AirflowEnv, bluegreen_stack: tuple[LocalStack, str]
) -> None:
    stack, first = bluegreen_stack
    before = _versions(stack)
    # The token is enforced: without it the controller refuses a switch.
    assert httpx.post(f"{stack.controller_url}/switch", json={"version": first}).status_code == 401

    result = airflow_env.run_dag("bluegreen_release", {"C": 1.0, "max_iter": 300})

    assert result.returncode == 0 and result.state == "success", _explain(result)
    assert result.tasks == dict.fromkeys(RELEASE_TASKS, "success"), _explain(result)
    after = _versions(stack)
    assert len(after) == len(before) + 1, "exactly one new version registered"
    new = str(after[-1])
    assert _live(stack) == new
    assert _served(stack) == new
    version = _registry(stack).get_model_version(MODEL, new)
    assert float(version.tags["accuracy"]) >= 0.9
    assert {"f1_macro", "C", "max_iter"} <= set(version.tags)
    assert version.tags["airflow.run_id"] == result.run_id
    run = _registry(stack).get_run(version.run_id)
    assert run.data.params == {"C": "1.0", "max_iter": "300"}
    assert run.data.tags["airflow.dag_id"] == "bluegreen_release"
    mlmodel = yaml.safe_load(
        Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{MODEL}/{new}/MLmodel",
                tracking_uri=stack.tracking_uri,
                registry_uri=stack.tracking_uri,
            )
        ).read_text()
    )
    assert mlmodel.get("signature") and mlmodel.get("saved_input_example_info"), mlmodel
    assert airflow_env.token not in result.output


def test_retried_register_and_release_change_nothing(
    airflow_env: AirflowEnv, bluegreen_stack: tuple[LocalStack, str]
) -> None:
    """Register re-run in the last run (as a task retry runs it), then release once more."""
    stack, _ = bluegreen_stack
    run_id, state, _ = airflow_env.last_run("bluegreen_release")
    assert run_id is not None and state == "success", "needs the release test before it"
    before = _state(stack)

    register = airflow_env.run_task("bluegreen_release", "register", run_id)
    # The release operator once more, outside a run: saves an Airflow start-up.
    outcomes = _helpers(
        airflow_env,
        f"CALLS = {{'again': lambda: release(model='iris', version='{before.live}')}}",
    )

    assert register.returncode == 0, _explain(register)
    assert f"v{before.live} already registered from run" in register.stdout + register.stderr
    assert outcomes["again"]["ok"]["status"] == "unchanged", outcomes
    assert _state(stack) == before


def test_release_below_the_bar_is_skipped_and_changes_nothing(
    airflow_env: AirflowEnv, bluegreen_stack: tuple[LocalStack, str]
) -> None:
    stack, _ = bluegreen_stack
    before = _state(stack)

    result = airflow_env.run_dag(
        "bluegreen_release", {"C": 0.0001, "max_iter": 1, "min_accuracy": 0.99}
    )

    assert result.returncode == 0 and result.state == "success", _explain(result)
    assert result.tasks == {
        "train": "success",
        "evaluate": "success",
        "register": "skipped",
        "release_version": "skipped",
    }, _explain(result)
    assert "below the bar" in result.output
    assert _state(stack) == before, "nothing registered, nothing released"
    assert _served(stack) == before.live


def test_release_operator_fails_with_the_controller_reason(
    airflow_env: AirflowEnv, bluegreen_stack: tuple[LocalStack, str]
) -> None:
    """An aborted release and a refused one raise the controller's reason, permanently."""
    stack, _ = bluegreen_stack
    live = _live(stack)

    outcomes = _helpers(
        airflow_env,
        "CALLS = {"
        "'missing': lambda: release(model='iris', version='999'),"
        "'wrong_model': lambda: release(model='not-iris', version='1'),"
        "}",
    )

    missing, wrong = outcomes["missing"], outcomes["wrong_model"]
    assert missing["raised"] == "AirflowFailException", outcomes
    # resolve runs before the controller answers, so an unknown version is a plain 404
    assert "404 version_not_found" in missing["message"], outcomes
    assert "failed step: resolve" in missing["message"] and "999" in missing["message"]
    assert wrong["raised"] == "AirflowFailException", outcomes
    assert "400 bad_request" in wrong["message"] and "'not-iris'" in wrong["message"], outcomes
    assert _live(stack) == live


def test_rollback_brings_the_previous_version_back(
    airflow_env: AirflowEnv, bluegreen_stack: tuple[LocalStack, str]
) -> None:
    stack, first = bluegreen_stack
    assert _live(stack) != first, "runs after the release test (the module runs in order)"
    started = datetime.now(UTC)

    result = airflow_env.run_dag("bluegreen_rollback")

    assert result.returncode == 0 and result.state == "success", _explain(result)
    assert result.tasks == {"roll_back": "success"}, _explain(result)
    assert _live(stack) == first
    assert _served(stack) == first
    assert airflow_env.token not in result.output

    # A retry of that task must not flip again: it finds the rollback already done.
    outcomes = _helpers(
        airflow_env,
        f"CALLS = {{'retry': lambda: rollback(try_number=2, "
        f"started=datetime.fromisoformat({started.isoformat()!r}))}}",
    )
    assert outcomes["retry"]["ok"]["status"] == "rolled_back", outcomes
    assert outcomes["retry"]["ok"]["target_version"] == first
    assert _live(stack) == first
