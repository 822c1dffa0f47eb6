"""Fixtures of the conformance suite: the registered model kinds and their server pairs.

Each kind is registered once on the session's MLflow server (`tests/conftest.py`) and its
pair (`mlflow models serve` and ours) started the first time a test asks for it; all
pairs stop at the end of the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conformance.servers import ServerPair, start_pair
from tests.support.mlflow_server import MlflowServer
from tests.support.model_kinds import RegisteredKind, register_kind


@pytest.fixture(scope="session")
def registered_kinds(mlflow_server: MlflowServer) -> Callable[[str], RegisteredKind]:
    registered: dict[str, RegisteredKind] = {}

    def get(kind: str) -> RegisteredKind:
        if kind not in registered:
            registered[kind] = register_kind(mlflow_server.url, kind)
        return registered[kind]

    return get


@pytest.fixture(scope="session")
def server_pairs(
    registered_kinds: Callable[[str], RegisteredKind],
    mlflow_server: MlflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], ServerPair]]:
    pairs: dict[str, ServerPair] = {}
    log_dir: Path = tmp_path_factory.mktemp("conformance-logs")

    def get(kind: str) -> ServerPair:
        if kind not in pairs:
            pairs[kind] = start_pair(registered_kinds(kind), mlflow_server.url, log_dir)
        return pairs[kind]

    yield get
    for pair in pairs.values():
        pair.stop()
