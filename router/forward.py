"""Forwards one request to the live color: the data plane of the local router.

Called by `router.app` for every request outside `/_bluegreen/`. Only a plain absolute
path is ever forwarded, and always to the color's own server: the request goes over a
connection to the color's host and port, with the path written into the request line,
so a target like `//host:port/...` cannot make the router talk to anyone else. Bodies in
are read whole by `plumbing.body_limit` (bounded, never forwarded truncated); answers out
are streamed, so a huge answer costs no memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable

import orjson
from starlette.types import Scope, Send

from router.upstream import UpstreamError, UpstreamPool

log = logging.getLogger("bluegreen.router.forward")

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# RFC 3986 path characters only; "//" (scheme-relative), "\" and dot segments are refused.
_PLAIN_PATH = re.compile(rb"^/(?!/)[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$")
# Set by the router itself: the color's host, the length of the body it read whole.
_REPLACED = frozenset({b"host", b"content-length", b"expect"})
_DOT_SEGMENT = re.compile(rb"(^|/)\.\.?(/|$)")
_STREAM_CHUNK = 64 * 1024
_ONE_SHOT_BYTES = 1024 * 1024  # answers up to this size are read whole: one send, less CPU


class AnswerBrokenOff(Exception):
    """The upstream failed after its answer started: the client's answer is cut off too."""


def plain_path(scope: Scope) -> bytes | None:
    """The request's raw path when it is a plain absolute path, else None."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("latin-1")
    if not _PLAIN_PATH.match(raw) or _DOT_SEGMENT.search(raw):
        return None
    return raw


def request_head(scope: Scope, path: bytes, *, host: bytes, length: int) -> bytes:
    """The upstream request line and headers: the client's minus hop-by-hop ones, the color's
    own `Host`, the body's length, and `X-Forwarded-For` with the client appended."""
    headers = scope["headers"]
    dropped = _hop_by_hop(headers) | _REPLACED
    query = scope.get("query_string", b"")
    lines = [
        scope["method"].encode("latin-1"),
        b" ",
        path,
        b"?" + query if query else b"",
        b" HTTP/1.1\r\nhost: ",
        host,
        b"\r\ncontent-length: ",
        str(length).encode(),
        b"\r\n",
    ]
    forwarded = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            forwarded.append(value)
        elif name not in dropped:
            lines += [name, b": ", value, b"\r\n"]
    client = scope.get("client")
    if client:
        forwarded.append(str(client[0]).encode("latin-1"))
    if forwarded:
        lines += [b"x-forwarded-for: ", b", ".join(forwarded), b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    headers = list(raw)
    dropped = _hop_by_hop((k.lower(), v) for k, v in headers)
    return [(k, v) for k, v in headers if k.lower() not in dropped]


def _hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The standard hop-by-hop names plus every name the `Connection` header lists."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name == b"connection"
        for token in value.split(b",")
        if token.strip()
    }
    return _HOP_BY_HOP | named


async def forward(
    pool: UpstreamPool, head: bytes, body: bytes, *, send: Send, timeout_s: float
) -> int:
    """Send the request upstream and stream its answer back; the upstream status."""
    async with asyncio.timeout(timeout_s):
        answer = await pool.request(head, body)
    out = response_headers(answer.headers)
    length = answer.content_length
    if head.startswith(b"HEAD "):  # no body follows, whatever the headers say
        answer.discard()
        await send({"type": "http.response.start", "status": answer.status, "headers": out})
        await send({"type": "http.response.body", "body": b""})
        return answer.status
    if length is not None and length <= _ONE_SHOT_BYTES:
        async with asyncio.timeout(timeout_s):
            content = await answer.read()
        await send({"type": "http.response.start", "status": answer.status, "headers": out})
        await send({"type": "http.response.body", "body": content})
        return answer.status
    await send({"type": "http.response.start", "status": answer.status, "headers": out})
    try:
        async with contextlib.aclosing(answer.chunks(idle_timeout_s=timeout_s)) as chunks:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except (UpstreamError, TimeoutError) as exc:
        raise AnswerBrokenOff(str(exc)) from exc
    await send({"type": "http.response.body", "body": b""})
    return answer.status


async def send_json(send: Send, status: int, content: object) -> None:
    body = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, error: str, detail: str) -> None:
    await send_json(send, status, {"error": error, "detail": detail})
