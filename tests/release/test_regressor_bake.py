"""A regressor on the real local stack: a new version answering a constant passes the smoke
test (right shape, right time) and is rolled back by the bake's prediction-distribution check."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bluegreen.client import ControllerClient
from bluegreen.iris import IRIS_COLUMNS, serving_requirements
from bluegreen.stack import LocalStack, StackPorts
from bluegreen.traffic import TrafficProbe
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN

MODEL = "petal-width"


@dataclass(frozen=True)
class Regressors:
    fitted: str
    constant: str
    rows: list[list[float]]


def register_regressors(uri: str) -> Regressors:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LinearRegression

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return [1.2] * len(model_input)

    data = load_iris()
    frame = pd.DataFrame(data.data[:, :3], columns=IRIS_COLUMNS[:3])
    target = data.data[:, 3]
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    versions = []
    fitted = LinearRegression().fit(frame, target)
    signature = infer_signature(frame, fitted.predict(frame))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            fitted,
            name="model",
            signature=signature,
            input_example=frame.head(3),
            registered_model_name=MODEL,
            pip_requirements=serving_requirements(),
        )
        versions.append(str(info.registered_model_version))
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Constant(),
            signature=signature,
            input_example=frame.head(3),
            registered_model_name=MODEL,
            pip_requirements=serving_requirements(),
        )
        versions.append(str(info.registered_model_version))
    return Regressors(*versions, rows=frame.round(2).values.tolist())


@pytest.fixture
def regressor_stack(iris: IrisVersions, tmp_path: Path) -> Iterator[tuple[LocalStack, Regressors]]:
    regressors = register_regressors(iris.tracking_uri)
    stack = LocalStack(
        model=MODEL,
        state_dir=tmp_path / "state",
        ports=StackPorts.free(),
        tracking_uri=iris.tracking_uri,
        token=TOKEN,
    )
    try:
        stack.start(version=regressors.fitted)
        yield stack, regressors
    finally:
        stack.stop()


def test_a_regressor_answering_a_constant_is_rolled_back_by_the_bake(
    regressor_stack: tuple[LocalStack, Regressors],
) -> None:
    stack, regressors = regressor_stack
    client = ControllerClient(stack.controller_url, token=TOKEN)
    probe = TrafficProbe(url=f"{stack.router_url}/predict", clients=2, payload=regressors.rows)
    try:
        with probe:
            time.sleep(2.0)  # a baseline for the fitted version
            op = client.switch(
                version=regressors.constant,
                bake_s=60,
                analysis={"interval_s": 0.5, "min_requests": 10},
            )
    finally:
        client.close()
    assert (op["status"], op["failed_step"]) == ("rolled_back", "bake")
    assert [s["name"] for s in op["steps"]][:3] == ["resolve", "stage", "verify"]
    bake = op["analysis"]["bake"]
    assert bake["breached_check"] == "value_shift"
    shift = next(c for c in bake["checks"] if c["name"] == "value_shift")
    assert shift["measured"] > shift["threshold"]
    assert probe.failed() == []
    assert client_status_live(stack) == regressors.fitted


def client_status_live(stack: LocalStack) -> str:
    with_token = ControllerClient(stack.controller_url, token=TOKEN)
    try:
        return str(with_token.status()["live"]["version"])
    finally:
        with_token.close()
