"""Registers one model of each kind the conformance suite serves side by side.

Called by `tests/conformance/conftest.py` against the session's real MLflow server. Each
kind is its own registered model (version 1), so both servers load the same artifacts:

- `columns`: iris LogisticRegression with a column signature (4 doubles), as the stack
  releases it; the model our fast path serves.
- `regressor`: a LinearRegression with a column signature; fast path, float predictions.
- `tensor`: a LogisticRegression fitted on a numpy array: a tensor signature.
- `nosig`: a pyfunc logged without a signature that describes the input it received,
  so any difference in parsing shows in its answer.
- `params`: a pyfunc with a mixed column signature and a params schema, answering
  what it received.

The pyfunc classes are defined inside the functions so cloudpickle stores them by value
(the serving processes need not import this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
REGRESSOR_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)"]
PARAMS_COLUMNS = ["x", "n", "label"]
KINDS = ("columns", "regressor", "tensor", "nosig", "params")


@dataclass(frozen=True)
class RegisteredKind:
    kind: str
    model: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.model}/{self.version}"


def _requirements() -> list[str]:
    import mlflow
    import sklearn

    # Stated, not inferred: inference runs the model in a subprocess (~10 s per model).
    return [f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}"]


def _use(tracking_uri: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_experiment("conformance")


def _log_sklearn(name: str, estimator: Any, features: Any, example: Any) -> str:
    import mlflow
    from mlflow.models import infer_signature

    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(features, estimator.predict(features)),
            input_example=example,
            registered_model_name=name,
            pip_requirements=_requirements(),
        )
    return str(info.registered_model_version)


def register_columns(name: str) -> str:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(features, labels)
    return _log_sklearn(name, model, features, features.head(3))


def register_regressor(name: str) -> str:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LinearRegression

    frame = load_iris(as_frame=True).frame
    features = frame[REGRESSOR_COLUMNS]
    model = LinearRegression().fit(features, frame["petal width (cm)"])
    return _log_sklearn(name, model, features, features.head(2))


def register_tensor(name: str) -> str:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(features, labels)
    return _log_sklearn(name, model, features, features[:2])


def register_nosig(name: str) -> str:
    import mlflow

    class Describe(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            import numpy as np
            import pandas as pd

            def plain(value):  # type: ignore[no-untyped-def]
                if isinstance(value, np.ndarray):
                    return {
                        "ndarray": str(value.dtype),
                        "shape": list(value.shape),
                        "values": value.tolist(),
                    }
                if isinstance(value, pd.DataFrame):
                    return {
                        "frame": [str(c) for c in value.columns],
                        "dtypes": [str(t) for t in value.dtypes],
                        "values": value.astype(object).where(value.notna(), None).values.tolist(),
                    }
                if isinstance(value, dict):
                    return {"dict": {str(k): plain(v) for k, v in value.items()}}
                if isinstance(value, list):
                    return {"list": [plain(v) for v in value]}
                return {"scalar": type(value).__name__, "repr": repr(value)}

            return {"received": plain(model_input), "params": repr(params)}

    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Describe(),
            registered_model_name=name,
            pip_requirements=_requirements(),
        )
    return str(info.registered_model_version)


def register_params(name: str) -> str:
    import mlflow
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    class WithParams(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            import pandas as pd

            params = params or {}
            return pd.DataFrame(
                {
                    "x": model_input["x"] * params.get("scale", 1.0),
                    "n": model_input["n"],
                    "label": model_input["label"].astype(str) + params.get("suffix", ""),
                    "dtypes": ",".join(str(t) for t in model_input.dtypes),
                    "params": repr(sorted(params.items())),
                }
            )

    signature = ModelSignature(
        inputs=Schema([ColSpec("double", "x"), ColSpec("long", "n"), ColSpec("string", "label")]),
        params=ParamSchema(
            [
                ParamSpec("scale", "double", 1.0),
                ParamSpec("suffix", "string", ""),
                ParamSpec("flag", "boolean", False),
                ParamSpec("ids", "long", [1, 2], shape=(-1,)),
            ]
        ),
    )
    example = pd.DataFrame({"x": [1.5, 2.0], "n": [1, 2], "label": ["a", "b"]})
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=WithParams(),
            signature=signature,
            input_example=example,
            registered_model_name=name,
            pip_requirements=_requirements(),
        )
    return str(info.registered_model_version)


_REGISTER = {
    "columns": register_columns,
    "regressor": register_regressor,
    "tensor": register_tensor,
    "nosig": register_nosig,
    "params": register_params,
}


def register_kind(tracking_uri: str, kind: str) -> RegisteredKind:
    """Register the model of `kind` as `conformance-<kind>` and return its version."""
    _use(tracking_uri)
    name = f"conformance-{kind}"
    return RegisteredKind(kind=kind, model=name, version=_REGISTER[kind](name))
