"""`/predict`'s own input contract: a JSON array of rows, validated here with clear messages.

Called by `scoring.py` for `/predict` bodies that are JSON arrays (scoring-format objects
go the `/invocations` way). For fast-path models the rows become the float matrix the
estimator predicts on; for every other model they become the MLflow scoring payload they
stand for (`as_scoring_payload`), which MLflow's own code then answers. Every rejection is
an `InvalidInput` whose message names the problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from model_server.errors import InvalidInput

_NUMERIC_KINDS = frozenset("iuf")


def decode_json(body: bytes) -> Any:
    """Parse a JSON body, refusing empty bodies and invalid JSON with a clear message.

    orjson first (fast); what it refuses gets a second chance with `json.loads`, which is
    what MLflow reads bodies with (a BOM, UTF-16/32, NaN, integers beyond 64 bits).
    """
    if not body.strip():
        raise InvalidInput("request body is empty: send a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidInput(f"request body is not valid JSON: {reason}") from None


_SCORING_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def row_count(payload: Any) -> int:
    """How many rows a JSON payload holds, as far as its shape says (0 when it says nothing).

    Used for the per-request row cap before any matrix or frame is built.
    """
    if isinstance(payload, list):
        return len(payload)
    if not isinstance(payload, dict):
        return 0
    for key in _SCORING_KEYS:
        value = payload.get(key)
        if key == "dataframe_split" and isinstance(value, dict):
            value = value.get("data")
        if isinstance(value, list):
            return len(value)
        if isinstance(value, dict):  # columnar: the longest column
            return max((len(v) for v in value.values() if isinstance(v, list)), default=0)
    return 0


def as_scoring_payload(rows: list[Any], column_names: list[str] | None) -> dict[str, Any]:
    """What bare rows mean in MLflow's scoring protocol, for models off the fast path."""
    if not rows:
        raise InvalidInput("body holds no rows: send at least one")
    if all(isinstance(row, dict) for row in rows):
        return {"dataframe_records": rows}
    if column_names is not None and all(isinstance(row, list) for row in rows):
        return {"dataframe_split": {"columns": column_names, "data": rows}}
    return {"inputs": rows}


@dataclass(frozen=True)
class ColumnLayout:
    """The model's input columns, in the order the model expects them."""

    names: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.names)

    def rows(self, rows: list[Any]) -> np.ndarray:
        """The (rows x width) float64 matrix of bare rows (lists of numbers or records)."""
        if not rows:
            raise InvalidInput("body holds no rows: send at least one")
        if isinstance(rows[0], dict):
            return self._records(rows)
        return self._numeric(rows, what="body")

    def _records(self, records: list[Any]) -> np.ndarray:
        values = []
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise InvalidInput(f"body[{index}] must be an object, got {json_type(record)}")
            missing = [name for name in self.names if name not in record]
            if missing:
                raise InvalidInput(f"body[{index}] is missing columns {missing}")
            values.append([record[name] for name in self.names])
        return self._numeric(values, what="body")

    def _numeric(self, rows: list[Any], *, what: str) -> np.ndarray:
        try:
            matrix = np.array(rows)
        except (ValueError, TypeError):
            raise InvalidInput(f"{what} rows must all have {self.width} values") from None
        if matrix.ndim != 2:
            raise InvalidInput(
                f"{what} must be a list of rows of {self.width} numbers each "
                f"(got a {matrix.ndim}-dimensional array)"
            )
        if matrix.dtype.kind not in _NUMERIC_KINDS:
            raise InvalidInput(f"{what} must hold numbers only (got {_describe_values(matrix)})")
        if matrix.shape[1] != self.width:
            raise InvalidInput(
                f"{what} rows have {matrix.shape[1]} values; the model expects {self.width} "
                f"({', '.join(self.names)})"
            )
        matrix = matrix.astype(np.float64, copy=False)
        if not np.isfinite(matrix).all():
            raise InvalidInput(f"{what} holds a value that is not a finite number")
        return matrix


def json_type(value: Any) -> str:
    """How a JSON value is named in messages: 'an object', 'a list', 'null', ..."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _describe_values(matrix: np.ndarray) -> str:
    if matrix.dtype.kind == "b":
        return "booleans"
    if matrix.dtype.kind in "US":
        return "strings"
    return "nulls or mixed values"
