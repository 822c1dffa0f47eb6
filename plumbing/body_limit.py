"""An ASGI middleware that bounds request bodies, declared or streamed.

Used by the controller's app (the model server and the router bound bodies on their own
hot paths). It raises `BodyTooLarge` from the app's own `receive`, so the app's error
handlers answer it in the app's documented error shape; a declared `Content-Length` over
the limit is refused before a byte of the body is read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over the limit of {limit} bytes")
        self.limit = limit


class LimitBody:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        too_large = declared.isdigit() and int(declared) > limit
        seen = 0

        async def bounded_receive() -> Message:
            nonlocal seen
            if too_large:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, bounded_receive, send)
