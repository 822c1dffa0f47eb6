"""The controller's HTTP API; errors map to HTTP here and nowhere else.

`create_app` is called by `controller.main` and the tests. Endpoints are synchronous: the
engine blocks on HTTP and the backends, and FastAPI runs such handlers in its thread
pool. Every error answer, ours or the framework's, is `{"error": ..., "detail": ...}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from controller.domain import Golden, Operation
from controller.domain.analysis import (
    AnalysisPolicy,
    AnalysisThresholds,
    MirrorRate,
    Share,
    WindowSeconds,
)
from controller.engine import ReleaseEngine
from controller.errors import (
    BadRequest,
    BluegreenError,
    PayloadTooLarge,
    ReleaseAborted,
    Unauthorized,
)
from controller.follow import AliasFollower
from controller.metrics import ControllerMetrics
from controller.page import page_router
from plumbing.auth import bearer_matches
from plumbing.body_limit import BodyTooLarge, LimitBody

log = logging.getLogger("bluegreen.api")


class SwitchRequest(BaseModel):
    """Release one version: give exactly one of `version` or `alias`."""

    version: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,8}$", examples=["2"])
    alias: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9_\-]+$",
        examples=["champion"],
    )
    model: str | None = Field(default=None, max_length=255)
    golden: Golden | None = None
    shadow_s: WindowSeconds | None = None
    """Seconds of mirrored live traffic before the flip; default from settings (0: off)."""
    shadow_max_rps: MirrorRate | None = None
    """Requests the live color mirrors a second at most; default `BLUEGREEN_SHADOW_MAX_RPS`."""
    min_agreement: Share | None = None
    """Shadow gate: share of predictions that must agree; unset reports only."""
    bake_s: WindowSeconds | None = None
    """Seconds of bake after the flip; default `BLUEGREEN_BAKE_S` (0: off)."""
    analysis: AnalysisThresholds | None = None
    """Thresholds for this release (any subset; the rest from settings)."""
    pause: bool | None = None
    """Stop before the flip with status `paused` until `POST /promote` or `POST /abort`;
    default `BLUEGREEN_PAUSE`."""
    allow_schema_change: bool = False
    """Release even when the new input signature refuses what the live version accepts."""

    @model_validator(mode="after")
    def _one_target(self) -> SwitchRequest:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of 'version' or 'alias'")
        return self

    def policy(self, defaults: AnalysisPolicy) -> AnalysisPolicy:
        """The settings' policy with whatever this request sets on top."""
        given = self.model_dump(
            include={"shadow_s", "shadow_max_rps", "min_agreement", "bake_s"}, exclude_none=True
        )
        thresholds = self.analysis.model_dump(exclude_unset=True) if self.analysis else {}
        policy = AnalysisPolicy.model_validate({**defaults.model_dump(), **thresholds, **given})
        _check_the_gate_can_be_judged(policy)
        return policy


def _check_the_gate_can_be_judged(policy: AnalysisPolicy) -> None:
    """A gate the window cannot gather enough comparisons for would let the release through
    unjudged (inconclusive): refused before anything moves."""
    if not policy.shadow_s or policy.min_agreement is None:
        return
    most = policy.shadow_s * policy.shadow_max_rps
    if most < policy.min_requests:
        raise BadRequest(
            f"a {policy.shadow_s:g} s shadow window mirrors at most {most:g} requests at "
            f"shadow_max_rps {policy.shadow_max_rps:g}, and the gate needs min_requests "
            f"{policy.min_requests}: raise shadow_s or shadow_max_rps"
        )


class RollbackRequest(BaseModel):
    """Empty: back to the version live before. `version`: any of the recent live ones."""

    version: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,8}$", examples=["5"])


class ErrorBody(BaseModel):
    error: str
    detail: str
    retryable: bool = False
    operation: Operation | None = None


