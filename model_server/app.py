"""The model server's HTTP app: `/predict`, `/invocations`, `/model-info`, health, metrics.

`create_app` is called by `bluegreen serve model` and by the tests. Endpoints are thin:
parsing lives in `inputs.py`, loading and prediction in `predictor.py`, batching in
`batching.py`; errors map to HTTP in `_error_response` only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_server.batching import AdaptiveBatcher
from model_server.errors import (
    InvalidInput,
    ModelLoadError,
    ModelServerError,
    NotReady,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMedia,
)
from model_server.inputs import SCORING_FORMATS, decode_json
from model_server.metrics import ServingMetrics
from model_server.predictor import LoadedModel, load_pinned_model, predictions_json
from model_server.settings import ModelServerSettings
from plumbing.auth import bearer_matches

log = logging.getLogger("bluegreen.model_server")

# Estimators fitted on a DataFrame warn on every numpy predict; the fast path checks
# column names itself, so the warning is noise (and costs time on the hot path).
warnings.filterwarnings("ignore", message="X does not have valid feature names")

_JSON = "application/json"
_ROWS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "array", "items": {"type": "number"}},
}
_SCORING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One of MLflow's scoring formats.",
    "properties": {
        "dataframe_split": {
            "type": "object",
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "data": _ROWS_SCHEMA,
            },
            "required": ["data"],
        },
        "dataframe_records": {"type": "array", "items": {"type": "object"}},
        "instances": {"type": "array"},
        "inputs": {},
        "params": {"type": "object"},
    },
}
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {_JSON: {"schema": {"oneOf": [_ROWS_SCHEMA, _SCORING_SCHEMA]}}},
    }
}
_INVOCATIONS_BODY = {
    "requestBody": {"required": True, "content": {_JSON: {"schema": _SCORING_SCHEMA}}}
}

Loader = Callable[[ModelServerSettings], LoadedModel]


@dataclass
class ServingState:
    """What the process is serving right now."""

    settings: ModelServerSettings
    metrics: ServingMetrics
    model: LoadedModel | None = None
    batcher: AdaptiveBatcher | None = None
    load_error: str | None = None
    live: bool = True

    def require_model(self) -> LoadedModel:
        if self.model is None:
            raise NotReady(self.load_error or "model is still loading")
        return self.model


class ServingStateUpdate(BaseModel):
    """Whether this color is the live one; standbys close keep-alive connections."""

    live: bool


def create_app(
    settings: ModelServerSettings,
    *,
    loader: Loader = load_pinned_model,
    on_load_failure: Callable[[str], None] | None = None,
) -> FastAPI:
    """Build the app; the model loads in the background after start-up."""
    state = ServingState(
        settings=settings,
        metrics=ServingMetrics(
            color=settings.color, version=settings.model_version, model=settings.model_name
        ),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        loading = asyncio.create_task(_load_and_warm(state, loader, on_load_failure))
        yield
        loading.cancel()
        if state.batcher is not None:
            await state.batcher.stop()

    app = FastAPI(
        title="bluegreen model server",
        version="0.1.0",
        lifespan=lifespan,
        description="Serves one pinned MLflow model version for one color.",
    )
    app.state.serving = state
    app.add_middleware(ServingHeaders, state=state)

    @app.exception_handler(ModelServerError)
    async def _domain_error(request: Request, exc: ModelServerError) -> Response:
        return _error_response(exc.status_code, exc.error_code, exc.message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return _error_response(500, "INTERNAL_ERROR", "internal error; see the server log")

    @app.post("/predict", openapi_extra=_PREDICT_BODY, summary="Predict on rows")
    async def predict(request: Request) -> Response:
        """Rows (`[[...]]`) or any MLflow scoring format → `{"prediction": [...]}`."""
        model = state.require_model()
        payload = decode_json(await _read_json_body(request, state.settings.max_body_bytes))
        if model.fast and state.batcher is not None:
            matrix = model.layout.matrix(payload, allow_bare_rows=True)  # type: ignore[union-attr]
            predictions: Any = await state.batcher.predict(matrix)
        else:
            predictions = await asyncio.to_thread(_predict_generic, model, payload)
        return _json_response({"prediction": predictions})

    @app.post("/invocations", openapi_extra=_INVOCATIONS_BODY, summary="MLflow scoring protocol")
    async def invocations(request: Request) -> Response:
        """Exactly what `mlflow models serve` answers: `{"predictions": [...]}`."""
        model = state.require_model()
        content_type = request.headers.get("content-type", "")
        body = await _read_body(request, state.settings.max_body_bytes)
        if model.fast and state.batcher is not None and _is_plain_json(content_type):
            payload = decode_json(body)
            if not (isinstance(payload, dict) and "params" in payload):
                matrix = model.layout.matrix(payload, allow_bare_rows=False)  # type: ignore[union-attr]
                return _json_response({"predictions": await state.batcher.predict(matrix)})
        if not body.strip():
            raise InvalidInput("request body is empty")
        status, text, media_type = await asyncio.to_thread(
            model.invocations, body, content_type or _JSON
        )
        if status == 415:
            raise UnsupportedMedia(text)
        return Response(content=text, status_code=status, media_type=media_type)

    @app.get("/model-info", summary="The pinned version this color serves")
    async def model_info() -> dict[str, Any]:
        model = state.require_model()
        return {
            "model_name": model.name,
            "version": model.version,
            "run_id": model.run_id,
            "model_uri": model.model_uri,
            "color": state.settings.color,
            "loaded_at": model.loaded_at,
            "load_seconds": round(model.load_seconds, 3),
            "fast_path": model.fast,
            "live": state.live,
        }

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded and warmed up")
    async def readyz() -> dict[str, str]:
        model = state.require_model()
        return {"status": "ready", "version": model.version}

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.put("/serving-state", summary="Tell this color whether it is live")
    async def serving_state(update: ServingStateUpdate, request: Request) -> dict[str, bool]:
        _check_token(request, state.settings.admin_token)
        state.live = update.live
        return {"live": state.live}

    return app


async def _load_and_warm(
    state: ServingState, loader: Loader, on_load_failure: Callable[[str], None] | None
) -> None:
    settings = state.settings
    try:
        model = await asyncio.to_thread(loader, settings)
        if model.fast:
            batcher = AdaptiveBatcher(
                model.predict_matrix,
                max_rows=settings.max_batch_rows,
                on_batch=state.metrics.observe_batch,
            )
            batcher.start()
            state.batcher = batcher
        await _warm_up(model, state.batcher)
    except (ModelLoadError, ModelServerError) as exc:
        reason = str(exc)
        _fail(
            state,
            f"cannot serve models:/{settings.model_name}/{settings.model_version}: {reason}",
            on_load_failure,
        )
        return
    except Exception as exc:
        _fail(
            state,
            f"cannot serve models:/{settings.model_name}/{settings.model_version}: "
            f"{type(exc).__name__}: {exc}",
            on_load_failure,
        )
        return
    # MLflow, pandas and scikit-learn leave millions of long-lived objects behind; a full
    # collection walking them stalls every request for 100+ ms (the p99 in bench/).
    # Freezing moves them out of the collector's sight; new garbage is still collected.
    gc.collect()
    gc.freeze()
    state.model = model
    state.metrics.loaded(model.load_seconds)
    log.info(
        "ready: %s (%s path) as %s in %.1f s",
        model.model_uri,
        "fast" if model.fast else "pyfunc",
        settings.color,
        model.load_seconds,
    )


def _fail(state: ServingState, reason: str, on_load_failure: Callable[[str], None] | None) -> None:
    state.load_error = reason.replace("\n", " ")
    log.error(state.load_error)
    if on_load_failure is not None:
        on_load_failure(state.load_error)


async def _warm_up(model: LoadedModel, batcher: AdaptiveBatcher | None) -> None:
    """One real prediction before turning ready, with the model's own serving example."""
    example = model.serving_input_example
    payload: Any = orjson.loads(example) if example else None
    if model.fast and batcher is not None:
        assert model.layout is not None
        matrix = (
            model.layout.matrix(payload, allow_bare_rows=True)
            if payload is not None
            else np.zeros((1, model.layout.width))
        )
        await batcher.predict(matrix)
    elif payload is not None:
        await asyncio.to_thread(_predict_generic, model, payload)


