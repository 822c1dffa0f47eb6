"""Runs one model server under uvicorn; what `python -m model_server` and `bluegreen serve
model` call."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError

from model_server.loader import start_loading
from model_server.settings import ModelServerSettings

if TYPE_CHECKING:
    import uvicorn

EXIT_CANNOT_SERVE = 3


def run(*, host: str, port: int, log_level: str = "info") -> int:
    """Serve until stopped; exit non-zero when the pinned version cannot be served."""
    from plumbing.serve import configure_logging

    configure_logging(log_level)
    try:
        settings = ModelServerSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        print(f"bluegreen model server: bad configuration: {problems}", file=sys.stderr)
        return 2
    # The model starts loading first; the web stack is imported meanwhile (start_loading).
    loading = start_loading(settings)
    from model_server.app import create_app
    from plumbing.processes import watch_lifeline
    from plumbing.serve import make_server

    failure: list[str] = []
    server: uvicorn.Server | None = None

    def stop_on_failure(reason: str) -> None:
        failure.append(reason)
        if server is not None:
            server.should_exit = True

    app = create_app(
        settings, loader=lambda _settings: loading.result(), on_load_failure=stop_on_failure
    )
    server = make_server(app, host=host, port=port, limits=settings.limits, log_level=log_level)
    watch_lifeline(on_lost=lambda: setattr(server, "should_exit", True))
    server.run()
    return EXIT_CANNOT_SERVE if failure else 0
