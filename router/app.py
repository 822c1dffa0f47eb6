"""The local router's ASGI app: proxy to the live color, and the admin API that flips it.

Every request goes to the live color over pooled keep-alive connections. The color is
chosen once when a request arrives, so requests in flight finish on the color they
started on; the flip itself is a single assignment under a lock, conditional on the
revision (the admin API answers 409 to a stale one), and the route file is written off
the event loop, outside that lock. Admin calls live under `/_bluegreen/` and flipping
needs the bearer token when one is configured.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import orjson
from prometheus_client import CollectorRegistry, Counter, generate_latest
from starlette.types import Receive, Scope, Send

from plumbing.auth import bearer_matches
from plumbing.body_limit import BodyTooLarge, ClientGone, read_body
from router.forward import (
    AnswerBrokenOff,
    forward,
    plain_path,
    request_head,
    send_error,
    send_json,
)
from router.openapi import OPENAPI
from router.route_file import COLORS, Color, RouteState, load_route, save_route
from router.settings import RouterSettings
from router.upstream import UpstreamError, UpstreamPool

log = logging.getLogger("bluegreen.router")

ADMIN_PREFIX = "/_bluegreen"
_FLIP_BODY_LIMIT = 4096


class LocalRouter:
    """ASGI app: proxy to the live color, plus the admin API to read and flip it."""

    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.route = load_route(settings.state_file, initial=settings.initial_color)
        self._flip_lock = asyncio.Lock()
        self._save_lock = asyncio.Lock()
        self._upstreams: dict[Color, str] = {"blue": settings.blue_url, "green": settings.green_url}
        self._pools: dict[Color, UpstreamPool] = {
            color: _pool_for(url, max_idle=settings.max_connections)
            for color, url in self._upstreams.items()
        }
        self.metrics = CollectorRegistry()
        self._served = Counter(
            "bluegreen_router_requests",
            "Requests proxied, by color and status (499: the client left mid-request).",
            ["color", "status"],
            registry=self.metrics,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] != "http":
            return
        elif scope["path"].startswith(f"{ADMIN_PREFIX}/"):
            await self._admin(scope, receive, send)
        else:
            await self._proxy(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for pool in self._pools.values():
                    pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        color = self.route.color  # chosen once: a flip never moves a request mid-flight
        status = await self._forward(color, scope, receive, send)
        self._served.labels(color=color, status=str(status)).inc()

    async def _forward(self, color: Color, scope: Scope, receive: Receive, send: Send) -> int:
        path = plain_path(scope)
        if path is None:
            await send_error(send, 400, "bad_request", "the request target must be a plain path")
            return 400
        limit = self.settings.max_body_bytes
        try:  # a declared oversize body is refused before a byte of it is read
            body = await read_body(scope, receive, limit=limit)
        except BodyTooLarge:
            await send_error(send, 413, "payload_too_large", f"body over {limit} bytes")
            return 413
        except ClientGone:
            return 499  # nothing is forwarded: a truncated body must never reach a model
        pool = self._pools[color]
        head = request_head(scope, path, host=pool.host_header, length=len(body))
        try:
            return await forward(
                pool, head, body, send=send, timeout_s=self.settings.upstream_timeout_s
            )
        except AnswerBrokenOff as exc:  # never completed: the client sees the answer cut
            log.warning("upstream %s broke its answer off: %s", color, exc)
            return 502
        except (UpstreamError, TimeoutError) as exc:
            log.warning("upstream %s failed: %r", color, exc)
            await send_error(send, 502, "bad_gateway", f"live color {color} unreachable")
            return 502

    # -- admin ---------------------------------------------------------------------------

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"][len(ADMIN_PREFIX) :], scope["method"]
        if path == "/healthz" and method == "GET":
            await send_json(send, 200, {"status": "ok"})
        elif path == "/metrics" and method == "GET":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain; version=0.0.4")],
                }
            )
            await send({"type": "http.response.body", "body": generate_latest(self.metrics)})
        elif path == "/openapi.json" and method == "GET":
            await send_json(send, 200, OPENAPI)
        elif path == "/route" and method == "GET":
            upstreams = dict(self._upstreams)
            await send_json(send, 200, {**self.route.as_json(), "upstreams": upstreams})
        elif path == "/route" and method == "PUT":
            await self._flip(scope, receive, send)
        elif path in ("/healthz", "/metrics", "/route", "/openapi.json"):
            await send_error(send, 405, "method_not_allowed", f"{method} {path} is not allowed")
        else:
            await send_error(send, 404, "not_found", f"no {method} {path}")

    async def _flip(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not bearer_matches(dict(scope["headers"]).get(b"authorization"), self._token):
            await send_error(send, 401, "unauthorized", "missing or wrong bearer token")
            return
        try:
            request = orjson.loads(await read_body(scope, receive, limit=_FLIP_BODY_LIMIT))
            color, expected = request["color"], str(request["expected_revision"])
        except (ClientGone, BodyTooLarge, orjson.JSONDecodeError, KeyError, TypeError):
            await send_error(
                send, 400, "bad_request", 'send {"color": ..., "expected_revision": ...}'
            )
            return
        if color not in COLORS:
            await send_error(send, 400, "bad_request", f"color must be one of {list(COLORS)}")
            return
        async with self._flip_lock:
            current = self.route
            if str(current.revision) != expected:
                await send_json(
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
                self.route = RouteState(color=color, revision=current.revision + 1)  # the flip
                log.info(
                    "switched from %s to %s (revision %d)",
                    current.color,
                    color,
                    self.route.revision,
                )
        problem = await self._persist()
        answer: dict[str, object] = {**self.route.as_json(), "saved": problem is None}
        if problem is not None:  # traffic moved: say so, and that a restart would forget it
            answer["detail"] = problem
        await send_json(send, 200, answer)

    async def _persist(self) -> str | None:
        """Write the latest route, off the loop; writes are serialized, the newest wins."""
        path = self.settings.state_file
        if path is None:
            return None
        async with self._save_lock:
            try:
                await asyncio.to_thread(save_route, path, self.route)
            except OSError as exc:
                log.error("route %s not saved to %s: %s", self.route, path, exc)
                return f"route not saved to {path}: {exc}"
        return None

    @property
    def _token(self) -> str | None:
        token = self.settings.admin_token
        return token.get_secret_value() if token else None


def _pool_for(url: str, *, max_idle: int) -> UpstreamPool:
    """Keep-alive connections to the color at `url` (plain HTTP, as the colors serve)."""
    parts = urlsplit(url)
    return UpstreamPool(parts.hostname or "127.0.0.1", parts.port or 80, max_idle=max_idle)
