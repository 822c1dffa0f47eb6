"""The router forwards only plain paths to its color, faithfully.

A real `python -m router` process in front of a recording upstream; a canary listens on
another loopback port and must never hear from the router.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from plumbing.processes import python_module_command
from tests.support.http_servers import (
    Canary,
    RecordingUpstream,
    raw_request,
    read_answer,
    recording_upstream,
    status_of,
)
from tests.support.ports import free_port
from tests.support.router_process import RouterProcess, router_env, router_process

# Request targets that must never leave the router: {canary} is the other server's port.
ESCAPES = [
    "//127.0.0.1:{canary}/api/2.0/mlflow/registered-models/get?name=iris",
    "//127.0.0.1:{canary}/status",
    "///127.0.0.1:{canary}/x",
    "http://127.0.0.1:{canary}/predict",
    "/\\127.0.0.1:{canary}/x",
    "/..//127.0.0.1:{canary}/x",
    "/./predict",
    "/predict/../../x",
    "@127.0.0.1:{canary}/x",
    "127.0.0.1:{canary}",
    "*",
]


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    with Canary() as listener:
        yield listener


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with recording_upstream() as server:
        yield server


@pytest.fixture(scope="module")
def router(
    upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RouterProcess]:
    logs = tmp_path_factory.mktemp("router")
    with router_process(upstream.url, logs, ROUTER_MAX_BODY_BYTES=str(1024 * 1024)) as proxy:
        yield proxy


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("target", ESCAPES)
def test_no_target_but_a_plain_path_leaves_the_router(
    router: RouterProcess, upstream: RecordingUpstream, canary: Canary, target: str, method: str
) -> None:
    before = len(upstream.seen)
    path = target.format(canary=canary.port).encode()
    body = b'{"alias": "live", "version": "1"}' if method == "POST" else b""
    answer = raw_request(
        router.port,
        b"%s %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: %d\r\n\r\n%s"
        % (method.encode(), path, len(body), body),
    )
    time.sleep(0.05)
    assert canary.connections == 0, canary.received
    assert len(upstream.seen) == before, upstream.seen[before:]
    assert status_of(answer) == 400, answer[:300]
    assert answer.partition(b"\r\n\r\n")[2], "a 400 says why"


def test_a_plain_path_reaches_only_the_color(
    router: RouterProcess, upstream: RecordingUpstream, canary: Canary
) -> None:
    answer = httpx.post(f"{router.url}/predict?x=1&y=%2F%2F", content=b"[[1,2,3,4]]")
    assert answer.status_code == 200
    assert upstream.seen[-1].raw_path == b"/predict"
    assert upstream.seen[-1].body == b"[[1,2,3,4]]"
    assert canary.connections == 0


def test_headers_named_in_connection_are_dropped_both_ways(
    router: RouterProcess, upstream: RecordingUpstream
) -> None:
    answer = httpx.post(
        f"{router.url}/hop",
        content=b"[]",
        headers={
            "Connection": "keep-alive, X-Client-Secret",
            "X-Client-Secret": "c",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic eA==",
            "X-Kept": "yes",
        },
    )
    seen = upstream.seen[-1]
    assert seen.header("x-client-secret") == []
    assert seen.header("proxy-authorization") == []
    assert seen.header("keep-alive") == []
    assert seen.header("x-kept") == ["yes"]
    assert "x-upstream-secret" not in answer.headers
    assert answer.text == "ok"


def test_x_forwarded_for_is_appended(router: RouterProcess, upstream: RecordingUpstream) -> None:
    httpx.post(f"{router.url}/predict", content=b"[]", headers={"X-Forwarded-For": "10.1.2.3"})
    assert upstream.seen[-1].header("x-forwarded-for") == ["10.1.2.3, 127.0.0.1"]
    httpx.post(f"{router.url}/predict", content=b"[]")
    assert upstream.seen[-1].header("x-forwarded-for") == ["127.0.0.1"]


def test_a_client_gone_mid_body_forwards_nothing(
    router: RouterProcess, upstream: RecordingUpstream
) -> None:
    before = len(upstream.seen)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", router.port)) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n")
            sock.sendall(b"[[1, 2, 3, 4]]" * 10)  # 140 of the 1000 bytes, then gone
    time.sleep(0.5)
    assert upstream.seen[before:] == []
    metrics = httpx.get(f"{router.url}/_bluegreen/metrics").text
    assert 'bluegreen_router_requests_total{color="blue",status="499"}' in metrics
    assert 'status="500"' not in metrics


def test_an_over_limit_content_length_is_refused_at_once(router: RouterProcess) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as sock:
        # Declares 1 GB and sends none of it: the answer must not wait for the body.
        sock.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000000\r\n\r\n")
        answer = read_answer(sock)
    assert status_of(answer) == 413, answer
    assert b"payload_too_large" in answer
    assert time.monotonic() - started < 2


def test_a_huge_answer_is_streamed_not_buffered(router: RouterProcess) -> None:
    before = router.rss_mb()
    peak = before
    received = 0
    with httpx.stream("GET", f"{router.url}/big?mb=200", timeout=60) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_bytes():
            received += len(chunk)
            if received % (16 * 2**20) < len(chunk):
                peak = max(peak, router.rss_mb())
    assert received == 200 * 2**20
    assert peak - before < 60, f"router RSS grew {peak - before:.0f} MB for a 200 MB answer"


def test_a_corrupt_route_file_stops_the_router_with_a_message(tmp_path: Path) -> None:
    route = tmp_path / "route.json"
    for content in ("{not json", '{"color": "purple", "revision": "1"}', '["blue"]'):
        route.write_text(content)
        done = subprocess.run(
            python_module_command("router", "--port", str(free_port())),
            env=router_env("http://127.0.0.1:9", ROUTER_STATE_FILE=str(route)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "cannot start" in done.stderr and str(route) in done.stderr
        assert "Traceback" not in done.stderr
