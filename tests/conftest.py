"""Session fixtures: one real MLflow server with real registered iris models."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.iris import IrisVersions
from tests.support.mlflow_server import MlflowServer, start_mlflow_server
from tests.support.models import (
    register_constant_model,
    register_iris,
    register_slow_model,
    remove_artifacts,
)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def iris(mlflow_server: MlflowServer) -> IrisVersions:
    uri, name = mlflow_server.url, "iris"
    good = register_iris(uri, name, C=1.0, max_iter=300)
    other = register_iris(uri, name, C=0.05, max_iter=100)
    third = register_iris(uri, name, C=0.5, max_iter=300)
    broken = register_iris(uri, name, C=1.0, max_iter=300)
    remove_artifacts(mlflow_server, name, broken)
    constant = register_constant_model(uri, name)
    slow = register_slow_model(uri, name, delay_s=1.5)
    no_example = register_iris(uri, name, C=1.0, max_iter=300, input_example=False)
    return IrisVersions(
        tracking_uri=uri,
        model=name,
        good=good,
        other=other,
        third=third,
        broken=broken,
        constant=constant,
        slow=slow,
        no_example=no_example,
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
