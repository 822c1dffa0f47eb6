"""Turns request bodies into a float matrix for the fast predict path, or says what is wrong.

Called by the app for `/predict` and `/invocations` when the model qualifies for the fast
path (see `predictor.py`). Every rejection is an `InvalidInput` whose message names the
problem, so clients get a 400 they can act on instead of a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from model_server.errors import InvalidInput

SCORING_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_NUMERIC_KINDS = frozenset("iuf")


def decode_json(body: bytes) -> Any:
    """Parse a JSON body, refusing empty bodies and invalid JSON with a clear message."""
    if not body.strip():
        raise InvalidInput("request body is empty: send a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None


def scoring_format(payload: dict[str, Any]) -> str:
    """Return the one MLflow scoring key a JSON object uses."""
    keys = [key for key in SCORING_FORMATS if key in payload]
    if len(keys) != 1:
        found = sorted(str(key) for key in payload)
        raise InvalidInput(
            f"the JSON object must have exactly one of the fields {list(SCORING_FORMATS)}; "
            f"found {found}"
        )
    return keys[0]


@dataclass(frozen=True)
class ColumnLayout:
    """The model's input columns, in the order the model expects them."""

    names: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.names)

    def matrix(self, payload: Any, *, allow_bare_rows: bool) -> np.ndarray:
        """Build the (rows x width) float64 matrix a payload describes."""
        if isinstance(payload, list):
            if not allow_bare_rows:
                raise InvalidInput(
                    f"expected a JSON object with one of {list(SCORING_FORMATS)}, got a list"
                )
            return self._rows(payload, what="body")
        if not isinstance(payload, dict):
            raise InvalidInput(
                "expected a JSON array of rows or a JSON object with one of "
                f"{list(SCORING_FORMATS)}, got {_json_type(payload)}"
            )
        key = scoring_format(payload)
        value = payload[key]
        if key == "dataframe_split":
            return self._split(value)
        if key == "dataframe_records":
            return self._records(value, what=key)
        return self._tensor_like(value, what=key)

    def _rows(self, rows: Any, *, what: str) -> np.ndarray:
        if not isinstance(rows, list):
            raise InvalidInput(f"{what} must be a list of rows, got {_json_type(rows)}")
        if not rows:
            raise InvalidInput(f"{what} holds no rows: send at least one")
        if isinstance(rows[0], dict):
            return self._records(rows, what=what)
        return self._numeric(rows, what=what, width=self.width)

    def _records(self, records: Any, *, what: str) -> np.ndarray:
        if not isinstance(records, list) or not records:
            raise InvalidInput(f"{what} must be a non-empty list of objects")
        rows = []
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise InvalidInput(f"{what}[{index}] must be an object, got {_json_type(record)}")
            missing = [name for name in self.names if name not in record]
            if missing:
                raise InvalidInput(f"{what}[{index}] is missing columns {missing}")
            rows.append([record[name] for name in self.names])
        return self._numeric(rows, what=what, width=self.width)

    def _split(self, split: Any) -> np.ndarray:
        what = "dataframe_split"
        if not isinstance(split, dict) or "data" not in split:
            raise InvalidInput(f'{what} must be an object with "data" (and usually "columns")')
        columns = split.get("columns")
        if columns is None:
            return self._numeric(split["data"], what=f"{what}.data", width=self.width)
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise InvalidInput(f"{what}.columns must be a list of column names")
        missing = [name for name in self.names if name not in columns]
        if missing:
            raise InvalidInput(f"{what} is missing columns {missing}; it has {columns}")
        matrix = self._numeric(split["data"], what=f"{what}.data", width=len(columns))
        if tuple(columns) == self.names:
            return matrix
        return np.ascontiguousarray(matrix[:, [columns.index(name) for name in self.names]])

    def _tensor_like(self, value: Any, *, what: str) -> np.ndarray:
        if isinstance(value, dict):
            missing = [name for name in self.names if name not in value]
            if missing:
                raise InvalidInput(f"{what} is missing columns {missing}")
            columns = [value[name] for name in self.names]
            if not all(isinstance(column, list) for column in columns):
                raise InvalidInput(f"each column of {what} must be a list of values")
            if len({len(column) for column in columns}) != 1 or not columns[0]:
                raise InvalidInput(f"the columns of {what} must be non-empty and of equal length")
            return np.ascontiguousarray(self._numeric(columns, what=what, width=len(columns[0])).T)
        return self._rows(value, what=what)

    def _numeric(self, rows: Any, *, what: str, width: int) -> np.ndarray:
        if not isinstance(rows, list) or not rows:
            raise InvalidInput(f"{what} must be a non-empty list of rows")
        try:
            matrix = np.array(rows)
        except (ValueError, TypeError):
            raise InvalidInput(f"{what} rows must all have {width} values") from None
        if matrix.ndim != 2:
            raise InvalidInput(
                f"{what} must be a list of rows of {width} numbers each "
                f"(got a {matrix.ndim}-dimensional array)"
            )
        if matrix.dtype.kind not in _NUMERIC_KINDS:
            raise InvalidInput(f"{what} must hold numbers only (got {_describe_values(matrix)})")
        if matrix.shape[1] != width:
            raise InvalidInput(
                f"{what} rows have {matrix.shape[1]} values; the model expects {width} "
                f"({', '.join(self.names)})"
            )
        matrix = matrix.astype(np.float64, copy=False)
        if not np.isfinite(matrix).all():
            raise InvalidInput(f"{what} holds a value that is not a finite number")
        return matrix


def _json_type(value: Any) -> str:
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
