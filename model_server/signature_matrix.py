"""The float matrix a fast-path model predicts on, built from a request by its signature.

`SignatureColumns` holds the signature's column names (all doubles, in the order the
estimator was fitted on) and builds the (rows x columns) float64 matrix two ways, both
called by `scoring.py`:

- `payload_matrix` takes MLflow's scoring formats (`/invocations`, and `/predict` given an
  object). It returns the matrix MLflow's own parsing and schema enforcement would hand the
  estimator, or `None` for anything it has not proved equivalent: then MLflow's scoring code
  answers, errors and type conversions included. It never raises on bad input; refusing is
  MLflow's job.
- `rows_matrix` takes `/predict`'s own bare rows (lists of numbers, or records) and refuses
  what it cannot use with an `InvalidInput` that names the problem (`/predict`'s contract).

What `payload_matrix` takes (a JSON object with exactly one key; no `params`, no LLM keys):
- `dataframe_split`: `columns` naming exactly the signature's columns (any order, no
  duplicates), `data` a non-empty list of rows of numbers (no `index`);
- `dataframe_records` and `instances`: a non-empty list of objects whose keys are exactly
  the signature's columns, with numbers as values;
- `inputs`: an object mapping exactly the signature's columns to equal-length, non-empty
  lists of numbers.

Numbers and booleans (which MLflow casts to 1.0 and 0.0) are taken; nulls, strings, nested
values, extra or missing columns all go to MLflow. The payload must be what orjson parsed:
orjson refuses NaN and Infinity (and reads integers beyond 64 bits as the nearest float,
which is what MLflow's cast to float64 makes of them), so every value taken here is a
finite float64 without a check per value. The matrix is Fortran-ordered because that is
the layout a pandas frame hands scikit-learn, and BLAS results depend on it in the last
bit (seen with LinearRegression).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_server.errors import InvalidInput
from model_server.inputs import json_type

# What MLflow casts to double (booleans too); bare `/predict` rows must be numbers only.
_PAYLOAD_KINDS = frozenset("biuf")
_ROW_KINDS = frozenset("iuf")


@dataclass(frozen=True)
class SignatureColumns:
    """The signature's column names, in the order the estimator was fitted on."""

    names: tuple[str, ...]
    _name_list: list[str] = field(init=False, repr=False, compare=False)
    _name_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_name_list", list(self.names))
        object.__setattr__(self, "_name_set", frozenset(self.names))

    @property
    def width(self) -> int:
        return len(self.names)

    def payload_matrix(self, payload: Any) -> np.ndarray | None:
        """The (rows x width) matrix MLflow would predict on, or None: let MLflow answer.

        `payload` must come from `orjson.loads` (see the module docstring).
        """
        if type(payload) is not dict or len(payload) != 1:
            return None
        key, value = next(iter(payload.items()))
        try:
            if key == "dataframe_split":
                return self._split(value)
            if key in ("dataframe_records", "instances"):
                return self._records(value)
            if key == "inputs":
                return self._columnar(value)
        except (TypeError, ValueError, OverflowError):  # ragged or odd shapes numpy refuses
            return None
        return None

    def _split(self, split: Any) -> np.ndarray | None:
        if type(split) is not dict or len(split) != 2:
            return None
        columns, rows = split.get("columns"), split.get("data")
        if type(columns) is not list or type(rows) is not list:
            return None
        matrix = self._numbers(rows)
        if matrix is None:
            return None
        if columns == self._name_list:
            return matrix
        if len(columns) != self.width or set(columns) != self._name_set:
            return None  # missing, extra or duplicate columns: MLflow says which
        order = [columns.index(name) for name in self.names]
        return np.asfortranarray(matrix[:, order])

    def _records(self, records: Any) -> np.ndarray | None:
        if type(records) is not list:
            return None
        names, name_set = self.names, self._name_set
        for record in records:
            if type(record) is not dict or record.keys() != name_set:
                return None
        return self._numbers([[record[name] for name in names] for record in records])

    def _columnar(self, columns: Any) -> np.ndarray | None:
        if type(columns) is not dict or columns.keys() != self._name_set:
            return None
        by_column = self._numbers([columns[name] for name in self.names], rows_first=False)
        # (columns x rows) in C order, transposed: a Fortran-ordered (rows x columns) view.
        return None if by_column is None else by_column.T

    def _numbers(self, nested: list[Any], *, rows_first: bool = True) -> np.ndarray | None:
        """A float64 matrix of JSON numbers and booleans, Fortran-ordered when rows come first.

        numpy infers a numeric kind only when every value is a number or a boolean: strings,
        nulls, objects and nested lists give other kinds or dimensions, ragged rows raise.
        MLflow casts booleans in double columns to 1.0 and 0.0 as `astype` does here.
        """
        if not nested:
            return None
        inferred = np.array(nested)
        if inferred.ndim != 2 or inferred.dtype.kind not in _PAYLOAD_KINDS or not inferred.size:
            return None
        if (inferred.shape[1] if rows_first else inferred.shape[0]) != self.width:
            return None
        return np.asarray(inferred, dtype=np.float64, order="F" if rows_first else "C")

    def rows_matrix(self, rows: list[Any]) -> np.ndarray:
        """The float64 matrix of `/predict`'s bare rows (lists of numbers or records)."""
        if not rows:
            raise InvalidInput("body holds no rows: send at least one")
        if isinstance(rows[0], dict):
            return self._checked_records(rows)
        return self._checked_numbers(rows, what="body")

    def _checked_records(self, records: list[Any]) -> np.ndarray:
        values = []
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise InvalidInput(f"body[{index}] must be an object, got {json_type(record)}")
            missing = [name for name in self.names if name not in record]
            if missing:
                raise InvalidInput(f"body[{index}] is missing columns {missing}")
            values.append([record[name] for name in self.names])
        return self._checked_numbers(values, what="body")

    def _checked_numbers(self, rows: list[Any], *, what: str) -> np.ndarray:
        try:
            matrix = np.array(rows)
        except (ValueError, TypeError):
            raise InvalidInput(f"{what} rows must all have {self.width} values") from None
        if matrix.ndim != 2:
            raise InvalidInput(
                f"{what} must be a list of rows of {self.width} numbers each "
                f"(got a {matrix.ndim}-dimensional array)"
            )
        if matrix.dtype.kind not in _ROW_KINDS:
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


def _describe_values(matrix: np.ndarray) -> str:
    if matrix.dtype.kind == "b":
        return "booleans"
    if matrix.dtype.kind in "US":
        return "strings"
    return "nulls or mixed values"
