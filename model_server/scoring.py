"""Sends each scoring request to the fast path or to MLflow's scoring code; proves the fast path.

Called by the app (`app.py`) for `/invocations` and `/predict`. The fast path (a numpy
matrix from `signature_matrix.py`, predicted by the adaptive batcher) answers only inputs it has
proved equivalent: an exact plain-JSON Content-Type, a body orjson parses, a form
`SignatureColumns.payload_matrix` takes, and a prediction that succeeds. Anything else, and any
failure on the way, goes to MLflow's own code (`mlflow_protocol.invoke`), which then
answers exactly as `mlflow models serve` does.

`prove_fast_path` runs once after loading: both paths answer the model's serving example
and a synthetic frame; any difference in the bytes disables the fast path for the model.
`prove_batch_invariance` then checks that rows predicted inside a merged batch come out
bit-for-bit as they do alone (a regressor's BLAS sums may not: the last digit moves with
the batch's shape); if they do not, requests are predicted one by one, unbatched.

No request may stall the others: a body over `LARGE_BODY_BYTES` is parsed and turned into
a matrix in a worker thread, not on the event loop; one over `HUGE_BODY_BYTES` is parsed in
a child process (`body_decoder.py`: orjson holds the GIL, so a thread would not help); and a
request over `max_rows` rows is refused (413) before any matrix or frame is built.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from model_server.batching import AdaptiveBatcher
from model_server.body_decoder import HUGE_BODY_BYTES, BodyDecoder
from model_server.errors import InvalidInput, ModelServerError, PayloadTooLarge
from model_server.inputs import (
    as_scoring_payload,
    decode_json,
    json_type,
    row_count,
)
from model_server.loaded_model import LoadedModel
from model_server.mlflow_protocol import (
    FAST_CONTENT_TYPES,
    JSON,
    Answer,
    predictions_body,
)

LARGE_BODY_BYTES = 256 * 1024
Answered = Callable[[str, str | None, bytes, Any], None]
"""(endpoint, content type, body, predictions) of a request answered 200."""


def _ignore(endpoint: str, content_type: str | None, body: bytes, predictions: Any) -> None:
    return None


class Scorer:
    """Answers scoring requests for one loaded model."""

    def __init__(
        self,
        model: LoadedModel,
        batcher: AdaptiveBatcher | None,
        on_path: Callable[[str], None] = lambda path: None,
        *,
        max_rows: int = 10_000,
        on_answered: Answered = _ignore,
    ) -> None:
        self.model = model
        self.batcher = batcher
        self._on_path = on_path
        self._max_rows = max_rows
        self._on_answered = on_answered
        self.decoder = BodyDecoder(max_rows)

    async def invocations(self, body: bytes, content_type: str | None) -> Answer:
        """`/invocations`: exactly what `mlflow models serve` answers."""
        payload = await self._decode(body)
        self._check_rows(payload, body, content_type)
        if self.batcher is not None and content_type in FAST_CONTENT_TYPES:
            predictions = await self._fast(payload, large=len(body) > LARGE_BODY_BYTES)
            if predictions is not None:
                self._on_answered("/invocations", content_type, body, predictions)
                return Answer(200, predictions_body(predictions), JSON)
        answer = await self._mlflow(body, content_type)
        if answer.status == 200:
            self._on_answered("/invocations", content_type, body, _predictions_of(answer.body))
        return answer

    async def predict(self, body: bytes) -> Answer:
        """`/predict`: bare rows or any scoring format, answered as `{"prediction": [...]}`."""
        payload = await self._decode(body)
        from_orjson = payload is not None
        if not from_orjson:
            payload = await _off_loop_if_large(body, decode_json)  # a BOM, NaN...; or a 400
        self._check_rows(payload, body, JSON)
        original = body
        if isinstance(payload, list):
            columns = self.model.columns
            if columns is not None and self.batcher is not None:
                matrix = await _off_loop_if_large(payload, columns.rows_matrix, large=len(body))
                rows = (await self.batcher.predict(matrix)).tolist()
                self._on_path("fast")
                self._on_answered("/predict", JSON, original, rows)
                return _prediction_answer(rows)
            payload = as_scoring_payload(payload, _column_names(self.model))
            body = json.dumps(payload).encode()
        elif not isinstance(payload, dict):
            raise InvalidInput(
                "expected a JSON array of rows or a JSON object in one of MLflow's scoring "
                f"formats, got {json_type(payload)}"
            )
        elif from_orjson:
            predictions = await self._fast(payload, large=len(body) > LARGE_BODY_BYTES)
            if predictions is not None:
                listed = predictions.tolist()
                self._on_answered("/predict", JSON, original, listed)
                return _prediction_answer(listed)
        answer = await self._mlflow(body, JSON)
        if answer.status != 200:
            return answer
        # MLflow writes NaN for missing values, which orjson does not read.
        scored = json.loads(answer.body)
        predictions = scored.get("predictions", scored)
        self._on_answered("/predict", JSON, original, predictions)
        return _prediction_answer(predictions)

    async def _decode(self, body: bytes) -> Any:
        """The body as orjson reads it (None if it cannot), off the event loop when large."""
        if len(body) <= HUGE_BODY_BYTES:
            return await _off_loop_if_large(body, _orjson_or_none)
        rows, payload = await self.decoder.decode(body)
        self._refuse_over(rows)
        return payload

    def _check_rows(self, payload: Any, body: bytes, content_type: str | None) -> None:
        rows = row_count(payload)
        if payload is None and content_type and "csv" in content_type.lower():
            rows = body.count(b"\n")
        self._refuse_over(rows)

    def _refuse_over(self, rows: int) -> None:
        if rows > self._max_rows:
            raise PayloadTooLarge(
                f"the request holds {rows} rows; the limit is {self._max_rows} "
                "(MODEL_SERVER_MAX_ROWS): send fewer rows per request"
            )

    async def _fast(self, payload: Any, *, large: bool = False) -> np.ndarray | None:
        """Predictions for an orjson-parsed payload the fast path takes, else None."""
        columns, batcher = self.model.columns, self.batcher
        if columns is None or batcher is None:
            return None
        matrix = (
            await asyncio.to_thread(columns.payload_matrix, payload)
            if large
            else (columns.payload_matrix(payload))
        )
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
        return await asyncio.to_thread(self.model.invoke_mlflow, body, content_type)


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
        matrix = columns.payload_matrix(_orjson_or_none(body))
        if matrix is None:
            continue
        theirs = model.invoke_mlflow(body, JSON)
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


# Batch shapes the proof tries: BLAS kernels switch at small sizes and at block boundaries.
_PROOF_BATCH_COPIES = (2, 5, 16, 43)
_PROOF_ROWS = 64
_PROOF_BATCH_SIZES = (2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 64)


def prove_batch_invariance(model: LoadedModel) -> str | None:
    """Why merging this model's rows into one predict call would change an answer, or None.

    Two ways requests meet in a batch, both tried: single rows (the common request) merged
    with each other, each row compared with its prediction alone, and a multi-row request
    placed among others. A regressor's BLAS dot products may take another kernel for a row
    depending on the batch's size and the row's place in it; a label rarely changes.
    """
    columns = model.columns
    if columns is None or model.estimator is None:
        return model.slow_reason
    rng = np.random.default_rng(0)
    rows = rng.normal(loc=2.0, scale=3.0, size=(_PROOF_ROWS, columns.width))
    each = [predictions_body(model.predict_matrix(rows[i : i + 1])) for i in range(len(rows))]
    for size in _PROOF_BATCH_SIZES:
        got = model.predict_matrix(np.asfortranarray(rows[:size]))
        for i in range(size):
            if predictions_body(got[i : i + 1]) != each[i]:
                return f"a row predicted in a batch of {size} differs from the same row alone"
    alone = np.asfortranarray(rng.normal(size=(3, columns.width)))
    expected = model.predict_matrix(alone)
    for copies in _PROOF_BATCH_COPIES:
        others = rng.normal(size=(copies * len(alone), columns.width))
        merged = np.concatenate([others, alone, others])
        start = len(others)
        got = model.predict_matrix(merged)[start : start + len(alone)]
        if predictions_body(got) != predictions_body(expected):
            return f"a row predicted in a batch of {len(merged)} differs from the same row alone"
    return None


async def _off_loop_if_large(
    value: Any, work: Callable[[Any], Any], *, large: int | None = None
) -> Any:
    """`work(value)`, in a worker thread when the body it comes from is large."""
    size = large if large is not None else len(value)
    if size > LARGE_BODY_BYTES:
        return await asyncio.to_thread(work, value)
    return work(value)


def _predictions_of(body: bytes | str) -> Any:
    """The predictions in MLflow's answer (NaN included), or None when it has none."""
    try:
        scored = json.loads(body)
    except ValueError:
        return None
    return scored.get("predictions") if isinstance(scored, dict) else scored


def _orjson_or_none(body: bytes) -> Any:
    """The payload as orjson reads it (what `SignatureColumns.payload_matrix` needs), or None."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # NaN, a BOM, UTF-16, >64-bit ints...: MLflow's parser decides


def _column_names(model: LoadedModel) -> list[str] | None:
    if model.columns is not None:
        return list(model.columns.names)
    schema = model.input_schema
    if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
        return None
    return list(schema.input_names())


def _prediction_answer(predictions: Any) -> Answer:
    return Answer(200, orjson.dumps({"prediction": predictions}), JSON)
