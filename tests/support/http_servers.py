"""Small real HTTP servers and a raw HTTP client for the tests of the router and the parts.

The recording upstream stands in for a color's model server and records every request it
was given whole; the canary is any other loopback service (registry, controller) and
records every connection it is offered: an open proxy shows up there. `ServerThread` runs
any ASGI app under uvicorn in a thread; `raw_request` sends bytes no HTTP client would.
`WebhookReceiver` is where the controller's notifications land (it can fail or hang).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.ports import free_port


@dataclass(frozen=True)
class Seen:
    """One request as the upstream received it."""

    method: str
    raw_path: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class RecordingUpstream:
    """A color's server: records whole requests; `/big?mb=N` streams N MiB back."""

    port: int = field(default_factory=free_port)
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> Starlette:
        async def record(request: Request) -> Response:
            body = await request.body()  # raises on a client that left: nothing recorded
            self.seen.append(
                Seen(
                    request.method,
                    request.scope["raw_path"],
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
                    body,
                )
            )
            if request.url.path == "/big":
                return StreamingResponse(_chunks(int(request.query_params["mb"])))
            if request.url.path == "/hop":
                return Response(
                    b"ok",
                    headers={"Connection": "X-Upstream-Secret", "X-Upstream-Secret": "s"},
                )
            return JSONResponse({"prediction": [0], "path": request.url.path})

        return Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST", "PUT"])])


async def _chunks(mib: int) -> AsyncIterator[bytes]:
    block = b"x" * (1024 * 1024)
    for _ in range(mib):
        yield block


class Canary:
    """A loopback listener that counts every connection and byte it is offered."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self.received = b""
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(0.5)
                try:
                    self.received += conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\ncanary")
                except OSError:
                    pass

    def __enter__(self) -> Canary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


class ServerThread:
    """An ASGI app under uvicorn in a thread of the test process."""

    def __init__(self, app: object, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "test server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def recording_upstream() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream()
    with ServerThread(upstream.app(), upstream.port):
        yield upstream


def raw_request(port: int, request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read the answer until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer (by its content-length), or what came before a close or timeout."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


class WebhookReceiver:
    """A real HTTP server on loopback recording each POST (headers, body) sent to it; it
    answers 503 to the first `fail_first` and sleeps `hang_s` before answering, on demand."""

    def __init__(self, path: str) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        self.hang_s = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.hang_s:
                    time.sleep(receiver.hang_s)
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"got {len(self.received)} of {count}"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
