"""The object-store tier's stack: the local stack on MLflow with PostgreSQL and S3.

`stack` here starts a local stack whose controller and model servers read `s3://` directly,
with the AWS variables and `MLFLOW_S3_ENDPOINT_URL` from their environment (this process's,
set for the test), `iris_s3.good` live on blue; each test's model cache is its own, so every
stage downloads from the bucket. It overrides the shared `stack`, so the shared `client`
drives this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bluegreen.stack import LocalStack
from tests.support.iris import IrisVersions
from tests.support.local_stack import running_stack
from tests.support.mlflow_s3 import MlflowS3Server


@pytest.fixture
def s3_env_vars(
    mlflow_s3: MlflowS3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> pytest.MonkeyPatch:
    for key, value in mlflow_s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODEL_SERVER_CACHE_DIR", str(tmp_path / "model-cache"))
    return monkeypatch


@pytest.fixture
def stack(
    iris_s3: IrisVersions, s3_env_vars: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[LocalStack]:
    with running_stack(iris_s3, tmp_path / "state") as local:
        yield local
