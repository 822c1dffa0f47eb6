"""The local router: an HTTP reverse proxy standing in for the Kubernetes Service.

Every request goes to the live color over pooled keep-alive connections. The color is
chosen once when a request arrives, so requests in flight finish on the color they
started on; the flip itself is a single assignment under a lock, conditional on the
revision (the admin API answers 409 to a stale one). Admin calls live under
`/_bluegreen/` and need the bearer token when one is configured.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from prometheus_client import CollectorRegistry, Counter, generate_latest
from starlette.types import Receive, Scope, Send

from controller.journal_file import write_atomically
from router.settings import RouterSettings

log = logging.getLogger("bluegreen.router")

ADMIN_PREFIX = "/_bluegreen"
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
_COLORS = ("blue", "green")


@dataclass
class RouteState:
    color: str
    revision: int

    def as_json(self) -> dict[str, Any]:
        return {"color": self.color, "revision": str(self.revision)}


class LocalRouter:
    """ASGI app: proxy to the live color, plus the admin API to read and flip it."""

    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.route = self._load_route()
        self._flip_lock = asyncio.Lock()
        self._upstreams = {"blue": settings.blue_url, "green": settings.green_url}
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self.metrics = CollectorRegistry()
        self._served = Counter(
            "bluegreen_router_requests",
            "Requests proxied, by color and upstream status class.",
            ["color", "status"],
            registry=self.metrics,
        )

    def _load_route(self) -> RouteState:
        path = self.settings.state_file
        if path is not None and path.exists():
            saved = orjson.loads(path.read_bytes())
            return RouteState(color=saved["color"], revision=int(saved["revision"]))
        return RouteState(color=self.settings.initial_color, revision=1)

    def _session(self, color: str) -> aiohttp.ClientSession:
        # aiohttp rather than httpx here: on this hot path it costs a fraction of the CPU
        # per request (measured in bench/switch.py), and it pools keep-alive connections.
        session = self._sessions.get(color)
        if session is None:
            session = self._sessions[color] = aiohttp.ClientSession(
                base_url=self._upstreams[color],
                connector=aiohttp.TCPConnector(limit=self.settings.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.settings.upstream_timeout_s),
                auto_decompress=False,  # pass bodies through exactly as the model sent them
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"].startswith(ADMIN_PREFIX):
            await self._admin(scope, receive, send)
            return
        await self._proxy(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for session in self._sessions.values():
                    await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        color = self.route.color  # chosen once: a flip never moves a request mid-flight
        body = await _read_body(receive, self.settings.max_body_bytes)
        if body is None:
            await _send_json(
                send,
                413,
                {"error": "payload_too_large", "detail": "request body over the router's limit"},
            )
            return
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in _HOP_BY_HOP
        ]
        target = scope["raw_path"].decode("latin-1") or scope["path"]
        if scope.get("query_string"):
            target = f"{target}?{scope['query_string'].decode('latin-1')}"
        try:
            async with self._session(color).request(
                scope["method"], target, data=body, headers=headers
            ) as answer:
                content = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._served.labels(color=color, status="error").inc()
            log.warning("upstream %s failed: %r", color, exc)
            await _send_json(
                send, 502, {"error": "bad_gateway", "detail": f"live color {color} unreachable"}
            )
            return
        self._served.labels(color=color, status=f"{answer.status // 100}xx").inc()
        out_headers = [(k, v) for k, v in answer.raw_headers if k.lower() not in _HOP_BY_HOP]
        out_headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": out_headers})
        await send({"type": "http.response.body", "body": content})

    # -- admin ---------------------------------------------------------------------------

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"][len(ADMIN_PREFIX) :], scope["method"]
        if path == "/healthz" and method == "GET":
            await _send_json(send, 200, {"status": "ok"})
        elif path == "/metrics" and method == "GET":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain; version=0.0.4")],
                }
            )
            await send({"type": "http.response.body", "body": generate_latest(self.metrics)})
        elif path == "/route" and method == "GET":
            await _send_json(send, 200, {**self.route.as_json(), "upstreams": self._upstreams})
        elif path == "/route" and method == "PUT":
            await self._flip(scope, receive, send)
        else:
            await _send_json(send, 404, {"error": "not_found", "detail": f"no {method} {path}"})

    async def _flip(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _authorized(scope, self.settings.admin_token):
            await _send_json(
                send, 401, {"error": "unauthorized", "detail": "missing or wrong bearer token"}
            )
            return
        body = await _read_body(receive, 4096)
        try:
            request = orjson.loads(body or b"")
            color, expected = request["color"], str(request["expected_revision"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await _send_json(
                send,
                400,
                {"error": "bad_request", "detail": 'send {"color": ..., "expected_revision": ...}'},
            )
            return
        if color not in _COLORS:
            await _send_json(
                send,
                400,
                {"error": "bad_request", "detail": f"color must be one of {list(_COLORS)}"},
            )
            return
        async with self._flip_lock:
            current = self.route
            if str(current.revision) != expected:
                await _send_json(
                    send,
                    409,
                    {
                        "error": "route_conflict",
                        "detail": f"route is at revision {current.revision}, not {expected}",
                        "route": current.as_json(),
                    },
                )
                return
            if color != current.color:
                new = RouteState(color=color, revision=current.revision + 1)
                if self.settings.state_file is not None:
                    write_atomically(self.settings.state_file, orjson.dumps(new.as_json()).decode())
                self.route = new  # the flip: one assignment, seen by the next request
                log.info("switched from %s to %s (revision %d)", current.color, color, new.revision)
        await _send_json(send, 200, self.route.as_json())


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _authorized(scope: Scope, token: str | None) -> bool:
    if token is None:
        return True
    given = dict(scope["headers"]).get(b"authorization", b"")
    return hmac.compare_digest(given, f"Bearer {token}".encode())


async def _send_json(send: Send, status: int, content: Any) -> None:
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


def run(*, host: str, port: int, log_level: str = "info") -> int:
    """Serve the router until stopped; what `bluegreen serve router` calls."""
    import uvicorn

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app = LocalRouter(RouterSettings())
    gc.freeze()  # imports are long-lived: keep full collections off the proxy's hot path
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
    return 0
