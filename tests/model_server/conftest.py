"""A model server app loaded in-process from the real MLflow server (the real process is
`tests/support/model_servers.py`)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from model_server.app import create_app
from model_server.settings import ModelServerSettings
from tests.support.iris import IrisVersions


def settings_for(iris: IrisVersions, version: str, **extra: object) -> ModelServerSettings:
    return ModelServerSettings(
        MLFLOW_TRACKING_URI=iris.tracking_uri,
        MODEL_NAME=iris.model,
        MODEL_VERSION=version,
        SERVING_COLOR="green",
        **extra,  # type: ignore[arg-type]
    )


def wait_ready(client: TestClient, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError("model server did not turn ready")


@pytest.fixture(scope="package")
def served(iris: IrisVersions) -> Iterator[TestClient]:
    """The well-fit iris version behind the real app, with a small body limit."""
    app = create_app(
        settings_for(
            iris,
            iris.good,
            MODEL_SERVER_MAX_BODY_BYTES=64 * 1024,
            MODEL_SERVER_ADMIN_TOKEN="s3cret-admin",
        )
    )
    with TestClient(app) as client:
        wait_ready(client)
        yield client
