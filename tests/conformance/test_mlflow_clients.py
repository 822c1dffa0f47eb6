"""MLflow's own clients against our server: `ScoringServerClient` and `mlflow models predict`.

A team swapping `mlflow models serve` for ours keeps its client code: MLflow's
`ScoringServerClient` (`wait_server_ready`, `ping`, `get_version`, `invoke`) must work
against ours unchanged and get what it gets from MLflow, including from a cold start
(`wait_server_ready` polls `/ping` while the model loads). What `mlflow models predict`
writes for an input file must be what our `/invocations` answers for the same file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

from tests.conformance.catalog_columns import IRIS_ROWS
from tests.conformance.servers import ServerPair
from tests.support import processes
from tests.support.mlflow_server import MlflowServer
from tests.support.model_kinds import IRIS_COLUMNS, RegisteredKind
from tests.support.ports import free_port


def _client(url: str) -> ScoringServerClient:
    host, port = url.removeprefix("http://").split(":")
    return ScoringServerClient(host=host, port=int(port))


def _inputs(kind: str) -> tuple[Any, dict[str, Any] | None]:
    """What a client hands `invoke` for each kind: a frame, an array, params."""
    if kind == "columns":
        return pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS), None
    if kind == "regressor":
        return pd.DataFrame([r[:3] for r in IRIS_ROWS], columns=IRIS_COLUMNS[:3]), None
    if kind == "tensor":
        return np.array(IRIS_ROWS), None
    if kind == "nosig":
        return pd.DataFrame({"zip": ["95120", "95128"], "cost": [10.45, 23.0]}), None
    frame = pd.DataFrame({"x": [1.5, 2.0], "n": [1, 2], "label": ["a", "b"]})
    return frame, {"scale": 2.0, "suffix": "!"}


@pytest.mark.parametrize("kind", ["columns", "regressor", "tensor", "nosig", "params"])
def test_scoring_server_client_gets_what_it_gets_from_mlflow(
    kind: str, server_pairs: Callable[[str], ServerPair]
) -> None:
    pair = server_pairs(kind)
    theirs, ours = _client(pair.theirs.url), _client(pair.ours.url)
    ours.wait_server_ready(timeout=30)
    ours.ping()
    assert ours.get_version() == theirs.get_version()
    data, params = _inputs(kind)
    expected = theirs.invoke(data, params=params)
    answered = ours.invoke(data, params=params)
    assert answered == expected
    assert answered.get_predictions().equals(expected.get_predictions())


def test_wait_server_ready_from_a_cold_start(
    registered_kinds: Callable[[str], RegisteredKind],
    server_pairs: Callable[[str], ServerPair],
    mlflow_server: MlflowServer,
    tmp_path: Path,
) -> None:
    """The headline bug: without /ping, `wait_server_ready` timed out against ours."""
    kind = registered_kinds("columns")
    frame = pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS)
    expected = _client(server_pairs("columns").theirs.url).invoke(frame)
    port = free_port()
    log_path = tmp_path / "model-server.log"
    process = processes.start(
        [sys.executable, "-m", "model_server", "--host", "127.0.0.1", "--port", str(port)],
        env=processes.venv_env(
            MLFLOW_TRACKING_URI=mlflow_server.url,
            MODEL_NAME=kind.model,
            MODEL_VERSION=kind.version,
        ),
        log_path=log_path,
    )
    try:
        client = ScoringServerClient(host="127.0.0.1", port=port)
        client.wait_server_ready(timeout=90, scoring_server_proc=process)
        assert client.invoke(frame) == expected
    finally:
        processes.stop(process)


# name -> (model kind, `mlflow models predict -t`, input file). The CLI parses JSON with the
# same code as the server (covered case by case in test_side_by_side.py) but CSV without
# the signature's dtypes; each run costs ~20 s, so one file per path.
_PREDICT_FILES: dict[str, tuple[str, str, bytes]] = {
    "columns-csv": (
        "columns",
        "csv",
        pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS).to_csv(index=False).encode(),
    ),
    "params-json-with-params": (
        "params",
        "json",
        json.dumps(
            {
                "dataframe_records": [{"x": 1.5, "n": 1, "label": "a"}],
                "params": {"scale": 3.0, "flag": True},
            }
        ).encode(),
    ),
}


@pytest.mark.parametrize("name", list(_PREDICT_FILES))
def test_mlflow_models_predict_writes_what_invocations_answers(
    name: str,
    server_pairs: Callable[[str], ServerPair],
    mlflow_server: MlflowServer,
    tmp_path: Path,
) -> None:
    kind, content_type, body = _PREDICT_FILES[name]
    pair = server_pairs(kind)
    source, written = tmp_path / f"input.{content_type}", tmp_path / "predictions.json"
    source.write_bytes(body)
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "predict",
            "-m",
            pair.kind.uri,
            "-i",
            str(source),
            "-o",
            str(written),
            "-t",
            content_type,
            "--env-manager",
            "local",
        ],
        env=processes.venv_env(MLFLOW_TRACKING_URI=mlflow_server.url),
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-2000:]
    mime = "application/json" if content_type == "json" else "text/csv"
    answer = pair.client("ours").post("/invocations", content=body, headers={"content-type": mime})
    assert answer.status_code == 200, answer.text
    assert answer.content == written.read_bytes()
