"""Runs one model server under uvicorn; what `bluegreen serve model` calls."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from model_server.app import create_app
from model_server.settings import ModelServerSettings

EXIT_CANNOT_SERVE = 3


def run(*, host: str, port: int, log_level: str = "info") -> int:
    """Serve until stopped; exit non-zero when the pinned version cannot be served."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        settings = ModelServerSettings()  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        print(f"bluegreen model server: bad configuration: {problems}", file=sys.stderr)
        return 2
    failure: list[str] = []
    server: uvicorn.Server | None = None

    def stop_on_failure(reason: str) -> None:
        failure.append(reason)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_load_failure=stop_on_failure)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    server.run()
    return EXIT_CANNOT_SERVE if failure else 0
