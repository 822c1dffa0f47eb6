"""Decodes huge JSON bodies in a process of their own, so they never stall the event loop.

orjson holds the GIL for a whole decode: a 7 MB body decoded in a worker *thread* still
stops every other request for the length of the decode (~0.3 s each, seconds when several
arrive together). Bodies over `HUGE_BODY_BYTES` are decoded in one child process instead,
which also counts their rows: a body over the row cap comes back as a count only, so the
server refuses it (413) without ever holding its objects; an accepted one comes back
decoded. Started on the first huge body, never for servers that get none.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import orjson

from model_server.inputs import row_count

# Smaller bodies decode in well under 50 ms: a process hop would cost more than it saves.
HUGE_BODY_BYTES = 1024 * 1024


def decode_counted(body: bytes, max_rows: int) -> tuple[int, Any]:
    """(rows, payload) in the child; payload None when orjson cannot read the body or the
    rows are over `max_rows` (then only the count travels back)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0, None
    rows = row_count(payload)
    return rows, (None if rows > max_rows else payload)


class BodyDecoder:
    """One child process, spawned (not forked: the server's memory stays its own)."""

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._pool: ProcessPoolExecutor | None = None

    async def decode(self, body: bytes) -> tuple[int, Any]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, decode_counted, body, self._max_rows)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
