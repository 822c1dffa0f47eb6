"""MLflow as its users run it: PostgreSQL for the store, S3 for the artifacts, read directly.

`start_mlflow_s3` starts `mlflow server --backend-store-uri postgresql://...
--default-artifact-root s3://BUCKET/... --no-serve-artifacts` with the object store's
variables in its environment; clients (the tests, the controller, the model servers) then
read and write `s3://` themselves, with the AWS variables and `MLFLOW_S3_ENDPOINT_URL` of
their own environment, as pods do with `envFrom: secretRef`. The fixtures `mlflow_s3` (the
session's server) and `iris_s3` (the iris versions registered on it, `broken` with its model
file deleted from the bucket) are registered by `tests/conftest.py`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from object_store.server import ObjectStore

from bluegreen.stack import MLFLOW_SERVER_ENV
from plumbing.processes import child_env, python_module_command, stop, wait_http_ok
from tests.support.iris import IrisVersions
from tests.support.models import register_iris
from tests.support.object_store import client_env, s3_client, s3_env
from tests.support.ports import free_port
from tests.support.postgres import Postgres
from tests.support.processes import start_tied


@dataclass
class MlflowS3Server:
    url: str
    process: subprocess.Popen[bytes]
    root: Path
    port: int
    postgres: Postgres
    store: ObjectStore
    prefix: str

    def env(self) -> dict[str, str]:
        """What a client of this server needs besides the tracking URI."""
        return client_env(self.store)

    def stop(self) -> None:
        stop(self.process, grace_s=15)


def _command(
    postgres: Postgres, store: ObjectStore, prefix: str, host: str, port: int
) -> list[str]:
    return python_module_command(
        "mlflow",
        "server",
        *("--host", host, "--port", str(port)),
        *("--backend-store-uri", postgres.uri),
        *("--default-artifact-root", f"s3://{store.bucket}/{prefix}"),
        "--no-serve-artifacts",
        *("--workers", "1"),
    )


def start_mlflow_s3(
    root: Path,
    *,
    postgres: Postgres,
    store: ObjectStore,
    prefix: str = "mlartifacts",
    host: str = "127.0.0.1",
) -> MlflowS3Server:
    """On loopback, or on `host` (the cluster tier's node address, where pods reach it; MLflow's
    Host-header check then needs it allowed, as `--allowed-hosts` does in a cluster)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    allowed = {} if host == "127.0.0.1" else {"MLFLOW_SERVER_ALLOWED_HOSTS": f"{host},{host}:*"}
    process = start_tied(
        _command(postgres, store, prefix, host, port),
        env=child_env(**MLFLOW_SERVER_ENV, **client_env(store), **allowed),
        log_path=root / "mlflow-server.log",
    )
    url = f"http://{host}:{port}"
    # The first start creates MLflow's tables in PostgreSQL (its migrations): slower than SQLite.
    wait_http_ok(f"{url}/health", timeout_s=180, process=process, what="mlflow server (s3)")
    return MlflowS3Server(
        url=url, process=process, root=root, port=port, postgres=postgres, store=store,
        prefix=prefix,
    )  # fmt: skip


@pytest.fixture(scope="session")
def mlflow_s3(
    tmp_path_factory: pytest.TempPathFactory, postgres: Postgres, object_store: ObjectStore
) -> Iterator[MlflowS3Server]:
    server = start_mlflow_s3(
        tmp_path_factory.mktemp("mlflow-s3"), postgres=postgres, store=object_store
    )
    yield server
    server.stop()


def model_file_key(server: MlflowS3Server, name: str, version: str) -> str:
    """The bucket key of a version's serialized model, the file its MLmodel's sklearn flavor
    names (`model.skops`; what a careless cleanup deletes)."""
    from mlflow import MlflowClient

    source = MlflowClient(server.url, registry_uri=server.url).get_model_version_download_uri(
        name, version
    )
    prefix = f"s3://{server.store.bucket}/"
    assert source.startswith(prefix), source
    folder = source.removeprefix(prefix).rstrip("/")
    bucket = server.store.bucket
    mlmodel = s3_client(server.store).get_object(Bucket=bucket, Key=f"{folder}/MLmodel")
    flavor = yaml.safe_load(mlmodel["Body"].read())["flavors"]["sklearn"]
    key = f"{folder}/{flavor['pickled_model']}"
    assert key in _keys(server, folder), f"{key} is not in the bucket"
    return key


def _keys(server: MlflowS3Server, prefix: str) -> list[str]:
    pages = s3_client(server.store).get_paginator("list_objects_v2")
    found: list[str] = []
    for page in pages.paginate(Bucket=server.store.bucket, Prefix=prefix):
        found += [item["Key"] for item in page.get("Contents", [])]
    return found


def delete_model_file(server: MlflowS3Server, name: str, version: str) -> str:
    key = model_file_key(server, name, version)
    s3_client(server.store).delete_object(Bucket=server.store.bucket, Key=key)
    return key


@pytest.fixture(scope="session")
def iris_s3(mlflow_s3: MlflowS3Server) -> IrisVersions:
    """Iris versions on the PostgreSQL + S3 server; `broken`'s model file is gone."""
    uri, name = mlflow_s3.url, "iris"
    with s3_env(mlflow_s3.env()):
        versions = {
            "good": register_iris(uri, name, C=1.0, max_iter=300),
            "other": register_iris(uri, name, C=0.05, max_iter=100),
            "third": register_iris(uri, name, C=0.5, max_iter=300),
            "broken": register_iris(uri, name, C=1.0, max_iter=300),
        }
    delete_model_file(mlflow_s3, name, versions["broken"])
    return IrisVersions(
        tracking_uri=uri,
        model=name,
        constant=versions["other"],  # not released by this tier
        slow=versions["other"],
        no_example=versions["other"],
        **versions,
    )
