"""Bounds on what one client connection may cost: head and body read time, head size, count.

Used by `plumbing.serve` for every part. uvicorn bounds idle keep-alive connections but
not a client that trickles its request head or body, nor the size of the head, nor how
many connections are open at once; `GuardedHttpToolsProtocol` adds those four on top of
uvicorn's httptools protocol (kept for its speed), and refuses a request target that is
not a path (`http://other-host/...`), since no part is a proxy. When the connection cap is reached,
the connection that has spent longest reading its head is dropped to admit the new one:
a slow-header flood then costs normal clients nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar

from pydantic import BaseModel, Field
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("bluegreen.connections")


class ConnectionLimits(BaseModel):
    """Per-part limits; each part's settings carry one (e.g. `ROUTER_LIMITS__MAX_CONNECTIONS`)."""

    head_timeout_s: float = Field(default=10.0, gt=0)
    """A request's line and headers must arrive within this (408 and close otherwise)."""
    body_timeout_s: float = Field(default=60.0, gt=0)
    """A request's body must arrive within this once its headers did (the connection closes)."""
    max_head_bytes: int = Field(default=64 * 1024, gt=0)
    """Request line plus headers above this are refused with 431."""
    max_connections: int = Field(default=1000, gt=0)
    """Open connections at most; over it, the slowest head-reader is dropped."""
    keep_alive_s: float = Field(default=5.0, gt=0)
    """An idle keep-alive connection is closed after this."""


_STATUS = {
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with `ConnectionLimits`; `bound` makes a configured class."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    _reading_head_since: ClassVar[dict[GuardedHttpToolsProtocol, float]]

    @classmethod
    def bound(cls, limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
        return type("GuardedHttpTools", (cls,), {"limits": limits, "_reading_head_since": {}})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._not_a_path = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows the transport type the same way
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._shed_one()
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._reading_head_since.pop(self, None)
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        reading_head = self in self._reading_head_since
        if reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still reading the head after this chunk: every byte so far belonged to it.
        still_reading = reading_head and self in self._reading_head_since
        if still_reading and self._head_bytes > self.limits.max_head_bytes:
            self._refuse(431, b"request head too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self not in self._reading_head_since:
            self._start_head()

    def on_headers_complete(self) -> None:
        if not self.url.startswith(b"/"):
            # Absolute- or authority-form (`http://host/...`, `host:port`, `*`): no part
            # is a proxy, and the host named there must never decide where a request goes.
            self._not_a_path = True
            raise ValueError("the request target is not a path")
        self._reading_head_since.pop(self, None)
        self._cancel_deadline()
        self._deadline = self.loop.call_later(self.limits.body_timeout_s, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._not_a_path:
            msg = "the request target must be a path (origin-form); this server is not a proxy"
        super().send_400_response(msg)

    # -- internals -----------------------------------------------------------------------

    def _start_head(self) -> None:
        self._head_bytes = 0
        self._reading_head_since[self] = time.monotonic()
        self._cancel_deadline()
        self._deadline = self.loop.call_later(self.limits.head_timeout_s, self._head_too_slow)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_too_slow(self) -> None:
        if self in self._reading_head_since and (
            self.cycle is None or self.cycle.response_complete
        ):
            self._refuse(408, b"request head not received in time")

    def _body_too_slow(self) -> None:
        # The app sees a disconnect and stops waiting; nothing half-read reaches it as whole.
        log.info("closing %s: request body not received in time", self.client)
        self.transport.close()

    def _refuse(self, status: int, reason: bytes) -> None:
        self._reading_head_since.pop(self, None)
        self._cancel_deadline()
        if not self.transport.is_closing():
            self.transport.write(
                _STATUS[status]
                + b"content-type: text/plain; charset=utf-8\r\n"
                + b"content-length: "
                + str(len(reason)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + reason
            )
            self.transport.close()

    def _shed_one(self) -> None:
        """Over the cap: drop whoever has waited longest for its own head, else this one."""
        others = [(since, p) for p, since in self._reading_head_since.items() if p is not self]
        if others:
            _, slowest = min(others, key=lambda pair: pair[0])
            slowest._refuse(408, b"request head not received in time")
        else:
            self.transport.close()
