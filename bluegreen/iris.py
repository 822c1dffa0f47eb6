"""Trains and registers small iris models: what `bluegreen demo` and the tests release."""

from __future__ import annotations

from dataclasses import dataclass

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
# One flower of each species: a fit model answers [0, 1, 2].
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]


def serving_requirements() -> list[str]:
    """What a scikit-learn model needs to be served, pinned to what trained it."""
    import mlflow
    import sklearn

    return [f"mlflow=={mlflow.__version__}", f"scikit-learn=={sklearn.__version__}"]


@dataclass(frozen=True)
class Registered:
    model: str
    version: str
    run_id: str
    accuracy: float


def train_and_register(
    *,
    tracking_uri: str,
    model: str,
    C: float = 1.0,
    max_iter: int = 200,
    experiment: str = "bluegreen",
    input_example: bool = True,
) -> Registered:
    """Fit a LogisticRegression on iris, log it with signature and example, register it."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    # Both: the registry URI is separate global state, and whatever set it last (another
    # server in the same process) would otherwise receive the registration.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    features, labels = load_iris(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.3, random_state=7, stratify=labels
    )
    classifier = LogisticRegression(C=C, max_iter=max_iter).fit(x_train, y_train)
    accuracy = float(classifier.score(x_test, y_test))
    with mlflow.start_run() as run:
        mlflow.log_params({"C": C, "max_iter": max_iter})
        mlflow.log_metric("accuracy", accuracy)
        info = mlflow.sklearn.log_model(
            classifier,
            name="model",
            signature=infer_signature(x_train, classifier.predict(x_train)),
            input_example=x_train.head(3) if input_example else None,
            registered_model_name=model,
            # Stated, not inferred: inference runs the model in a subprocess (~10 s).
            pip_requirements=serving_requirements(),
        )
    return Registered(
        model=model,
        version=str(info.registered_model_version),
        run_id=run.info.run_id,
        accuracy=accuracy,
    )


@dataclass(frozen=True)
class DemoVersions:
    """The demo's three versions: underfit, well fit, and one that is wrong on traffic."""

    underfit: Registered
    well_fit: Registered
    bad: str


def register_demo_versions(*, tracking_uri: str, model: str) -> DemoVersions:
    """What `bluegreen demo` and `bluegreen up --example` register, in this order."""
    return DemoVersions(
        underfit=train_and_register(tracking_uri=tracking_uri, model=model, C=0.01, max_iter=3),
        well_fit=train_and_register(tracking_uri=tracking_uri, model=model, C=1.0, max_iter=300),
        bad=register_constant(tracking_uri=tracking_uri, model=model, label=0),
    )


def register_estimator(
    *, tracking_uri: str, model: str, estimator: object, serialization_format: str | None = None
) -> str:
    """Log a fitted iris estimator with the iris signature and example; returns its version.
    `serialization_format` as `mlflow.sklearn.log_model` takes it (None: MLflow's default)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    frame = pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS)
    chosen = {} if serialization_format is None else {"serialization_format": serialization_format}
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(frame, [0, 1, 2]),
            input_example=frame,
            registered_model_name=model,
            pip_requirements=serving_requirements(),
            **chosen,
        )
    return str(info.registered_model_version)


def register_constant(*, tracking_uri: str, model: str, label: int = 0) -> str:
    """A classifier that answers `label` for every flower: it loads, serves and passes a
    smoke test on its serving example, and is wrong on real traffic. Returns its version."""
    import pandas as pd
    from sklearn.dummy import DummyClassifier

    frame = pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS)
    classifier = DummyClassifier(strategy="constant", constant=label).fit(frame, [0, 1, label])
    return register_estimator(tracking_uri=tracking_uri, model=model, estimator=classifier)


def ensure_demo_versions(*, tracking_uri: str, model: str, alias: str) -> DemoVersions | None:
    """`bluegreen up --example`: the demo's versions, registered only into a model that has
    none (a second `up --example` adds nothing). `alias` (the serving alias) goes on the
    underfit one, so the stack starts there and the well-fit one is the release to try."""
    import contextlib
    import io

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if client.search_model_versions(f"name = '{model}'"):
        return None
    # MLflow prints run links and registrations; the CLI says what happened in one line.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        registered = register_demo_versions(tracking_uri=tracking_uri, model=model)
    client.set_registered_model_alias(model, alias, registered.underfit.version)
    return registered
