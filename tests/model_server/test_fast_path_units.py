"""The fast path's building blocks against MLflow's own functions, in process (no servers).

`predictions_body` must write the bytes MLflow's `predictions_to_json` writes;
`SignatureColumns.payload_matrix` must hand the estimator what MLflow's parsing hands it,
and decline the rest; MLflow's error bodies lose only the echo and the stack trace. The
side-by-side suite (`tests/conformance`) checks the same through real servers.
"""

from __future__ import annotations

import io
import json

import numpy as np
import orjson
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import infer_and_parse_data, predictions_to_json
from mlflow.types import ColSpec, Schema
from mlflow.utils.proto_json_utils import MlflowInvalidInputException

from model_server.mlflow_errors import clean_error_body
from model_server.mlflow_protocol import predictions_body
from model_server.signature_matrix import SignatureColumns

NAMES = ["a", "b", "c"]
SCHEMA = Schema([ColSpec("double", name) for name in NAMES])


@pytest.mark.parametrize(
    "predictions",
    [
        np.array([0, 1, 2]),
        np.array([-1, 7], dtype=np.int8),
        np.array([2**64 - 1], dtype=np.uint64),
        np.array([[1, 2], [3, 4]]),
        np.asfortranarray(np.array([[1, 2], [3, 4]])),
        np.array([], dtype=np.int64),
        np.array([0.1, 1e-05, 1e16, -0.0, 2.5]),
        np.array([0.1, 3.3], dtype=np.float32),
        np.array([np.nan, np.inf]),
        np.array([True, False]),
        np.array(["setosa", "virginica"]),
        np.array(["x", 1], dtype=object),
    ],
    ids=lambda a: f"{a.dtype}-{a.ndim}d-{'F' if a.flags.f_contiguous else 'C'}",
)
def test_predictions_body_is_mlflows_bytes(predictions: np.ndarray) -> None:
    written = io.StringIO()
    predictions_to_json(predictions, written)
    assert predictions_body(predictions) == written.getvalue().encode()


def _mlflow_matrix(payload: dict) -> np.ndarray:
    """What MLflow's parsing hands a scikit-learn model, as a float matrix in schema order."""
    parsed = infer_and_parse_data(payload, SCHEMA)
    frame = pd.DataFrame(parsed) if isinstance(parsed, dict) else parsed
    return np.asarray(frame[NAMES].astype("float64"))


ROWS = [[5.1, 3.5, 1.4], [6, True, -0.0]]
TAKEN = {
    "split": {"dataframe_split": {"columns": NAMES, "data": ROWS}},
    "split-reordered": {"dataframe_split": {"columns": ["c", "a", "b"], "data": [[1, 2, 3]]}},
    "records": {"dataframe_records": [dict(zip(NAMES, row, strict=True)) for row in ROWS]},
    "instances": {"instances": [dict(zip(NAMES, row, strict=True)) for row in ROWS]},
    "inputs": {"inputs": {name: [row[i] for row in ROWS] for i, name in enumerate(NAMES)}},
}


@pytest.mark.parametrize("name", list(TAKEN))
def test_recognized_forms_give_mlflows_matrix_in_fortran_order(name: str) -> None:
    payload = orjson.loads(json.dumps(TAKEN[name]))
    matrix = SignatureColumns(tuple(NAMES)).payload_matrix(payload)
    assert matrix is not None
    assert matrix.dtype == np.float64 and matrix.flags.f_contiguous
    np.testing.assert_array_equal(matrix, _mlflow_matrix(TAKEN[name]))


DECLINED = {
    "not-an-object": [[1, 2, 3]],
    "two-keys": {"inputs": {}, "params": {}},
    "no-columns": {"dataframe_split": {"data": [[1, 2, 3]]}},
    "index": {"dataframe_split": {"columns": NAMES, "data": [[1, 2, 3]], "index": [0]}},
    "duplicate-columns": {"dataframe_split": {"columns": ["a", "a", "b"], "data": [[1, 2, 3]]}},
    "extra-column": {"dataframe_split": {"columns": [*NAMES, "d"], "data": [[1, 2, 3, 4]]}},
    "strings": {"dataframe_split": {"columns": NAMES, "data": [["1", 2, 3]]}},
    "nulls": {"dataframe_split": {"columns": NAMES, "data": [[None, 2, 3]]}},
    "ragged": {"dataframe_split": {"columns": NAMES, "data": [[1, 2, 3], [1]]}},
    "empty": {"dataframe_split": {"columns": NAMES, "data": []}},
    "nested": {"dataframe_split": {"columns": NAMES, "data": [[[1], 2, 3]]}},
    "records-extra-key": {"dataframe_records": [{"a": 1, "b": 2, "c": 3, "d": 4}]},
    "instances-tensor": {"instances": [[1, 2, 3]]},
    "inputs-scalars": {"inputs": {"a": 1, "b": 2, "c": 3}},
    "inputs-unequal": {"inputs": {"a": [1, 2], "b": [2], "c": [3]}},
    "llm-key": {"messages": []},
}


@pytest.mark.parametrize("name", list(DECLINED))
def test_everything_else_is_left_to_mlflow(name: str) -> None:
    assert SignatureColumns(tuple(NAMES)).payload_matrix(DECLINED[name]) is None


def test_error_body_loses_the_echo_and_the_trace_only() -> None:
    try:
        raise ValueError("Input X contains NaN.\nmore")
    except ValueError:
        try:
            raise MlflowException(
                "Encountered an unexpected error while evaluating the model.",
                error_code=400,
                stack_trace="Traceback ...",
            )
        except MlflowException as exc:
            unexpected = exc
    body = json.loads(clean_error_body(unexpected))
    assert "stack_trace" not in body
    assert body["message"] == (
        "Encountered an unexpected error while evaluating the model. "
        "Error: ValueError: Input X contains NaN."
    )
    echoed = MlflowInvalidInputException(
        "Ensure that input is a valid JSON formatted string. Error: 'x'\nInput: \nb'{secret'\n"
    )
    assert "secret" not in clean_error_body(echoed)
    schema_error = MlflowException.invalid_parameter_value(
        "Failed to predict data '   a\n0  1'. \nError: Failed to enforce schema of data '   a\n0"
        "  1' with schema '['b': double]'. Error: Model is missing inputs ['b']."
    )
    assert json.loads(clean_error_body(schema_error))["message"] == (
        "Failed to predict data. \nError: Failed to enforce schema of data with schema "
        "'['b': double]'. Error: Model is missing inputs ['b']."
    )
