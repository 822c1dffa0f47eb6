"""A minimal HTTP/1.1 client for one upstream (a color's model server), with a keep-alive pool.

Used by `router.forward` on every proxied request instead of a general client: it writes
the request in one syscall, parses the answer with httptools (as uvicorn does on the
server side) and hands the body over as it arrives, pausing the upstream socket while
the client is slower, so a huge answer is streamed in bounded memory. Idle connections
are reused for less than the model server's keep-alive, so the pool rarely meets one the
server has just closed; a reused connection that fails before any answer byte is
retried once on a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator
from typing import cast

import httptools

_IDLE_S = 2.0  # below the model server's 5 s keep-alive
_HIGH_WATER = 1024 * 1024  # pause the upstream socket above this much unsent answer


class UpstreamError(Exception):
    """The upstream could not be reached, or broke the answer off."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.head = asyncio.get_running_loop().create_future()
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.lost = False
        self.got_bytes = False
        self.wakeup: asyncio.Future[None] | None = None
        self.paused = False
        self.idle_since = 0.0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"bad answer from upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.complete:
            self._fail(UpstreamError("upstream closed the connection"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # valid only until the next message
        self.complete = True
        self._wake()

    # -- use
    def start(self, request: bytes) -> None:
        self.headers, self.status, self.complete, self.got_bytes = [], 0, False, False
        self.head = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)

    async def next_chunk(self) -> bytes | None:
        """The next piece of the answer body; None at its end."""
        while not self.chunks:
            if self.complete:
                return None
            if self.lost:
                raise UpstreamError("upstream closed the connection mid-answer")
            self.wakeup = asyncio.get_running_loop().create_future()
            await self.wakeup
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered <= _HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    def reusable(self) -> bool:
        return self.complete and not self.lost and self.keep_alive

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if not self.head.done():
            self.head.set_exception(exc)
        self._wake()


class Answer:
    """An upstream answer: status and headers now, the body as it comes."""

    def __init__(self, pool: UpstreamPool, connection: _Connection) -> None:
        self._pool = pool
        self._connection = connection
        self.status = connection.status
        self.headers = connection.headers

    @property
    def content_length(self) -> int | None:
        for name, value in self.headers:
            if name.lower() == b"content-length" and value.isdigit():
                return int(value)
        return None

    async def read(self) -> bytes:
        async with contextlib.aclosing(self.chunks()) as chunks:
            return b"".join([chunk async for chunk in chunks])

    async def chunks(self, *, idle_timeout_s: float | None = None) -> AsyncGenerator[bytes, None]:
        """The body as it arrives; the connection goes back to the pool at its end."""
        connection = self._connection
        try:
            while True:
                async with asyncio.timeout(idle_timeout_s):
                    chunk = await connection.next_chunk()
                if chunk is None:
                    return
                yield chunk
        finally:
            self._pool.release(connection)

    def discard(self) -> None:
        """No body will be read (a HEAD answer): the connection is not reused."""
        self._connection.close()


class UpstreamPool:
    """Keep-alive connections to one host:port."""

    def __init__(self, host: str, port: int, *, max_idle: int) -> None:
        self._host, self._port = host, port
        self._idle: list[_Connection] = []
        self._max_idle = max_idle
        self.host_header = f"{host}:{port}".encode()

    async def request(self, head: bytes, body: bytes) -> Answer:
        """Send `head` (request line and headers, ending in a blank line) and `body`."""
        connection, reused = await self._connect()
        try:
            return await self._exchange(connection, head + body)
        except UpstreamError:
            if not reused or connection.got_bytes:
                raise
        fresh, _ = await self._connect(fresh=True)  # the server closed an idle connection
        return await self._exchange(fresh, head + body)

    async def _exchange(self, connection: _Connection, request: bytes) -> Answer:
        try:
            connection.start(request)
            await connection.head
        except BaseException:
            connection.close()
            raise
        return Answer(self, connection)

    async def _connect(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle and not fresh:
            connection = self._idle.pop()
            if now - connection.idle_since < _IDLE_S and not connection.lost:
                return connection, True
            connection.close()
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(_Connection, self._host, self._port)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self._host}:{self._port}: {exc}") from None
        return connection, False

    def release(self, connection: _Connection) -> None:
        if connection.reusable() and len(self._idle) < self._max_idle:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
