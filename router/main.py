"""Runs the local router under uvicorn; what `python -m router` and `bluegreen serve router`
call."""

from __future__ import annotations

import gc
import sys

from pydantic import ValidationError

from plumbing.processes import watch_lifeline
from plumbing.serve import configure_logging, make_server
from router.app import LocalRouter
from router.route_file import CorruptRouteFile
from router.settings import RouterSettings


def run(*, host: str, port: int, log_level: str = "info") -> int:
    """Serve until stopped; exit 2 with one line when the configuration or route is unusable."""
    configure_logging(log_level)
    try:
        app = LocalRouter(RouterSettings())
    except (ValidationError, CorruptRouteFile) as exc:
        print(f"bluegreen router: cannot start: {exc}", file=sys.stderr)
        return 2
    gc.freeze()  # imports are long-lived: keep full collections off the proxy's hot path
    server = make_server(
        app,
        host=host,
        port=port,
        limits=app.settings.limits,
        log_level=log_level,
        trust_forwarded=False,  # the edge: a client's X-Forwarded-For is appended to, not believed
    )
    watch_lifeline(on_lost=lambda: setattr(server, "should_exit", True))
    server.run()
    return 0
