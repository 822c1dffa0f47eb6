"""The controller's HTTP API; domain errors map to HTTP here and nowhere else.

`create_app` is called by `bluegreen serve controller` (see `wiring.py`) and the tests.
Endpoints are synchronous: the engine blocks on HTTP and the backends, and FastAPI runs
such handlers in its thread pool.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, model_validator

from controller.engine import ReleaseEngine
from controller.errors import BadRequest, BluegreenError, ReleaseAborted, Unauthorized
from controller.metrics import ControllerMetrics
from controller.model import Golden, Operation

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

    @model_validator(mode="after")
    def _one_target(self) -> SwitchRequest:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of 'version' or 'alias'")
        return self


class ErrorBody(BaseModel):
    error: str
    detail: str
    operation: Operation | None = None


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 409, 422, 502, 503, 504)
}


def create_app(
    engine: ReleaseEngine,
    *,
    token: str | None,
    metrics: ControllerMetrics,
) -> FastAPI:
    """The API over one engine; `metrics` must be the registry the engine reports to."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        try:
            engine.recover()
        except BluegreenError as exc:  # settled when the next operation takes the lock
            log.warning("journal not settled at start-up: %s", exc.detail)
        yield

    app = FastAPI(
        title="bluegreen controller",
        version="0.1.0",
        description="Releases MLflow model versions blue/green: resolve, stage, verify, "
        "promote, roll back.",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Checked before anything reads the body: an unauthenticated caller learns nothing.
        if token is not None and request.method not in _SAFE_METHODS:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _error_response(
                    Unauthorized("this call needs 'Authorization: Bearer <token>'")
                )
        return await call_next(request)

    @app.exception_handler(BluegreenError)
    async def _domain_error(request: Request, exc: BluegreenError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return JSONResponse({"error": "bad_request", "detail": problems}, status_code=400)

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
            version=request.version, alias=request.alias, golden=request.golden, wait=wait
        )
        if op.status == "running":
            response.status_code = 202
            response.headers["Location"] = f"/operations/{op.id}"
        return op

    @app.post("/rollback", responses=_ERRORS)
    def rollback() -> Operation:
        """Flip back to the standby color, which still holds the previous version."""
        return engine.rollback()

    @app.get("/operations/{operation_id}", responses=_ERRORS)
    def operation(operation_id: str) -> Operation:
        return engine.operation(operation_id)

    @app.get("/history")
    def history(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[Operation]:
        """Finished operations, newest first."""
        return engine.history(limit)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "model": engine.model}

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _error_response(exc: BluegreenError) -> JSONResponse:
    """The one mapping from domain errors to HTTP answers."""
    body: dict[str, Any] = {"error": exc.error, "detail": exc.detail}
    if isinstance(exc, ReleaseAborted):
        body["operation"] = exc.operation
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(body, status_code=exc.status_code, headers=headers)
