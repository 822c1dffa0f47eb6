"""The MLflow side of the end-to-end tests: its own real server and versions.

A real MLflow server with two trained iris versions and one broken version (registered,
but its model files do not exist). Prepared in the foreground: MLflow's fluent API keeps
the tracking URI in process-global state, so training in a background thread would send
other tests' runs to this server.
"""

from __future__ import annotations

from dataclasses import dataclass

from bluegreen.iris import train_and_register


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    good: tuple[str, str]  # versions "1" and "2"
    broken: str


def prepare_registry(tracking_uri: str) -> Registry:
    first = train_and_register(tracking_uri=tracking_uri, model="iris", C=1.0)
    second = train_and_register(tracking_uri=tracking_uri, model="iris", C=0.05)
    broken = register_broken_version(tracking_uri, run_id=first.run_id)
    return Registry(tracking_uri, (first.version, second.version), broken)


def register_broken_version(tracking_uri: str, *, run_id: str) -> str:
    """A registered version whose model files do not exist: its pods can never load it."""
    from mlflow import MlflowClient

    created = MlflowClient(
        tracking_uri=tracking_uri, registry_uri=tracking_uri
    ).create_model_version("iris", source=f"runs:/{run_id}/no-such-model", run_id=run_id)
    return str(created.version)
