"""The one way a part serves its ASGI app under uvicorn, with the same logging everywhere.

Called by each part's `main.run` and `__main__` (model server, router, controller). Every
part runs on uvloop + httptools with the same connection limits (`plumbing.connections`).
"""

from __future__ import annotations

import argparse
import logging
from typing import Protocol

import uvicorn
from starlette.types import ASGIApp

from plumbing.connections import ConnectionLimits, GuardedHttpToolsProtocol

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    # httpx logs every request at INFO: a line per mirrored request or probe is noise.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


def make_server(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    limits: ConnectionLimits,
    log_level: str = "info",
    graceful_shutdown_s: float = 10.0,
    trust_forwarded: bool = True,
) -> uvicorn.Server:
    """A uvicorn server for `app` bounded by `limits`, without per-request access logs.

    Access logs are off because every part exports request counts as Prometheus metrics;
    a log line per prediction would cost more than the prediction. `trust_forwarded`
    lets a loopback peer's `X-Forwarded-For` name the client (a part behind the router);
    the router itself is the edge and must see the real peer.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        proxy_headers=trust_forwarded,
        loop="uvloop",
        http=GuardedHttpToolsProtocol.bound(limits),
        timeout_keep_alive=int(limits.keep_alive_s) or 1,
        timeout_graceful_shutdown=int(graceful_shutdown_s),
    )
    return uvicorn.Server(config)


class PartRunner(Protocol):
    def __call__(self, *, host: str, port: int, log_level: str) -> int: ...


def part_main(prog: str, run: PartRunner, *, default_port: int, argv: list[str] | None) -> int:
    """`python -m PART [--host H] [--port P] [--log-level L]`, the same for every part."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    return run(host=args.host, port=args.port, log_level=args.log_level)
