"""bluegreen_release: train → evaluate (the bar) → register → release blue/green.

Trains an iris LogisticRegression, logs it to MLflow with signature and input example,
scores the logged model on a held-out split and stops there when it misses
`min_accuracy` (register and release end SKIPPED, the run succeeds). Otherwise it
registers the model as a new version of `model_name`, with the run's metrics as version
tags, and `BluegreenReleaseOperator` asks the bluegreen controller to release exactly that
version: stage it into the standby color, smoke-test it, [shadow], [pause], flip traffic,
[bake]. The operator defers: the triggerer waits for the release, not a worker slot. An
aborted release fails the task with the controller's failed step and reason (without
retrying when the controller says a retry cannot help).

Retries are safe: register reuses a version already registered from the same MLflow
run; release of a version that is already live answers "unchanged".

Connections: `bluegreen_default` (type `bluegreen`: the controller's URL as host, its token
as password; required) and `mlflow_default` (or the `MLFLOW_TRACKING_URI` environment
variable); see `_bluegreen_common.py`. Needs the provider: `pip install 'bluegreen[airflow]'`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from _bluegreen_common import EXPERIMENT, iris_split, mlflow_tracking_uri
from airflow.sdk import Param, dag, get_current_context, task

from bluegreen.airflow.operators import BluegreenReleaseOperator

log = logging.getLogger(__name__)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "mlops",
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
}


def _window(description: str) -> Param:
    """An analysis window in seconds, as the controller bounds it (0: off)."""
    return Param(0, type="number", minimum=0, maximum=3600, description=description)


def _share(default: float | None, description: str) -> Param:
    """A share from 0 to 1; null allowed only where the default is null (the gate unset)."""
    kind: str | list[str] = "number" if default is not None else ["null", "number"]
    return Param(default, type=kind, minimum=0, maximum=1, description=description)


@dag(
    dag_id="bluegreen_release",
    description="Train, evaluate against a bar, register and release an MLflow model blue/green",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,  # the controller runs one release at a time anyway
    default_args=DEFAULT_ARGS,
    tags=["bluegreen", "mlflow", "release"],
    render_template_as_native_obj=True,  # params keep their types in the operator's fields
    params={
        "model_name": Param(
            "iris",
            type="string",
            pattern=r"^[A-Za-z0-9_.\-]+$",  # also keeps the registry search filter literal
            description="Registered model name; must be the model the controller releases",
        ),
        "C": Param(1.0, type="number", exclusiveMinimum=0, description="Inverse regularization"),
        "max_iter": Param(200, type="integer", minimum=1, description="Solver iterations"),
        "min_accuracy": _share(
            0.9, "Hold-out accuracy a model needs to be registered and released"
        ),
        "shadow_s": _window("Seconds of mirrored live traffic before the flip (0: off)"),
        "min_agreement": _share(
            None, "Shadow gate: share of predictions that must agree (null: report only)"
        ),
        "bake_s": _window("Seconds the new version is watched after the flip; a breach rolls back"),
        "pause": Param(
            False,
            type="boolean",
            description="Stop before the flip (status paused) until someone calls POST /promote",
        ),
    },
    doc_md=__doc__,
)
def bluegreen_release() -> None:
    @task(execution_timeout=timedelta(minutes=10))
    def train(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Fit on the training split, log params, metrics and the model (signature + example)."""
        import mlflow
        from mlflow.models import infer_signature
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score

        assert params is not None
        context = get_current_context()
        mlflow.set_tracking_uri(mlflow_tracking_uri())
        mlflow.set_experiment(EXPERIMENT)
        x_train, x_test, y_train, y_test = iris_split()
        C, max_iter = float(params["C"]), int(params["max_iter"])
        classifier = LogisticRegression(C=C, max_iter=max_iter).fit(x_train, y_train)
        predicted = classifier.predict(x_test)
        metrics = {
            "accuracy": float(accuracy_score(y_test, predicted)),
            "f1_macro": float(f1_score(y_test, predicted, average="macro")),
        }
        tags = {
            "airflow.dag_id": context["dag"].dag_id,
            "airflow.run_id": context["run_id"],
            "airflow.try_number": str(context["ti"].try_number),
        }
        with mlflow.start_run(tags=tags) as run:
            mlflow.log_params({"C": C, "max_iter": max_iter})
            mlflow.log_metrics(metrics)
            info = mlflow.sklearn.log_model(
                classifier,
                name="model",
                signature=infer_signature(x_train, classifier.predict(x_train)),
                input_example=x_train.head(3),
            )
        log.info("run %s: %s -> %s", run.info.run_id, metrics, info.model_uri)
        return {
            "run_id": run.info.run_id,
            "model_uri": info.model_uri,
            "metrics": metrics,
            "params": {"C": C, "max_iter": max_iter},
        }

    @task.short_circuit(execution_timeout=timedelta(minutes=5))
    def evaluate(trained: dict[str, Any], params: dict[str, Any] | None = None) -> bool:
        """Score the *logged* model on the hold-out split; False skips register and release.

        Loading it back from MLflow checks the artifact the model servers will load.
        """
        import mlflow
        from sklearn.metrics import accuracy_score

        assert params is not None
        mlflow.set_tracking_uri(mlflow_tracking_uri())
        _, x_test, _, y_test = iris_split()
        model = mlflow.pyfunc.load_model(trained["model_uri"])
        accuracy = float(accuracy_score(y_test, model.predict(x_test)))
        bar = float(params["min_accuracy"])
        passed = accuracy >= bar
        if passed:
            log.info("hold-out accuracy %.4f >= %s: registering and releasing", accuracy, bar)
        else:
            log.warning(
                "hold-out accuracy %.4f < %s: below the bar, registering nothing and "
                "skipping the release",
                accuracy,
                bar,
            )
        return passed

    @task(execution_timeout=timedelta(minutes=10))
    def register(trained: dict[str, Any], params: dict[str, Any] | None = None) -> str:
        """Register the run's model with its metrics as version tags; once per run."""
        import mlflow
        from mlflow import MlflowClient

        assert params is not None
        context = get_current_context()
        name, run_id = params["model_name"], trained["run_id"]
        tracking_uri = mlflow_tracking_uri()
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        # A retry after a registration whose answer was lost must not register twice.
        existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        if existing:
            version = str(min(int(v.version) for v in existing))
            log.info("%s v%s already registered from run %s; reusing it", name, version, run_id)
            return version
        run = client.get_run(run_id).data  # the run's record, not what XCom carried
        tags = {
            **{key: f"{value:.6g}" for key, value in run.metrics.items()},
            **run.params,
            "airflow.dag_id": context["dag"].dag_id,
            "airflow.run_id": context["run_id"],
        }
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        registered = mlflow.register_model(
            trained["model_uri"], name, await_registration_for=300, tags=tags
        )
        log.info("registered %s v%s from run %s, tags %s", name, registered.version, run_id, tags)
        return str(registered.version)

    trained = train()
    version = register(trained)
    evaluate(trained) >> version
    # Deferrable: the wait for stage, verify, shadow and bake runs in the triggerer, and
    # frees this worker slot. The analysis knobs come from the run's params.
    BluegreenReleaseOperator(
        task_id="release_version",
        version=version,
        model="{{ params.model_name }}",
        shadow_s="{{ params.shadow_s }}",
        min_agreement="{{ params.min_agreement }}",
        bake_s="{{ params.bake_s }}",
        pause="{{ params.pause }}",
        execution_timeout=timedelta(minutes=20),
        release_timeout=timedelta(minutes=15),  # the release's own deadline, lock wait included
    )


bluegreen_release()
