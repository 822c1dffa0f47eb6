"""The local router over real HTTP: live routing, the conditional flip, in-flight requests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from router.app import LocalRouter
from router.settings import RouterSettings
from tests.support.ports import free_port

TOKEN = "router-admin-token"


def color_app(color: str) -> Starlette:
    """An upstream that says which color it is; `?delay=` holds the answer."""

    async def echo(request: Request) -> JSONResponse:
        await asyncio.sleep(float(request.query_params.get("delay", 0)))
        body = await request.body()
        return JSONResponse(
            {"color": color, "echo": body.decode()}, headers={"x-serving-color": color}
        )

    return Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])])


class ServerThread:
    def __init__(self, app: object, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def router(tmp_path: Path) -> Iterator[str]:
    with (
        ServerThread(color_app("blue"), free_port()) as blue,
        ServerThread(color_app("green"), free_port()) as green,
    ):
        settings = RouterSettings(
            blue_url=blue.url,
            green_url=green.url,
            admin_token=TOKEN,
            state_file=tmp_path / "route.json",
            max_body_bytes=1024,
        )
        with ServerThread(LocalRouter(settings), free_port()) as proxy:
            yield proxy.url


def flip(router: str, color: str, revision: str, token: str = TOKEN) -> httpx.Response:
    return httpx.put(
        f"{router}/_bluegreen/route",
        json={"color": color, "expected_revision": revision},
        headers={"authorization": f"Bearer {token}"},
    )


def test_routes_to_the_live_color_and_forwards_body_and_query(router: str) -> None:
    answer = httpx.post(f"{router}/predict?x=1", content=b"[[1,2,3,4]]")
    assert answer.status_code == 200
    assert answer.json() == {"color": "blue", "echo": "[[1,2,3,4]]"}
    assert answer.headers["x-serving-color"] == "blue"


def test_flip_is_conditional_on_the_revision(router: str) -> None:
    route = httpx.get(f"{router}/_bluegreen/route").json()
    assert route["color"] == "blue"
    flipped = flip(router, "green", route["revision"])
    assert flipped.status_code == 200
    assert flipped.json()["color"] == "green"
    assert int(flipped.json()["revision"]) == int(route["revision"]) + 1
    stale = flip(router, "blue", route["revision"])
    assert stale.status_code == 409
    assert httpx.post(f"{router}/predict").json()["color"] == "green"


def test_flip_needs_token_and_valid_body(router: str) -> None:
    revision = httpx.get(f"{router}/_bluegreen/route").json()["revision"]
    assert flip(router, "green", revision, token="wrong").status_code == 401
    assert flip(router, "purple", revision).status_code == 400
    bad = httpx.put(
        f"{router}/_bluegreen/route", content=b"{", headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert bad.status_code == 400
    assert httpx.get(f"{router}/_bluegreen/route").json()["color"] == "blue"


def test_in_flight_requests_finish_on_their_color(router: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        slow = [
            pool.submit(httpx.post, f"{router}/predict?delay=0.8", timeout=10) for _ in range(3)
        ]
        time.sleep(0.3)  # the slow requests are now in flight on blue
        revision = httpx.get(f"{router}/_bluegreen/route").json()["revision"]
        assert flip(router, "green", revision).status_code == 200
        after = httpx.post(f"{router}/predict")
        assert after.json()["color"] == "green"
        assert [f.result().json()["color"] for f in slow] == ["blue"] * 3


def test_concurrent_flips_with_the_same_revision_one_wins(router: str) -> None:
    revision = httpx.get(f"{router}/_bluegreen/route").json()["revision"]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: flip(router, "green", revision).status_code, range(8)))
    assert codes.count(200) == 1
    assert codes.count(409) == 7


def test_over_limit_body_is_413(router: str) -> None:
    assert httpx.post(f"{router}/predict", content=b"x" * 2048).status_code == 413


def test_route_survives_a_router_restart(tmp_path: Path) -> None:
    settings = RouterSettings(
        blue_url="http://127.0.0.1:9",
        green_url="http://127.0.0.1:9",
        admin_token=TOKEN,
        state_file=tmp_path / "route.json",
    )
    with ServerThread(LocalRouter(settings), free_port()) as proxy:
        revision = httpx.get(f"{proxy.url}/_bluegreen/route").json()["revision"]
        assert flip(proxy.url, "green", revision).status_code == 200
    with ServerThread(LocalRouter(settings), free_port()) as proxy:
        assert httpx.get(f"{proxy.url}/_bluegreen/route").json()["color"] == "green"
        down = httpx.post(f"{proxy.url}/predict")
        assert down.status_code == 502
        assert "unreachable" in down.json()["detail"]
