"""A real S3-compatible object store (SeaweedFS, `scripts/object-store`) for the tests.

The fixture `object_store` is the session's: built once from its Go module (cached under
~/.cache/object-store), started on loopback with a bucket and credentials, stopped at the
end (and with the test process if that dies first). `start_object_store` starts one more (a
test that takes its store down). `s3_env` puts a store's `DIR/env` variables into this
process's environment for a block: MLflow's client uploads and reads `s3://` artifacts
directly with them, and every process a test starts inherits them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from object_store import build, server
from object_store.server import ObjectStore

from plumbing.processes import child_env
from tests.support.processes import start_tied

S3_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def _tied(command: list[str], root: Path, log_path: Path) -> subprocess.Popen[bytes]:
    return start_tied(command, env=child_env(), log_path=log_path, cwd=root)


def start_object_store(root: Path, *, host: str = "127.0.0.1") -> ObjectStore:
    """A store in `root` that dies with this test process if teardown never comes."""
    weed = build.ensure_built(lambda msg: print(f"object-store: {msg}", flush=True))
    return server.up(root, host=host, weed=weed, start=_tied)


def client_env(store: ObjectStore) -> dict[str, str]:
    """What an S3 client of `store` needs (`BUCKET` is ours, not a client variable)."""
    return {k: v for k, v in store.env().items() if k != "BUCKET"}


@contextmanager
def s3_env(variables: Mapping[str, str]) -> Iterator[None]:
    """`variables` in os.environ for the block; the earlier values after it.

    boto3's default session (which MLflow's S3 client uses) keeps the credentials it first
    read from the environment for the life of the process: it is dropped on the way in and
    out, or a second store in the same session would be sent the first one's keys.
    """
    import boto3

    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    boto3.DEFAULT_SESSION = None
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        boto3.DEFAULT_SESSION = None


def s3_client(store: ObjectStore) -> Any:
    """A boto3 S3 client of `store` (the tests remove objects with it)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
        region_name=server.REGION,
    )


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """The session's object store, its bucket empty at the start."""
    root = tmp_path_factory.mktemp("object-store")
    store = start_object_store(root)
    yield store
    server.down(root)
