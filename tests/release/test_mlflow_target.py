"""The `bluegreen` target of `mlflow deployments`, through MLflow's own CLI, on a real stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bluegreen.stack import LocalStack
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN, served_version
from tests.support.models import IRIS_COLUMNS, IRIS_ROWS


def mlflow_deployments(
    *args: str, stack: LocalStack, **env: str
) -> subprocess.CompletedProcess[str]:
    """`mlflow deployments ARGS -t bluegreen:/<the stack's controller>` as a user runs it."""
    import os

    environment = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    environment.update(BLUEGREEN_TOKEN=TOKEN, MLFLOW_TRACKING_URI=stack.tracking_uri or "", **env)
    return subprocess.run(
        [sys.executable, "-m", "mlflow", "deployments", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def target(stack: LocalStack) -> str:
    return f"bluegreen:/{stack.controller_url}"


def deploy(
    verb: str, model_uri: str, *config: str, stack: LocalStack
) -> subprocess.CompletedProcess[str]:
    """`mlflow deployments create|update --name iris -m MODEL_URI [-C KEY=VALUE]...`: a release."""
    return mlflow_deployments(
        verb, "-t", target(stack), "--name", "iris", "-m", model_uri, *config, stack=stack
    )


def test_create_releases_the_version_and_get_shows_it_live(
    stack: LocalStack, iris: IrisVersions
) -> None:
    created = deploy("create", f"models:/iris/{iris.other}", stack=stack)
    assert created.returncode == 0, created.stderr
    assert served_version(stack) == iris.other

    got = mlflow_deployments("get", "-t", target(stack), "--name", "iris", stack=stack)
    assert got.returncode == 0, got.stderr
    assert f"live_version: {iris.other}\n" in got.stdout
    assert f"standby_version: {iris.good}\n" in got.stdout

    listed = mlflow_deployments("list", "-t", target(stack), stack=stack)
    assert listed.returncode == 0, listed.stderr
    assert "'name': 'iris'" in listed.stdout, listed.stdout
    assert f"'live_version': '{iris.other}'" in listed.stdout


def test_an_aborted_release_fails_with_its_step_and_reason(
    stack: LocalStack, iris: IrisVersions
) -> None:
    failed = deploy("update", f"models:/iris/{iris.broken}", stack=stack)
    assert failed.returncode != 0
    assert f"release of models:/iris/{iris.broken} aborted at step 'stage'" in failed.stderr
    assert served_version(stack) == iris.good


def test_an_alias_uri_and_the_analysis_config_are_passed_on(
    stack: LocalStack, iris: IrisVersions
) -> None:
    iris.registry().set_registered_model_alias("iris", "target-test", iris.third)
    created = deploy(
        "create", "models:/iris@target-test", "-C", "pause=false", "-C", "bake_s=0", stack=stack
    )
    assert created.returncode == 0, created.stderr
    assert served_version(stack) == iris.third

    refused = deploy("create", f"models:/iris/{iris.other}", "-C", "colour=blue", stack=stack)
    assert refused.returncode != 0
    assert "unknown config keys ['colour']" in refused.stderr
    assert served_version(stack) == iris.third


def test_predict_scores_through_the_live_route(stack: LocalStack, tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([dict(zip(IRIS_COLUMNS, row, strict=True)) for row in IRIS_ROWS]))
    predicted = mlflow_deployments(
        "predict", "-t", target(stack), "--name", "iris", "--input-path", str(rows),
        stack=stack, BLUEGREEN_ENDPOINT=stack.router_url,
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    assert len(json.loads(predicted.stdout)["predictions"]) == len(IRIS_ROWS)


def test_delete_is_refused_and_help_documents_the_target(stack: LocalStack) -> None:
    deleted = mlflow_deployments("delete", "-t", target(stack), "--name", "iris", stack=stack)
    assert deleted.returncode != 0
    assert "bluegreen does not delete 'iris'" in deleted.stderr
    assert served_version(stack)

    helped = mlflow_deployments("help", "-t", "bluegreen", stack=stack)
    assert helped.returncode == 0, helped.stderr
    assert "bluegreen:/<controller URL>" in helped.stdout
