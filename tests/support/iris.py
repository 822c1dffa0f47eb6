"""What the session's registry holds: the iris versions the tests release, good and bad."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient


@dataclass(frozen=True)
class IrisVersions:
    """Versions of the registered model `iris` that the tests release."""

    tracking_uri: str
    model: str
    good: str  # well fit
    other: str  # another good version (underfit, still serves)
    third: str  # a third good version
    broken: str  # registered, but its artifacts are gone
    constant: str  # always predicts class 0: fails a golden smoke test
    slow: str  # answers correctly, too slowly for the smoke test's budget
    no_example: str  # logged without an input example

    def registry(self) -> MlflowClient:
        """A client of this registry whatever URI an earlier test set globally: without an
        explicit registry URI, `MlflowClient` takes `mlflow.set_registry_uri`'s (perhaps a
        server that test has since stopped)."""
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