WEBHOOK_PATH = "/webhooks/mlflow"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 409, 422, 502, 503, 504)
}
_HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def create_app(
    engine: ReleaseEngine,
    *,
    token: str | None,
    metrics: ControllerMetrics,
    max_body_bytes: int,
    pause_by_default: bool = False,
    follower: AliasFollower | None = None,
) -> FastAPI:
    """The API over one engine; `metrics` must be the registry the engine reports to."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Off the start-up path: the port binds at once; until recovery settles, a new
        # operation meets the lock recovery holds and gets 409.
        recovery = asyncio.create_task(asyncio.to_thread(_recover, engine))
        if follower is not None:
            follower.start()
        yield
        if follower is not None:
            await asyncio.to_thread(follower.stop)
        await asyncio.wait([recovery], timeout=5)

    app = FastAPI(
        title="bluegreen controller",
        version="0.1.0",
        description="Releases MLflow model versions blue/green: resolve, stage, verify, "
        "[shadow], [pause], promote, [bake], roll back.",
        lifespan=lifespan,
    )

    app.add_middleware(LimitBody, max_bytes=max_body_bytes)

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Checked before anything reads the body: an unauthenticated caller learns nothing.
        # MLflow's webhook deliveries carry a signature instead, checked by the follower.
        signed = follower is not None and request.url.path == WEBHOOK_PATH
        if (
            request.method not in _SAFE_METHODS
            and not signed
            and not bearer_matches(request.headers.get("authorization"), token)
        ):
            return error_response(Unauthorized("this call needs 'Authorization: Bearer <token>'"))
        return await call_next(request)

    @app.exception_handler(BluegreenError)
    async def _domain_error(request: Request, exc: BluegreenError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(PayloadTooLarge(str(exc)))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return error_response(BadRequest(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps body-read errors in a 400
            return error_response(PayloadTooLarge(str(exc.__cause__)))
        code = _HTTP_ERRORS.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "detail": f"{request.method} {request.url.path}: {exc.detail}"},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(BluegreenError("internal error; see the controller log"))

    app.include_router(page_router(engine, token_required=bool(token)))

    @app.get("/status", responses=_ERRORS)
    def status() -> dict[str, Any]:
        """Which color is live, what each color holds, and any running operation."""
        return engine.status()

    @app.post("/switch", responses=_ERRORS, status_code=200)
    def switch(
        request: SwitchRequest,
        response: Response,
        wait: Annotated[bool, Query(description="false: answer 202 at once")] = True,
    ) -> Operation:
        """Release a version: resolve, stage into the standby, verify, promote."""
        if request.model is not None and request.model != engine.model:
            raise BadRequest(f"this controller releases {engine.model!r}, not {request.model!r}")
        op = engine.switch(
            version=request.version,
            alias=request.alias,
            golden=request.golden,
            analysis=request.policy(engine.analysis_defaults),
            pause=pause_by_default if request.pause is None else request.pause,
            allow_schema_change=request.allow_schema_change,
            wait=wait,
        )
        if op.status == "running":
            response.status_code = 202
            response.headers["Location"] = f"/operations/{op.id}"
        return op

    @app.post("/promote", responses=_ERRORS)
    def promote(
        response: Response,
        wait: Annotated[bool, Query(description="false: answer 202 at once")] = True,
    ) -> Operation:
        """Continue the paused release: flip, then bake. 409 `not_paused` when none is."""
        op = engine.promote(wait=wait)
        if op.status == "running":
            response.status_code = 202
            response.headers["Location"] = f"/operations/{op.id}"
        return op

    @app.post("/abort", responses=_ERRORS)
    def abort() -> Operation:
        """End the paused or running release before its flip (during a bake: roll back)."""
        return engine.abort()

    @app.post("/rollback", responses=_ERRORS)
    def rollback(request: RollbackRequest | None = None) -> Operation:
        """Flip back to the version live before, or to `version` (staged if the standby
        does not hold it)."""
        return engine.rollback(version=request.version if request else None)

    @app.get("/operations/{operation_id}", responses=_ERRORS)
    def operation(operation_id: str) -> Operation:
        return engine.operation(operation_id)

    @app.get("/history")
    def history(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[Operation]:
        """Finished operations, newest first."""
        return engine.history(limit)

    if follower is not None:

        @app.post(WEBHOOK_PATH, include_in_schema=False)
        async def mlflow_webhook(request: Request) -> JSONResponse:
            """MLflow registry webhook deliveries, authenticated by their signature."""
            delivery = follower.on_webhook(dict(request.headers), await request.body())
            return JSONResponse(delivery.body, status_code=delivery.status_code)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "model": engine.model}

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _recover(engine: ReleaseEngine) -> None:
    try:
        engine.recover()
    except BluegreenError as exc:  # settled when the next operation takes the lock
        log.warning("journal not settled at start-up: %s", exc.detail)
    except Exception:
        log.exception("start-up recovery failed; the next operation settles the journal")


def error_response(exc: BluegreenError) -> JSONResponse:
    """The one mapping from domain errors to HTTP answers."""
    body: dict[str, Any] = {"error": exc.error, "detail": exc.detail, "retryable": exc.retryable}
    if isinstance(exc, ReleaseAborted):
        body["operation"] = exc.operation
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(body, status_code=exc.status_code, headers=headers)
