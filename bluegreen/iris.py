"""Trains and registers small iris models: what `bluegreen demo` and the tests release."""

from __future__ import annotations

from dataclasses import dataclass


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
