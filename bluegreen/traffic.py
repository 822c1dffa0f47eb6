"""Steady client traffic through the router, recording which version served each request.

Used by `bluegreen demo` and the tests to prove "zero failed requests while traffic
moves" and "every request after the flip is served by the new version".
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

IRIS_ROW = [[5.1, 3.5, 1.4, 0.2]]


@dataclass(frozen=True)
class Served:
    started: float
    finished: float
    status: int  # 0 when the request failed without an HTTP answer
    version: str | None
    color: str | None


@dataclass
class TrafficProbe:
    """`clients` threads posting to `url` until stopped."""

    url: str
    clients: int = 4
    payload: object = field(default_factory=lambda: IRIS_ROW)
    pause_s: float = 0.0
    records: list[Served] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> TrafficProbe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for index in range(self.clients):
            thread = threading.Thread(target=self._run, name=f"traffic-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    answer = client.post(self.url, json=self.payload)
                    served = Served(
                        started,
                        time.monotonic(),
                        answer.status_code,
                        answer.headers.get("x-model-version"),
                        answer.headers.get("x-serving-color"),
                    )
                except httpx.HTTPError:
                    served = Served(started, time.monotonic(), 0, None, None)
                with self._lock:
                    self.records.append(served)
                if self.pause_s:
                    time.sleep(self.pause_s)

    def snapshot(self) -> list[Served]:
        with self._lock:
            return list(self.records)

    def failed(self) -> list[Served]:
        return [r for r in self.snapshot() if r.status != 200]

    def by_version(self) -> Counter[str]:
        return Counter(r.version or "failed" for r in self.snapshot())
