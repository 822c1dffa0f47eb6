"""Reading ASGI request bodies within a size limit: the one body reader of every part.

`read_body` is called by the router (every proxied request and the flip), by the model
server (its scoring endpoints, on the raw hot path and in the FastAPI routes); `LimitBody`
wraps the controller's app, whose framework reads bodies itself. Both give the same
guarantees, which each caller maps to its own error shape:

- a declared `Content-Length` over the limit is refused (`BodyTooLarge`) before a byte of
  the body is read;
- a streamed (chunked) body is refused as soon as it passes the limit, so an endless body
  costs at most `limit` bytes of memory;
- a client that leaves mid-body is `ClientGone` (nginx's 499): never a truncated body
  passed on, never a server error.

Slow clients are bounded one layer down, per connection (`plumbing.connections`).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """The request body is (or says it will be) over the limit: answer 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")
        self.limit = limit


class ClientGone(Exception):
    """The client disconnected before its request body was complete: answer nothing (499)."""

    def __init__(self, received: int) -> None:
        super().__init__(f"client left after {received} bytes of its body")
        self.received = received


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The request's `Content-Length` when it is a number, else None."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def declared_too_large(scope: Scope, limit: int) -> bool:
    declared = declared_length(scope["headers"])
    return declared is not None and declared > limit


async def read_body(scope: Scope, receive: Receive, *, limit: int) -> bytes:
    """The whole request body, at most `limit` bytes; `BodyTooLarge` or `ClientGone` else."""
    if declared_too_large(scope, limit):
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone(size)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class LimitBody:
    """ASGI middleware for apps that read bodies through their framework (the controller).

    It raises `BodyTooLarge` from the app's own `receive`, so the app's error handlers
    answer it in the app's documented error shape.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        too_large = declared_too_large(scope, limit)
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
