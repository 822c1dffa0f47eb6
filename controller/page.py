"""The release page at `GET /`: static files shipped in the package, plus two small reads.

Included by `controller.api.create_app`. The page itself calls the same API the CLI calls
(`status`, `history`, `rollback`, `promote`, `abort`) with relative URLs, so it works
behind `kubectl port-forward` and under an ingress path prefix. Beyond the API it reads
`page/config` (whether mutating calls need the token) and `page/traffic` (requests and
errors per second by version, from the model servers' own metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from controller.domain import COLORS
from controller.engine import ReleaseEngine
from controller.errors import NotFound
from controller.page_traffic import TrafficSampler

_ASSETS = {
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
}
# The page changes with the package, never while a controller runs: no revalidation needed
# within a session, and a new controller version is a new page anyway.
_CACHE = {"Cache-Control": "no-cache"}


def _asset(name: str) -> bytes:
    return resources.files("controller").joinpath("static", name).read_bytes()


def page_router(engine: ReleaseEngine, *, token_required: bool) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def color_endpoints() -> dict[str, Sequence[str]]:
        # The engine's own view of each color's ready pods (one URL per pod on Kubernetes,
        # the color's process locally): what the bake reads, so the chart shows the same.
        return {color: engine.pods(color) for color in COLORS}

    sampler = TrafficSampler(endpoints=color_endpoints)

    @router.get("/")
    def page() -> HTMLResponse:
        return HTMLResponse(_asset("index.html"), headers=_CACHE)

    @router.get("/page/config")
    def config() -> dict[str, Any]:
        return {"model": engine.model, "token_required": token_required}

    @router.get("/page/traffic")
    def traffic() -> dict[str, Any]:
        """Per version: requests/s and 5xx/s at each sample of the last ten minutes."""
        points = sampler.sample()
        return {
            "pods": sampler.pods,
            "points": [
                {
                    "at": point.at,
                    "versions": {
                        version: {
                            "rps": round(counts.requests, 3),
                            "errors": round(counts.errors, 3),
                            "color": point.colors.get(version),
                        }
                        for version, counts in point.rates.items()
                    },
                }
                for point in points
            ],
        }

    @router.get("/page/{name}")
    def asset(name: str) -> Response:
        if name not in _ASSETS:
            raise NotFound(f"no page asset {name!r}")
        return Response(_asset(name), media_type=_ASSETS[name], headers=_CACHE)

    return router
