"""Runs the controller API under uvicorn; what `python -m controller` and `bluegreen serve
controller` call."""

from __future__ import annotations

import sys

from fastapi import FastAPI
from pydantic import ValidationError

from controller.api import create_app
from controller.metrics import ControllerMetrics
from controller.settings import ControllerSettings
from controller.wiring import build_engine, build_follower
from plumbing.processes import watch_lifeline
from plumbing.serve import configure_logging, make_server


def build_app(settings: ControllerSettings) -> FastAPI:
    metrics = ControllerMetrics()
    engine = build_engine(settings, metrics)
    return create_app(
        engine,
        token=settings.token_value(),
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        pause_by_default=settings.pause,
        follower=build_follower(settings, engine),
    )


def run(*, host: str, port: int, log_level: str = "info") -> int:
    """Serve until stopped; exit 2 with one line when the configuration or state is unusable."""
    configure_logging(log_level)
    try:
        settings = ControllerSettings()
        app = build_app(settings)
    except (ValidationError, ValueError, OSError) as exc:
        print(f"bluegreen controller: cannot start: {exc}", file=sys.stderr)
        return 2
    server = make_server(
        app,
        host=host,
        port=port,
        limits=settings.limits,
        log_level=log_level,
        graceful_shutdown_s=5,
    )
    watch_lifeline(on_lost=lambda: setattr(server, "should_exit", True))
    server.run()
    return 0
