"""MLflow's scoring protocol, answered by MLflow's own code (`mlflow.pyfunc.scoring_server`).

Called by `scoring.py` for every `/invocations` (and `/predict`) request the fast path does
not take, and by the app for `/ping`, `/health` and `/version`. Content-Type negotiation,
parsing, schema enforcement, type conversion, prediction and serialization are MLflow's,
so new MLflow behaviour is inherited. What is ours (each one a deliberate difference,
see `tests/conformance/differences.py`):

- a missing Content-Type is answered as MLflow answers an empty one (415), where MLflow
  itself fails with a 500 and drops the connection;
- JSON nested too deep for Python's parser is a 400 in MLflow's JSON-error shape (MLflow
  answers 500);
- error bodies carry no input echo and no stack trace (`mlflow_errors.py`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib.metadata import version as _dist_version
from typing import Any

import numpy as np
import orjson

from model_server.mlflow_errors import clean_error_body

log = logging.getLogger(__name__)

JSON = "application/json"

# The Content-Type headers MLflow's `invocations` reads as plain UTF-8 JSON with no other
# parameter. Only these exact strings may take the fast path; every other header (case,
# spacing, quoting, extra parameters) goes through MLflow's own negotiation.
FAST_CONTENT_TYPES = frozenset(
    {
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
        "application/json;charset=utf-8",
        "application/json;charset=UTF-8",
    }
)

# What `mlflow models serve` answers on /version: the installed MLflow's version string.
MLFLOW_VERSION = _dist_version("mlflow")
# Its /ping and /health body: a newline, labelled JSON; 200 once the model is loaded.
PING_BODY = "\n"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, body and media type (Starlette adds `charset` to text/*)."""

    status: int
    body: str | bytes
    media_type: str


def predictions_body(predictions: np.ndarray) -> bytes:
    """`{"predictions": [...]}` exactly as MLflow's `predictions_to_json` writes an array.

    MLflow calls `ndarray.tolist()` and `json.dump`; `json.dumps` of the same plain lists
    gives the same bytes (same separators, same float repr) without its slow writer. For
    integer arrays orjson's output with MLflow's ", " separator is the same bytes again,
    at a third of the cost (the common case: class labels).
    """
    if predictions.dtype.kind in "iu":
        try:
            items = orjson.dumps(predictions, option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError:  # orjson takes C-ordered arrays only
            pass
        else:
            return b'{"predictions": ' + items.replace(b",", b", ") + b"}"
    return json.dumps({"predictions": predictions.tolist()}).encode()


def invoke(pyfunc: Any, input_schema: Any, body: bytes, content_type: str | None) -> Answer:
    """Answer one `/invocations` request with MLflow's scoring code (blocking: run in a thread)."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server
    from mlflow.utils import proto_json_utils

    # MLflow's functions carry no annotations: typed here, at our boundary.
    score: Any = scoring_server.invocations
    invalid_input: Any = proto_json_utils.MlflowInvalidInputException
    try:
        result = score(body, content_type or "", pyfunc, input_schema)
    except MlflowException as exc:
        return _error_answer(exc)
    except RecursionError as exc:
        # json.loads gives up on deep nesting with RecursionError, which MLflow does not
        # catch; answer what it answers for any other undecodable JSON.
        return _error_answer(
            invalid_input(f"Ensure that input is a valid JSON formatted string. Error: '{exc!r}'")
        )
    return Answer(int(result.status), result.response, str(result.mimetype))


def _error_answer(exc: Any) -> Answer:
    """MLflow's status for an `MlflowException` and its cleaned JSON body."""
    return Answer(int(exc.get_http_status_code()), clean_error_body(exc), JSON)


# `mlflow.environment_variables._MLFLOW_IS_IN_SERVING_ENVIRONMENT`, named here so that
# setting it does not import MLflow (tests/model_server checks the name against MLflow's).
SERVING_ENVIRONMENT_VARIABLE = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"


def enter_serving_environment() -> None:
    """What `scoring_server.init` sets before serving: type-hinted models check input then."""
    import os

    os.environ[SERVING_ENVIRONMENT_VARIABLE] = "true"
