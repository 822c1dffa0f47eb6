"""Continuous predictions to the live Service's ClusterIP, each answer timestamped.

Each request opens a fresh connection, which meets kube-proxy's rules afresh, so the
answers show where the Service sent it at that moment. Every answer keeps its start time
and the version and color headers the model server sets, so a test can ask what was served
after a given instant.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from bluegreen.client import ControllerClient

ROW = [[5.1, 3.5, 1.4, 0.2]]


# After the controller patches the live Service's selector (and answers), a new connection
# follows it once the EndpointSlice controller and the real kube-proxy have caught up: 0.17 s
# measured alone (2026-12-07), seconds on this loaded 2-core machine. Assertions about "after
# the switch" start this much later; `PredictLoad.last_answer` prints the lag seen.
ROUTE_SETTLES_S = 5.0


class Timed(Protocol):
    @property
    def started(self) -> float: ...
    @property
    def status(self) -> int: ...
    @property
    def version(self) -> str: ...


A = TypeVar("A", bound=Timed)


class AnswerLog(Generic[A]):
    """What a load client saw, asked by instant: failures, versions served, the last answer."""

    def __init__(self) -> None:
        self.answers: list[A] = []

    def failures(self) -> list[A]:
        return [a for a in self.answers if a.status != 200]

    def versions(self, *, since: float = 0.0, until: float = float("inf")) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.answers:
            if a.status == 200 and since <= a.started < until:
                counts[a.version] = counts.get(a.version, 0) + 1
        return counts

    def last_answer(self, version: str, *, since: float, until: float = float("inf")) -> float:
        """Seconds after ``since`` that ``version`` last started an answer (0: never)."""
        started = [
            a.started - since
            for a in self.answers
            if a.status == 200 and a.version == version and since <= a.started < until
        ]
        return max(started, default=0.0)

    def wait_for_answers(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for a in self.answers if a.status == 200) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {n} answers in {timeout} s: {self.answers[-3:]}")
            time.sleep(0.05)


@dataclass(frozen=True)
class Answer:
    started: float  # time.monotonic() when the request was sent
    status: int  # HTTP status, 0 for a connection error
    version: str
    color: str
    error: str = ""


class PredictLoad(AnswerLog[Answer]):
    def __init__(self, url: str, *, interval: float = 0.01) -> None:
        super().__init__()
        u = urllib.parse.urlsplit(url)
        self._host, self._port = u.hostname or "127.0.0.1", u.port or 80
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self) -> Answer:
        started = time.monotonic()
        conn = http.client.HTTPConnection(self._host, self._port, timeout=10)
        try:
            conn.request(
                "POST",
                "/predict",
                body=json.dumps(ROW),
                headers={"Content-Type": "application/json", "Connection": "close"},
            )
            resp = conn.getresponse()
            body = resp.read()
            error = "" if resp.status == 200 else body[:200].decode(errors="replace")
            return Answer(
                started,
                resp.status,
                resp.getheader("X-Model-Version", ""),
                resp.getheader("X-Serving-Color", ""),
                error,
            )
        except (OSError, http.client.HTTPException) as exc:
            return Answer(started, 0, "", "", repr(exc))
        finally:
            conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.answers.append(self._one())
            time.sleep(self._interval)

    def __enter__(self) -> PredictLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


@dataclass(frozen=True)
class Timeline:
    """A switch and the rollback after it: when each was asked and answered (monotonic), and
    the switch's record."""

    switch: dict[str, Any]
    asked: float
    switched: float
    rolling: float
    rolled: float


def switch_then_roll_back(
    api: ControllerClient, version: str, *, settle_s: float = ROUTE_SETTLES_S
) -> Timeline:
    """Switch to ``version``, let the route settle, roll back, let it settle again; both must
    succeed. A load runs meanwhile, and the test asks it what was served in each stretch."""
    asked = time.monotonic()
    op = api.switch(version=version)
    switched = time.monotonic()
    assert op["status"] == "promoted", op
    time.sleep(settle_s + 2)
    rolling = time.monotonic()
    back = api.rollback()
    rolled = time.monotonic()
    assert back["status"] == "rolled_back", back
    time.sleep(settle_s + 2)
    return Timeline(op, asked, switched, rolling, rolled)
