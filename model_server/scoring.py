"""Sends each scoring request to the fast path or to MLflow's scoring code; proves the fast path.

Called by the app (`app.py`) for `/invocations` and `/predict`. The fast path (a numpy
matrix from `fastpath.py`, predicted by the adaptive batcher) answers only inputs it has
proved equivalent: an exact plain-JSON Content-Type, a body orjson parses, a form
`FastColumns.recognize` takes, and a prediction that succeeds. Anything else, and any
failure on the way, goes to MLflow's own code (`mlflow_protocol.invoke`), which then
answers exactly as `mlflow models serve` does.

`prove_fast_path` runs once after loading: both paths answer the model's serving example
and a synthetic frame; any difference in the bytes disables the fast path for the model.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from model_server.batching import AdaptiveBatcher
from model_server.errors import InvalidInput, ModelServerError
from model_server.inputs import ColumnLayout, as_scoring_payload, decode_json, json_type
from model_server.mlflow_protocol import (
    FAST_CONTENT_TYPES,
    JSON,
    Answer,
    invoke,
    predictions_body,
)
from model_server.predictor import LoadedModel


class Scorer:
    """Answers scoring requests for one loaded model."""

    def __init__(
        self,
        model: LoadedModel,
        batcher: AdaptiveBatcher | None,
        on_path: Callable[[str], None] = lambda path: None,
    ) -> None:
        self.model = model
        self.batcher = batcher
        self._on_path = on_path
        self._layout = ColumnLayout(model.columns.names) if model.columns is not None else None

    async def invocations(self, body: bytes, content_type: str | None) -> Answer:
        """`/invocations`: exactly what `mlflow models serve` answers."""
        if self.batcher is not None and content_type in FAST_CONTENT_TYPES:
            predictions = await self._fast(_orjson_or_none(body))
            if predictions is not None:
                return Answer(200, predictions_body(predictions), JSON)
        return await self._mlflow(body, content_type)

    async def predict(self, body: bytes) -> Answer:
        """`/predict`: bare rows or any scoring format, answered as `{"prediction": [...]}`."""
        payload = _orjson_or_none(body)
        from_orjson = payload is not None
        if not from_orjson:
            payload = decode_json(body)  # a BOM, UTF-16, NaN...; or a clear 400
        if isinstance(payload, list):
            if self._layout is not None and self.batcher is not None:
                rows = await self.batcher.predict(self._layout.rows(payload))
                self._on_path("fast")
                return _prediction_answer(rows.tolist())
            payload = as_scoring_payload(payload, _column_names(self.model))
            body = json.dumps(payload).encode()
        elif not isinstance(payload, dict):
            raise InvalidInput(
                "expected a JSON array of rows or a JSON object in one of MLflow's scoring "
                f"formats, got {json_type(payload)}"
            )
        elif from_orjson:
            predictions = await self._fast(payload)
            if predictions is not None:
                return _prediction_answer(predictions.tolist())
        answer = await self._mlflow(body, JSON)
        if answer.status != 200:
            return answer
        # MLflow writes NaN for missing values, which orjson does not read.
        scored = json.loads(answer.body)
        return _prediction_answer(scored.get("predictions", scored))

    async def _fast(self, payload: Any) -> np.ndarray | None:
        """Predictions for an orjson-parsed payload the fast path takes, else None."""
        columns, batcher = self.model.columns, self.batcher
        if columns is None or batcher is None:
            return None
        matrix = columns.recognize(payload)
        if matrix is None:
            return None
        try:
            predictions = await batcher.predict(matrix)
        except ModelServerError:
            return None  # MLflow's code says what is wrong, in its words
        self._on_path("fast")
        return predictions

    async def _mlflow(self, body: bytes, content_type: str | None) -> Answer:
        self._on_path("mlflow")
        model = self.model
        return await asyncio.to_thread(invoke, model.pyfunc, model.input_schema, body, content_type)


def prove_fast_path(model: LoadedModel) -> str | None:
    """Why the fast path would answer differently from MLflow on this model, or None."""
    columns = model.columns
    if columns is None or model.estimator is None:
        return model.slow_reason
    synthetic = {
        "dataframe_split": {
            "columns": list(columns.names),
            "data": [[0.0] * columns.width, [1.0] * columns.width, list(range(columns.width))],
        }
    }
    bodies = [json.dumps(synthetic).encode()]
    if model.serving_input_example:
        bodies.append(model.serving_input_example.encode())
    for body in bodies:
        matrix = columns.recognize(_orjson_or_none(body))
        if matrix is None:
            continue
        theirs = invoke(model.pyfunc, model.input_schema, body, JSON)
        try:
            ours = predictions_body(model.predict_matrix(matrix))
        except ModelServerError as exc:
            return f"the estimator refuses a numpy matrix ({exc.message})"
        theirs_body = theirs.body.encode() if isinstance(theirs.body, str) else theirs.body
        if theirs.status != 200 or theirs_body != ours:
            return (
                f"answers differ on {body[:80]!r}: MLflow {theirs_body!r:.120}, ours {ours!r:.120}"
            )
    return None


def _orjson_or_none(body: bytes) -> Any:
    """The payload as orjson reads it (what `FastColumns.recognize` needs), or None."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # NaN, a BOM, UTF-16, >64-bit ints...: MLflow's parser decides


def _column_names(model: LoadedModel) -> list[str] | None:
    schema = model.input_schema
    if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
        return None
    return list(schema.input_names())


def _prediction_answer(predictions: Any) -> Answer:
    return Answer(200, orjson.dumps({"prediction": predictions}), JSON)