def _predict_generic(model: LoadedModel, payload: Any) -> Any:
    """The pyfunc path for models the fast path does not cover."""
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    schema = model.pyfunc.metadata.get_input_schema()
    params = None
    if isinstance(payload, list):
        if not payload:
            raise InvalidInput("body holds no rows: send at least one")
        names = schema.input_names() if schema is not None and schema.has_input_names() else None
        try:
            data = pd.DataFrame(payload, columns=names if isinstance(payload[0], list) else None)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"rows do not fit the model's columns: {exc}") from None
    elif isinstance(payload, dict):
        params = payload.get("params")
        try:
            data = infer_and_parse_data(
                {k: v for k, v in payload.items() if k in SCORING_FORMATS}, schema
            )
        except MlflowException as exc:
            raise InvalidInput(exc.message.split("\n")[0]) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInput(f"input does not parse: {exc}") from None
    else:
        raise InvalidInput("expected a JSON array of rows or an object in an MLflow scoring format")
    return predictions_json(model.predict_frame(data, params))


async def _read_json_body(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type and not _is_json(content_type):
        raise UnsupportedMedia(f"Content-Type must be {_JSON}, got {content_type!r}")
    return await _read_body(request, limit)


async def _read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing (413) as soon as it passes the limit, chunked or not."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == _JSON or media.endswith("+json")


def _is_plain_json(content_type: str) -> bool:
    return content_type == "" or content_type.split(";", 1)[0].strip().lower() == _JSON


def _check_token(request: Request, token: str | None) -> None:
    if not bearer_matches(request.headers.get("authorization"), token):
        raise Unauthorized("missing or wrong bearer token")


def _json_response(content: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type=_JSON,
    )


def _error_response(status_code: int, error_code: str, message: str) -> Response:
    return _json_response({"error_code": error_code, "message": message}, status_code)


class ServingHeaders:
    """Pure ASGI middleware: identity headers, the body-size gate, and request metrics.

    Written without `BaseHTTPMiddleware`, which costs a task per request on the hot path.
    """

    _METERED = frozenset({"/predict", "/invocations"})

    def __init__(self, app: ASGIApp, *, state: ServingState) -> None:
        self.app = app
        self.state = state
        settings = state.settings
        self._identity = [
            (b"x-model-name", settings.model_name.encode()),
            (b"x-model-version", settings.model_version.encode()),
            (b"x-serving-color", settings.color.encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state = self.state

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.extend(self._identity)
                if not state.live:
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        too_large = _declared_length(scope) > state.settings.max_body_bytes
        try:
            if too_large:
                limit = state.settings.max_body_bytes
                await _error_response(
                    413,
                    PayloadTooLarge.error_code,
                    f"request body exceeds the limit of {limit} bytes",
                )(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            path = scope["path"]
            if path in self._METERED:
                state.metrics.observe_request(path, status, time.perf_counter() - started)


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
