"""The model server's HTTP app: MLflow's scoring protocol, `/predict`, `/model-info`, health.

`create_app` is called by `python -m model_server` (`main.py`) and by the tests. Endpoints
are thin: loading lives in `lifecycle.py` and `loader.py`, the choice between the fast
path and MLflow's own scoring code in `scoring.py`, identity headers and the token and
body-size gates in `middleware.py`; our errors map to HTTP in the exception handlers only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from model_server.errors import ModelServerError, UnsupportedMedia
from model_server.hot_path import ScoringHotPath, is_json, read_body
from model_server.lifecycle import Loader, load_and_warm, stop
from model_server.loader import load_pinned_model
from model_server.metrics import ServingMetrics
from model_server.middleware import ServingHeaders
from model_server.mlflow_protocol import JSON, MLFLOW_VERSION, PING_BODY
from model_server.responses import answer_response, error_response
from model_server.settings import ModelServerSettings
from model_server.shadow import (
    BATCH_MAX_ITEMS,
    MAX_MIRROR_RPS,
    ShadowComparer,
    ShadowMirror,
)
from model_server.state import ServingState

log = logging.getLogger("bluegreen.model_server")

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
        "content": {JSON: {"schema": {"oneOf": [_ROWS_SCHEMA, _SCORING_SCHEMA]}}},
    }
}
_INVOCATIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": _SCORING_SCHEMA},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


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
    serving_metrics = ServingMetrics(
        color=settings.color, version=settings.model_version, model=settings.model_name
    )
    state = ServingState(
        settings=settings,
        metrics=serving_metrics,
        mirror=ShadowMirror(token=settings.admin_token, observe=serving_metrics.observe_mirror),
    )
    comparer = ShadowComparer(lambda body, ct, endpoint: _predictions(state, body, ct, endpoint))

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        loading = asyncio.create_task(load_and_warm(state, loader, on_load_failure))
        yield
        loading.cancel()
        await state.mirror.stop()
        await stop(state)

    app = FastAPI(
        title="bluegreen model server",
        version="0.1.0",
        lifespan=lifespan,
        description="Serves one pinned MLflow model version for one color.",
    )
    app.state.serving = state
    app.add_middleware(ScoringHotPath, state=state)  # inside ServingHeaders: headers, metrics
    app.add_middleware(ServingHeaders, state=state)

    @app.exception_handler(ModelServerError)
    async def _domain_error(request: Request, exc: ModelServerError) -> Response:
        return error_response(exc.status_code, exc.error_code, exc.message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, "INTERNAL_ERROR", "internal error; see the server log")

    @app.post("/predict", openapi_extra=_PREDICT_BODY, summary="Predict on rows")
    async def predict(request: Request) -> Response:
        """Rows (`[[...]]`) or any MLflow scoring format → `{"prediction": [...]}`."""
        scorer = state.require_scorer()
        content_type = request.headers.get("content-type", "")
        if content_type and not is_json(content_type):
            raise UnsupportedMedia(f"Content-Type must be {JSON}, got {content_type!r}")
        body = await read_body(request.scope, request.receive, state.settings.max_body_bytes)
        return answer_response(await scorer.predict(body))

    @app.post("/invocations", openapi_extra=_INVOCATIONS_BODY, summary="MLflow scoring protocol")
    async def invocations(request: Request) -> Response:
        """Exactly what `mlflow models serve` answers: `{"predictions": [...]}`."""
        scorer = state.require_scorer()
        content_type = request.headers.get("content-type")
        body = await read_body(request.scope, request.receive, state.settings.max_body_bytes)
        return answer_response(await scorer.invocations(body, content_type))

    async def ping() -> Response:
        """MLflow's health check: 200 once the model is loaded, 404 before (as MLflow's code)."""
        status = 200 if state.scorer is not None else 404
        return Response(content=PING_BODY, status_code=status, media_type=JSON)

    app.get("/ping", summary="MLflow's health check")(ping)
    app.get("/health", summary="MLflow's health check (same as /ping)")(ping)

    @app.get("/version", summary="The MLflow version serving the model")
    async def version() -> Response:
        return Response(content=MLFLOW_VERSION, status_code=200, media_type=JSON)

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
            "batching": model.fast and model.unbatched_reason is None,
            # Whether MLflow's own scoring code is in memory: the fast path alone needs none
            # of it; the first request only MLflow can answer loads it.
            "mlflow_scoring_loaded": model.pyfunc is not None,
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
    async def serving_state(update: ServingStateUpdate) -> dict[str, bool]:
        state.live = update.live
        return {"live": state.live}

    @app.put("/shadow/mirror", summary="Mirror a sample of live requests to the standby")
    async def start_mirror(start: MirrorStart) -> dict[str, Any]:
        session = await state.mirror.start(
            session=start.session,
            target=start.target,
            sample=start.sample,
            max_rps=start.max_rps,
            max_seconds=start.max_seconds,
        )
        return {"session": session.session, "mirroring": True, "max_rps": session.max_rps}

    @app.delete(
        "/shadow/mirror", summary="Stop mirroring; what was mirrored, skipped by the cap, dropped"
    )
    async def stop_mirror(session: str | None = None) -> dict[str, Any]:
        """Stops whatever mirror runs; `session` names one that may have ended by itself
        already (past its `max_seconds`), whose counts are then answered."""
        ended = await state.mirror.stop()
        if ended is not None:
            return ended.counts()
        expired = state.mirror.counts(session) if session else None
        return expired or {"session": None, **_NOTHING_MIRRORED}

    @app.post("/shadow/compare", summary="Predict on mirrored requests and compare")
    async def shadow_compare(mirrored: MirroredBatch | MirroredRequest) -> dict[str, int]:
        if isinstance(mirrored, MirroredRequest):
            compared = await comparer.compare(mirrored.model_dump())
        else:
            compared = await comparer.compare_batch(
                mirrored.session, [one.model_dump() for one in mirrored.requests]
            )
        state.metrics.observe_shadow(compared["rows"], compared["agreed"])
        return compared

    @app.get("/shadow/report", summary="What this color mirrored or compared in one session")
    async def shadow_report(session: str) -> dict[str, Any]:
        """The standby's comparison; on the live color, also what it mirrored, skipped by
        the cap and dropped."""
        mirrored = state.mirror.counts(session) or {"max_rps": None, **_NOTHING_MIRRORED}
        return {**comparer.report(session), **mirrored}

    return app


_NOTHING_MIRRORED = {"mirrored": 0, "skipped_by_cap": 0, "dropped": 0, "failed": 0}


class MirrorStart(BaseModel):
    session: str = Field(min_length=1, max_length=128)
    target: str = Field(pattern=r"^https?://[^/]+$", max_length=512)
    sample: float = Field(default=1.0, gt=0, le=1)
    max_rps: float = Field(gt=0, le=MAX_MIRROR_RPS)
    """This pod's cap on mirrored requests a second; the controller splits the color's
    between its live pods. Required: a mirror without a cap costs what the traffic costs."""
    max_seconds: float = Field(default=3600.0, gt=0, le=7200)
    """Mirroring stops by itself after this, should the controller never say stop."""


class MirroredOne(BaseModel):
    endpoint: Literal["/predict", "/invocations"]
    content_type: str = Field(default="", max_length=256)
    body: str = Field(max_length=12 * 1024 * 1024)
    live: list[Any]


class MirroredRequest(MirroredOne):
    session: str = Field(min_length=1, max_length=128)


class MirroredBatch(BaseModel):
    """What a live pod's sender posts: up to `BATCH_MAX_ITEMS` mirrored requests."""

    session: str = Field(min_length=1, max_length=128)
    requests: list[MirroredOne] = Field(min_length=1, max_length=BATCH_MAX_ITEMS)


async def _predictions(state: ServingState, body: bytes, content_type: str, endpoint: str) -> Any:
    """What this color answers to a mirrored request; raises when it would not answer 200."""
    scorer = state.require_scorer()
    if endpoint == "/predict":
        answer = await scorer.predict(body)
    else:
        answer = await scorer.invocations(body, content_type or None)
    if answer.status != 200:
        raise ModelServerError(f"answered {answer.status}")
    scored = json.loads(answer.body)
    if isinstance(scored, dict):
        return scored.get("prediction", scored.get("predictions"))
    return scored
