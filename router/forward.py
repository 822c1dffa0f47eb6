"""Forwards one request to the live color: the data plane of the local router.

Called by `router.app` for every request outside `/_bluegreen/`. Only a plain absolute
path is ever forwarded, and always to the color's own server: the upstream URL is built
from the color's base and the path, never joined, so a target like `//host:port/...`
cannot make the router talk to anyone else. Bodies in are bounded and never forwarded
truncated; answers out are streamed, so a huge answer costs no memory.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import aiohttp
import orjson
from starlette.types import Receive, Scope, Send
from yarl import URL

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
_DOT_SEGMENT = re.compile(rb"(^|/)\.\.?(/|$)")
_STREAM_CHUNK = 64 * 1024
_ONE_SHOT_BYTES = 1024 * 1024  # answers up to this size are read whole: one send, less CPU


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class BodyTooLarge(Exception):
    """The request body is over the router's limit."""


def plain_path(scope: Scope) -> bytes | None:
    """The request's raw path when it is a plain absolute path, else None."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("latin-1")
    if not _PLAIN_PATH.match(raw) or _DOT_SEGMENT.search(raw):
        return None
    return raw


def upstream_url(base: URL, path: bytes, query: bytes) -> URL:
    return URL.build(
        scheme=base.scheme,
        host=base.host or "127.0.0.1",
        port=base.port,
        path=path.decode("latin-1"),
        query_string=query.decode("latin-1"),
        encoded=True,
    )


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; `ClientGone` when the client left mid-body."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def request_headers(scope: Scope) -> list[tuple[str, str]]:
    """The client's headers minus hop-by-hop ones, plus `X-Forwarded-For`."""
    headers = scope["headers"]
    dropped = _hop_by_hop(headers)
    out = [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in headers
        if k not in dropped and k not in (b"host", b"x-forwarded-for")
    ]
    forwarded = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
    client = scope.get("client")
    if client:
        forwarded.append(str(client[0]))
    if forwarded:
        out.append(("X-Forwarded-For", ", ".join(forwarded)))
    return out


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
    session: aiohttp.ClientSession,
    url: URL,
    *,
    method: str,
    headers: list[tuple[str, str]],
    body: bytes,
    send: Send,
) -> int:
    """Send the request upstream and stream its answer back; the upstream status."""
    async with session.request(method, url, data=body, headers=headers) as answer:
        out = response_headers(answer.raw_headers)
        length = answer.content_length
        if length is not None and length <= _ONE_SHOT_BYTES:
            content = await answer.read()
            await send({"type": "http.response.start", "status": answer.status, "headers": out})
            await send({"type": "http.response.body", "body": content})
            return answer.status
        await send({"type": "http.response.start", "status": answer.status, "headers": out})
        async for chunk in answer.content.iter_chunked(_STREAM_CHUNK):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
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
