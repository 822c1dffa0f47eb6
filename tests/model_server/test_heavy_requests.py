"""Huge bodies do not block other requests, a row cap bounds one request, and a client that
leaves mid-body is a 499 with one log line at most.

The session's real `python -m model_server` process (`tests/support/model_servers.py`).
"""

from __future__ import annotations

import socket
import statistics
import threading
import time

import httpx

from tests.support.model_servers import ModelServerProcess

ROW = [5.1, 3.5, 1.4, 0.2]


def _rows_body(rows: int) -> bytes:
    return b"[" + b",".join([b"[5.1,3.5,1.4,0.2]"] * rows) + b"]"


def test_a_request_over_the_row_cap_is_413_with_a_message(model_server: ModelServerProcess) -> None:
    at_cap = httpx.post(f"{model_server.url}/predict", content=_rows_body(10_000), timeout=60)
    assert at_cap.status_code == 200
    assert len(at_cap.json()["prediction"]) == 10_000
    over = httpx.post(f"{model_server.url}/predict", content=_rows_body(10_001), timeout=60)
    assert over.status_code == 413
    assert "10001 rows" in over.json()["message"] or "10001" in over.text
    assert "10000" in over.text


def test_huge_bodies_do_not_hold_up_a_one_row_probe(model_server: ModelServerProcess) -> None:
    huge = _rows_body(330_000)  # ~6.3 MB, under the 8 MB body limit, far over the row cap
    assert len(huge) < 8 * 2**20
    probes: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                started = time.perf_counter()
                assert client.post(f"{model_server.url}/predict", json=[ROW]).status_code == 200
                probes.append(time.perf_counter() - started)
                time.sleep(0.005)

    def upload() -> None:
        with httpx.Client(timeout=60) as client:
            for _ in range(2):
                code = client.post(f"{model_server.url}/predict", content=huge).status_code
                assert code == 413

    prober = threading.Thread(target=probe)
    uploaders = [threading.Thread(target=upload) for _ in range(4)]
    prober.start()
    time.sleep(0.3)
    for thread in uploaders:
        thread.start()
    for thread in uploaders:
        thread.join()
    done.set()
    prober.join()
    assert len(probes) > 10
    slowest = max(probes) * 1000
    median = statistics.median(probes) * 1000
    # orjson holds the GIL for a whole decode, so a decode in a worker thread still stops the
    # loop (1.3 s in the issue; 0.49 s here on a quiet machine with the decode in a thread);
    # decoded in a child process, the slowest probe was 20 ms.
    assert slowest < 200, f"a 1-row probe took {slowest:.0f} ms (median {median:.1f} ms)"


def _abandon(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 100000\r\n\r\n" + b"[" + b"[5.1,3.5,1.4,0.2]," * 60
        )
        time.sleep(0.02)  # the server is now reading the body


def test_a_client_leaving_mid_body_is_a_499_and_one_line_at_most(
    model_server: ModelServerProcess,
) -> None:
    before = model_server.output()
    for _ in range(40):
        _abandon(model_server.port)
    time.sleep(1.0)
    metrics = httpx.get(f"{model_server.url}/metrics").text
    counted = [
        line for line in metrics.splitlines() if line.startswith("bluegreen_model_requests_total")
    ]
    assert any('status="499"' in line and line.endswith(" 40.0") for line in counted), counted
    assert not any('status="500"' in line for line in counted), counted
    logged = model_server.output()[len(before) :]
    assert "Traceback" not in logged
    assert len(logged.splitlines()) <= 40, logged[-2000:]
