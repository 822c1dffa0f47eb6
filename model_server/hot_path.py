"""The scoring endpoints' raw ASGI hot path: `POST /predict` and `POST /invocations`.

Installed by `create_app` (`app.py`) inside `ServingHeaders`, so identity headers, the
body-size gate and the request metrics apply as to every endpoint. Once the model is
ready, a scoring request is answered here without FastAPI's routing, request object and
exception middleware, which cost more than the prediction itself for a small model. The
answer is what the routes in `app.py` answer, byte for byte: the same `Scorer` calls, the
same Starlette responses (`responses.py`), our errors mapped as the app's exception
handlers map them. Before the model is ready (503), and for every other method and path,
the request goes on to the FastAPI app: the routes stay the contract and the OpenAPI schema.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from model_server.errors import ClientGone, ModelServerError, PayloadTooLarge, UnsupportedMedia
from model_server.mlflow_protocol import JSON
from model_server.responses import answer_response, error_response
from model_server.state import ServingState
from plumbing import body_limit

log = logging.getLogger("bluegreen.model_server")

_PREDICT, _INVOCATIONS = "/predict", "/invocations"


class ScoringHotPath:
    def __init__(self, app: ASGIApp, *, state: ServingState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        scorer = self.state.scorer
        if (
            scorer is None
            or scope["type"] != "http"
            or path not in (_PREDICT, _INVOCATIONS)
            or scope["method"] != "POST"
        ):
            await self.app(scope, receive, send)
            return
        content_type = _content_type(scope)
        try:
            if path == _PREDICT:
                if content_type and not is_json(content_type):
                    raise UnsupportedMedia(f"Content-Type must be {JSON}, got {content_type!r}")
                body = await read_body(scope, receive, self.state.settings.max_body_bytes)
                response = answer_response(await scorer.predict(body))
            else:
                body = await read_body(scope, receive, self.state.settings.max_body_bytes)
                response = answer_response(await scorer.invocations(body, content_type))
        except ModelServerError as exc:
            response = error_response(exc.status_code, exc.error_code, exc.message)
        except Exception:
            log.exception("unexpected error on %s", path)
            response = error_response(500, "INTERNAL_ERROR", "internal error; see the server log")
        await response(scope, receive, send)


def _content_type(scope: Scope) -> str | None:
    """The first Content-Type header, decoded as Starlette decodes headers."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return str(value.decode("latin-1"))
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body, read by the one reader in `plumbing.body_limit`, its refusals as our errors:
    413 as soon as the body passes the limit (or declares it will), 499 when the client left.
    """
    try:
        return await body_limit.read_body(scope, receive, limit=limit)
    except body_limit.BodyTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from exc
    except body_limit.ClientGone as exc:
        raise ClientGone(str(exc)) from exc


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or media.endswith("+json")
