"""Reading request bodies before any model sees them: JSON, row counts, bare rows' meaning.

Called by `scoring.py`: `decode_json` parses a body (or says clearly why not), `row_count`
sizes a payload for the per-request row cap before anything is built, and
`as_scoring_payload` says what `/predict`'s bare rows mean in MLflow's scoring protocol for
models off the fast path (on it, `signature_matrix.SignatureColumns.rows_matrix` turns them
into the matrix). Every rejection is an `InvalidInput` whose message names the problem.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from model_server.errors import InvalidInput


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


def json_type(value: Any) -> str:
    """How a JSON value is named in messages: 'an object', 'a list', 'null', ..."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
