"""Slow and huge clients cost every part (router, model server, controller) a bounded
amount, and normal clients keep being served.

Each part runs as a real process with 128 file descriptors (as a small container would
have) and small limits, so the bounds show within seconds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from plumbing.processes import child_env, python_module_command, spawn, stop, wait_http_ok
from tests.support.http_servers import recording_upstream, status_of
from tests.support.iris import IrisVersions
from tests.support.ports import free_port

HEAD_TIMEOUT_S = 1.5
BODY_TIMEOUT_S = 1.5
MAX_HEAD_BYTES = 16 * 1024
MAX_CONNECTIONS = 60
FD_LIMIT = 128
FLOOD = 200  # slow connections: more than the process has file descriptors


@dataclass
class Part:
    name: str
    url: str
    port: int
    probe: str  # a cheap GET that answers 200


def _limits(prefix: str) -> dict[str, str]:
    return {
        f"{prefix}__HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S),
        f"{prefix}__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        f"{prefix}__MAX_HEAD_BYTES": str(MAX_HEAD_BYTES),
        f"{prefix}__MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }


@contextlib.contextmanager
def _run(name: str, module: str, env: dict[str, str], probe: str, logs: Path) -> Iterator[Part]:
    port = free_port()
    command = [
        "prlimit",
        f"--nofile={FD_LIMIT}:{FD_LIMIT}",
        *python_module_command(module, "--port", str(port)),
    ]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "BLUEGREEN_"))}
    process = spawn(command, env=child_env(clean, **env), log_path=logs / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}{probe}", timeout_s=120, process=process, what=name)
        yield Part(name, url, port, probe)
    finally:
        stop(process)


@pytest.fixture(scope="module", params=["router", "model_server", "controller"])
def part(
    request: pytest.FixtureRequest, iris: IrisVersions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Part]:
    logs = tmp_path_factory.mktemp("slow")
    name = request.param
    if name == "router":
        with (
            recording_upstream() as upstream,
            _run(
                name,
                "router",
                {"ROUTER_BLUE_URL": upstream.url, **_limits("ROUTER_LIMITS")},
                "/_bluegreen/healthz",
                logs,
            ) as running,
        ):
            yield running
    elif name == "model_server":
        env = {
            "MLFLOW_TRACKING_URI": iris.tracking_uri,
            "MODEL_NAME": iris.model,
            "MODEL_VERSION": iris.good,
            "SERVING_COLOR": "blue",
            **_limits("MODEL_SERVER_LIMITS"),
        }
        with _run(name, "model_server", env, "/readyz", logs) as running:
            yield running
    else:
        env = {
            "MLFLOW_TRACKING_URI": iris.tracking_uri,
            "BLUEGREEN_MODEL": iris.model,
            "BLUEGREEN_STATE_DIR": str(logs / "state"),
            "BLUEGREEN_ROUTER_URL": f"http://127.0.0.1:{free_port()}",
            **_limits("BLUEGREEN_LIMITS"),
        }
        with _run(name, "controller", env, "/healthz", logs) as running:
            yield running


def _slow_head(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")  # ... and never the rest
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server said before closing, or None if it kept the socket open."""
    sock.settimeout(seconds)
    said = b""
    try:
        while chunk := sock.recv(4096):
            said += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return said


def test_a_slow_header_flood_costs_normal_clients_nothing(part: Part) -> None:
    flood: list[socket.socket] = []
    try:
        for _ in range(FLOOD):
            with contextlib.suppress(OSError):
                flood.append(_slow_head(part.port))
        time.sleep(0.2)
        with httpx.Client(timeout=5) as client:
            codes = [client.get(f"{part.url}{part.probe}").status_code for _ in range(10)]
            fresh = [httpx.get(f"{part.url}{part.probe}", timeout=5).status_code for _ in range(10)]
    finally:
        for sock in flood:
            sock.close()
    assert codes == [200] * 10
    assert fresh == [200] * 10


def test_a_head_that_never_ends_is_cut_with_408(part: Part) -> None:
    sock = _slow_head(part.port)
    started = time.monotonic()
    with sock:
        said = _closed_within(sock, HEAD_TIMEOUT_S + 5)
    assert said is not None, "the connection was kept open"
    assert status_of(said) == 408, said
    assert time.monotonic() - started < HEAD_TIMEOUT_S + 3


def test_a_head_over_the_cap_is_refused_with_431(part: Part) -> None:
    with socket.create_connection(("127.0.0.1", part.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-huge: " + b"a" * MAX_HEAD_BYTES)
        said = _closed_within(sock, 5)
    assert said is not None and status_of(said) == 431, said


def test_a_huge_head_is_not_buffered(part: Part) -> None:
    sent = 0
    with socket.create_connection(("127.0.0.1", part.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-huge: ")
        with contextlib.suppress(OSError):
            while sent < 64 * 2**20:  # the server stops reading long before 64 MB
                sock.sendall(b"a" * 65536)
                sent += 65536
    assert sent < 16 * 2**20, f"the server took {sent >> 20} MB of head"
    assert httpx.get(f"{part.url}{part.probe}", timeout=5).status_code == 200


def test_a_body_that_never_ends_closes_the_connection(part: Part) -> None:
    with socket.create_connection(("127.0.0.1", part.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n[[1,")
        started = time.monotonic()
        said = _closed_within(sock, BODY_TIMEOUT_S + 5)
    assert said is not None, "the connection was kept open"
    assert time.monotonic() - started < BODY_TIMEOUT_S + 3
    # still serving after it
    assert httpx.get(f"{part.url}{part.probe}", timeout=5).status_code == 200
