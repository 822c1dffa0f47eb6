"""The one request-body reader (`plumbing.body_limit`): its guarantees, message by message.

The parts' own answers to these refusals (413, 499) over real HTTP are tested with each part
(tests/router, tests/model_server, tests/security).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Scope

from plumbing.body_limit import (
    BodyTooLarge,
    ClientGone,
    LimitBody,
    declared_length,
    read_body,
)


class Client:
    """An ASGI `receive` that plays a client's messages and counts how many were taken."""

    def __init__(self, messages: Iterable[Message]) -> None:
        self.messages = list(messages)
        self.taken = 0

    async def __call__(self) -> Message:
        message = self.messages[self.taken]
        self.taken += 1
        return message


def _scope(content_length: int | None = None) -> Scope:
    headers = [(b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    return {"type": "http", "method": "POST", "path": "/", "headers": headers}


def _chunks(*parts: bytes) -> list[Message]:
    last = len(parts) - 1
    return [
        {"type": "http.request", "body": part, "more_body": i < last}
        for i, part in enumerate(parts)
    ]


def _read(scope: Scope, client: Client, limit: int) -> bytes:
    return asyncio.run(read_body(scope, client, limit=limit))


def test_a_body_in_one_message_comes_back_as_is() -> None:
    client = Client(_chunks(b"[[1, 2]]"))
    assert _read(_scope(8), client, limit=8) == b"[[1, 2]]"


def test_a_chunked_body_is_joined_in_order() -> None:
    client = Client(_chunks(b"ab", b"", b"cd", b"e"))
    assert _read(_scope(), client, limit=5) == b"abcde"
    assert client.taken == 4


def test_a_declared_oversize_body_is_refused_before_a_byte_is_read() -> None:
    client = Client(_chunks(b"x" * 11))
    with pytest.raises(BodyTooLarge) as refused:
        _read(_scope(11), client, limit=10)
    assert refused.value.limit == 10
    assert client.taken == 0


def test_a_streamed_oversize_body_is_refused_at_the_chunk_that_passes_the_limit() -> None:
    client = Client(_chunks(b"x" * 6, b"x" * 6, b"x" * 6, b"x" * 6))
    with pytest.raises(BodyTooLarge):
        _read(_scope(), client, limit=10)
    assert client.taken == 2  # the rest of an endless body is never read into memory


def test_a_body_that_lies_about_its_length_is_still_bounded() -> None:
    client = Client(_chunks(b"x" * 8, b"x" * 8))
    with pytest.raises(BodyTooLarge):
        _read(_scope(4), client, limit=10)


def test_a_client_that_leaves_mid_body_is_client_gone_not_a_short_body() -> None:
    client = Client([*_chunks(b"abc", b"def")[:1], {"type": "http.disconnect"}])
    with pytest.raises(ClientGone) as gone:
        _read(_scope(), client, limit=100)
    assert gone.value.received == 3


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"content-length", b"42")], 42),
        ([(b"host", b"x"), (b"content-length", b"0")], 0),
        ([(b"content-length", b"-1")], None),
        ([(b"content-length", b"12abc")], None),
        ([], None),
    ],
)
def test_declared_length_is_a_number_or_nothing(
    headers: list[tuple[bytes, bytes]], expected: int | None
) -> None:
    assert declared_length(headers) == expected


def _echo_app(limit: int) -> LimitBody:
    async def echo(request: Request) -> Response:
        return PlainTextResponse(await request.body())

    async def too_large(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(str(exc), status_code=413)

    app = Starlette(
        routes=[Route("/", echo, methods=["POST"])],
        exception_handlers={BodyTooLarge: too_large},
    )
    return LimitBody(app, max_bytes=limit)


def _post(app: LimitBody, content: bytes | Iterable[bytes]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            if isinstance(content, bytes):
                return await http.post("/", content=content)

            async def stream() -> AsyncIterator[bytes]:
                for part in content:
                    yield part

            return await http.post("/", content=stream())

    return asyncio.run(go())


def test_the_middleware_passes_a_body_within_the_limit() -> None:
    answer = _post(_echo_app(10), b"0123456789")
    assert (answer.status_code, answer.content) == (200, b"0123456789")


def test_the_middleware_refuses_a_declared_oversize_body_in_the_apps_own_shape() -> None:
    answer = _post(_echo_app(10), b"0123456789!")
    assert answer.status_code == 413
    assert "limit of 10 bytes" in answer.text


def test_the_middleware_refuses_a_streamed_oversize_body() -> None:
    answer = _post(_echo_app(10), [b"012345", b"678901"])
    assert answer.status_code == 413
