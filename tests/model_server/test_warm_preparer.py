"""The warm preparer: a cache miss prepared by a process that imported MLflow once.

Each test runs a real `python -m model_server.prepare_service` and real model servers
against the session's MLflow server; the server's log says which way it prepared.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from model_server.main import EXIT_CANNOT_SERVE
from plumbing import processes
from tests.support.iris import IrisVersions
from tests.support.model_servers import ModelServerProcess, spawn_iris_server
from tests.support.waiting import wait_for

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
SPLIT = {
    "dataframe_split": {
        "columns": [
            "sepal length (cm)",
            "sepal width (cm)",
            "petal length (cm)",
            "petal width (cm)",
        ],
        "data": ROWS,
    }
}
BY_PREPARER = "prepared by the warm preparer"
IN_CHILD = "no warm preparer at"


@pytest.fixture
def preparer(iris: IrisVersions, tmp_path: Path) -> Iterator[Path]:
    """A running warm preparer; its socket."""
    socket_path = tmp_path / "prepare.sock"
    process = processes.spawn(
        processes.python_module_command(
            "model_server.prepare_service", "--socket", str(socket_path)
        ),
        env=processes.child_env(MLFLOW_TRACKING_URI=iris.tracking_uri),
        log_path=tmp_path / "preparer.log",
    )

    def listening() -> bool:
        assert process.poll() is None, (tmp_path / "preparer.log").read_text()
        return socket_path.exists()

    try:
        wait_for("the preparer to listen", listening, timeout_s=120, interval_s=0.2)
        yield socket_path
    finally:
        processes.stop(process)


def _served(iris: IrisVersions, version: str, logs: Path, **env: str) -> tuple[dict[str, Any], str]:
    """Serve `version` until ready: its answer to SPLIT and its log."""
    server: ModelServerProcess = spawn_iris_server(iris, version, log_dir=logs, env=env)
    try:
        server.wait_ready()
        answer = httpx.post(f"{server.url}/invocations", json=SPLIT, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json(), server.output()
    finally:
        server.stop()


@pytest.mark.timeout(300)
def test_a_cache_miss_is_prepared_by_the_warm_preparer_and_answers_the_same(
    iris: IrisVersions, preparer: Path, tmp_path: Path
) -> None:
    assert stat.S_IMODE(os.stat(preparer).st_mode) == 0o600  # requests carry credentials
    warm, warm_log = _served(
        iris,
        iris.good,
        tmp_path,
        MODEL_SERVER_CACHE_DIR=str(tmp_path / "warm"),
        MODEL_SERVER_PREPARE_SOCKET=str(preparer),
        MODEL_SERVER_ADMIN_TOKEN="s3cret-admin",
    )
    assert BY_PREPARER in warm_log and IN_CHILD not in warm_log, warm_log[-2000:]
    assert "s3cret-admin" not in (preparer.parent / "preparer.log").read_text()
    cold, cold_log = _served(
        iris, iris.good, tmp_path, MODEL_SERVER_CACHE_DIR=str(tmp_path / "cold")
    )
    assert BY_PREPARER not in cold_log
    assert warm == cold


@pytest.mark.timeout(300)
def test_without_a_preparer_answering_the_server_prepares_in_its_own_child(
    iris: IrisVersions, tmp_path: Path
) -> None:
    answer, log = _served(
        iris,
        iris.good,
        tmp_path,
        MODEL_SERVER_CACHE_DIR=str(tmp_path / "cache"),
        MODEL_SERVER_PREPARE_SOCKET=str(tmp_path / "nobody-listens.sock"),
    )
    assert IN_CHILD in log and BY_PREPARER not in log
    assert len(answer["predictions"]) == len(ROWS)


@pytest.mark.timeout(300)
def test_a_version_that_will_not_load_fails_through_the_preparer_with_its_reason(
    iris: IrisVersions, preparer: Path, tmp_path: Path
) -> None:
    server = spawn_iris_server(
        iris,
        iris.broken,
        log_dir=tmp_path,
        env={
            "MODEL_SERVER_CACHE_DIR": str(tmp_path / "cache"),
            "MODEL_SERVER_PREPARE_SOCKET": str(preparer),
        },
    )
    assert server.wait_exit() == EXIT_CANNOT_SERVE
    out = server.output()
    assert f"cannot serve models:/iris/{iris.broken}" in out
    assert IN_CHILD not in out  # the preparer answered: its reason, not a second attempt
    # The preparer itself lives on for the next version.
    answer, log = _served(
        iris,
        iris.other,
        tmp_path,
        MODEL_SERVER_CACHE_DIR=str(tmp_path / "cache"),
        MODEL_SERVER_PREPARE_SOCKET=str(preparer),
    )
    assert BY_PREPARER in log
    assert len(answer["predictions"]) == len(ROWS)
