"""Pure ASGI middleware of the model server: identity headers, the token and body-size gates,
metrics.

Installed by `create_app` (`app.py`) around every endpoint. Written without
`BaseHTTPMiddleware`, which costs a task per request on the hot path.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_server.errors import PayloadTooLarge, Unauthorized
from model_server.responses import error_response
from model_server.state import ServingState
from plumbing.auth import bearer_matches
from plumbing.body_limit import declared_too_large

# The endpoints that change what this server does; their mutating methods need the admin token.
ADMIN_PATHS = frozenset({"/serving-state", "/shadow/mirror", "/shadow/compare"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ServingHeaders:
    """Adds `X-Model-Name`/`-Version`/`X-Serving-Color`; refuses a control call without the
    admin token and a declared oversize body, both before anything reads the body (an
    unauthenticated caller learns nothing of what a body should hold)."""

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

        path = scope["path"]
        try:
            if not self._authorized(scope):
                await error_response(
                    401, Unauthorized.error_code, "this call needs 'Authorization: Bearer <token>'"
                )(scope, receive, send_with_headers)
            elif declared_too_large(scope, state.settings.max_body_bytes):
                limit = state.settings.max_body_bytes
                await error_response(
                    413,
                    PayloadTooLarge.error_code,
                    f"request body exceeds the limit of {limit} bytes",
                )(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            if path in self._METERED:
                state.metrics.observe_request(path, status, time.perf_counter() - started)

    def _authorized(self, scope: Scope) -> bool:
        if scope["path"] not in ADMIN_PATHS or scope["method"] in _SAFE_METHODS:
            return True
        authorization = dict(scope["headers"]).get(b"authorization")
        return bearer_matches(authorization, self.state.settings.admin_token)
