"""Registers the models the tests need, including deliberately bad ones."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from bluegreen.iris import (
    IRIS_COLUMNS,
    IRIS_ROWS,
    register_constant,
    serving_requirements,
    train_and_register,
)

__all__ = ["IRIS_COLUMNS", "IRIS_ROWS"]

IRIS_CLASSES = [0, 1, 2]  # what a well-fit model predicts for IRIS_ROWS

if TYPE_CHECKING:  # a type only: mlflow_server registers models with this module
    from tests.support.mlflow_server import MlflowServer


def register_iris(
    uri: str, name: str, *, C: float, max_iter: int, input_example: bool = True
) -> str:
    return train_and_register(
        tracking_uri=uri, model=name, C=C, max_iter=max_iter, input_example=input_example
    ).version


def register_constant_model(uri: str, name: str) -> str:
    """A classifier that always answers class 0: loads and serves, but is wrong."""
    return register_constant(tracking_uri=uri, model=name, label=0)


def register_slow_model(uri: str, name: str, *, delay_s: float) -> str:
    """A pyfunc whose every predict sleeps: ready, but over any sane latency budget."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    class Slow(mlflow.pyfunc.PythonModel):
        def __init__(self, delay: float) -> None:
            self.delay = delay

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            import time

            time.sleep(self.delay)
            return [0] * len(model_input)

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    frame = pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Slow(delay_s),
            signature=infer_signature(frame, [0, 1, 2]),
            input_example=frame,
            registered_model_name=name,
            pip_requirements=serving_requirements(),
        )
    return str(info.registered_model_version)


def artifacts_dir(server: MlflowServer, name: str, version: str) -> Path:
    """Where a registered version's files are in the server's artifact store."""
    from mlflow import MlflowClient

    location = MlflowClient(
        tracking_uri=server.url, registry_uri=server.url
    ).get_model_version_download_uri(name, version)
    relative = location.split("mlflow-artifacts:/", 1)[1]
    return server.root / "mlartifacts" / relative


def remove_artifacts(server: MlflowServer, name: str, version: str) -> None:
    """Delete a registered version's files from the artifact store, as a bad cleanup would."""
    shutil.rmtree(artifacts_dir(server, name, version))
