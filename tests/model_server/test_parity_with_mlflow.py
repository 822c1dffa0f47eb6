"""`/invocations` answers exactly what `mlflow models serve` answers, side by side."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from plumbing.processes import child_env, stop, wait_http_ok
from tests.support.iris import IrisVersions
from tests.support.models import IRIS_COLUMNS, IRIS_ROWS
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def mlflow_serve(iris: IrisVersions, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("mlflow-serve") / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{iris.model}/{iris.good}",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--env-manager",
                "local",
            ],
            env=child_env(MLFLOW_TRACKING_URI=iris.tracking_uri),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/ping", timeout_s=120, process=process, what="mlflow models serve")
        yield url
    finally:
        stop(process)
        os.killpg(process.pid, 9) if process.poll() is None else None


PAYLOADS = {
    "split": {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}},
    "split-one-row": {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS[:1]}},
    "split-reordered": {
        "dataframe_split": {"columns": IRIS_COLUMNS[::-1], "data": [r[::-1] for r in IRIS_ROWS]}
    },
    "records": {"dataframe_records": [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in IRIS_ROWS]},
    "inputs-columns": {
        "inputs": {c: [r[i] for r in IRIS_ROWS] for i, c in enumerate(IRIS_COLUMNS)}
    },
    "instances-records": {
        "instances": [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in IRIS_ROWS]
    },
    "integers": {"dataframe_split": {"columns": IRIS_COLUMNS, "data": [[5, 3, 1, 0]]}},
}


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_same_answer_as_mlflow_models_serve(
    name: str, mlflow_serve: str, model_server_process: str
) -> None:
    payload = PAYLOADS[name]
    theirs = httpx.post(f"{mlflow_serve}/invocations", json=payload, timeout=30)
    ours = httpx.post(f"{model_server_process}/invocations", json=payload, timeout=30)
    assert theirs.status_code == 200, theirs.text
    assert ours.status_code == theirs.status_code
    assert ours.json() == theirs.json()
    assert ours.headers["content-type"].startswith("application/json")


def test_csv_same_answer(mlflow_serve: str, model_server_process: str) -> None:
    csv = ",".join(IRIS_COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in IRIS_ROWS)
    headers = {"content-type": "text/csv"}
    theirs = httpx.post(f"{mlflow_serve}/invocations", content=csv, headers=headers)
    ours = httpx.post(f"{model_server_process}/invocations", content=csv, headers=headers)
    assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())


@pytest.mark.parametrize(
    "body",
    [
        b'{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, 3, 4]]}}',
        b'{"nothing": 1}',
        b"[[1, 2, 3, 4]]",
        b"{oops",
    ],
)
def test_both_refuse_the_same_bad_input_with_4xx(
    body: bytes, mlflow_serve: str, model_server_process: str
) -> None:
    headers = {"content-type": "application/json"}
    theirs = httpx.post(f"{mlflow_serve}/invocations", content=body, headers=headers)
    ours = httpx.post(f"{model_server_process}/invocations", content=body, headers=headers)
    assert 400 <= theirs.status_code < 500
    assert ours.status_code == theirs.status_code
    # Both answer MLflow's error shape; our messages say more precisely what is wrong.
    assert set(theirs.json()) >= {"error_code", "message"}
    assert set(ours.json()) == {"error_code", "message"}
