"""Keep-alive clients of the live Service: each holds one connection open as long as it may.

The real kube-proxy picks an endpoint when a connection opens and keeps it there: a client
that never reconnects stays on the old color after a flip. What moves it is the model
server's ``Connection: close`` on every answer once it is told it is no longer live; the
client (``http.client``) then opens a new connection, which kube-proxy sends to the new color.
Each answer keeps its start time, the version and color headers and whether the server
closed the connection after it.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass

ROW = [[5.1, 3.5, 1.4, 0.2]]


@dataclass(frozen=True)
class KeptAnswer:
    client: int
    started: float
    status: int  # 0 for a connection error
    version: str
    color: str
    closed: bool  # the server answered with Connection: close
    connection: int  # which of this client's connections carried it
    error: str = ""


class KeepAliveClients:
    def __init__(self, url: str, *, clients: int = 3, interval: float = 0.02) -> None:
        u = urllib.parse.urlsplit(url)
        self._host, self._port = u.hostname or "127.0.0.1", u.port or 80
        self._interval = interval
        self.answers: list[KeptAnswer] = []
        self.connections_opened = [0] * clients
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)
        ]

    def _run(self, index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=10)
                self.connections_opened[index] += 1
            started = time.monotonic()
            try:
                conn.request(
                    "POST",
                    "/predict",
                    body=json.dumps(ROW),
                    headers={"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
                resp.read()
                closed = resp.will_close
                self.answers.append(
                    KeptAnswer(
                        index,
                        started,
                        resp.status,
                        resp.getheader("X-Model-Version", ""),
                        resp.getheader("X-Serving-Color", ""),
                        closed,
                        self.connections_opened[index],
                    )
                )
                if closed:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self.answers.append(
                    KeptAnswer(
                        index, started, 0, "", "", True, self.connections_opened[index], repr(exc)
                    )
                )
                conn.close()
                conn = None
            time.sleep(self._interval)
        if conn is not None:
            conn.close()

    def __enter__(self) -> KeepAliveClients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def connections(self, *, until: float) -> int:
        """How many connections carried the answers that started before ``until``."""
        return len({(a.client, a.connection) for a in self.answers if a.started < until})

    def failures(self) -> list[KeptAnswer]:
        return [a for a in self.answers if a.status != 200]

    def versions(self, *, since: float = 0.0, until: float = float("inf")) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.answers:
            if a.status == 200 and since <= a.started < until:
                counts[a.version] = counts.get(a.version, 0) + 1
        return counts

    def last_old_answer(
        self, old_version: str, *, since: float, until: float = float("inf")
    ) -> float | None:
        """When the last answer by ``old_version`` started in [since, until) (None: none)."""
        olds = [
            a.started
            for a in self.answers
            if a.status == 200 and a.version == old_version and since <= a.started < until
        ]
        return max(olds) if olds else None

    def wait_for_answers(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for a in self.answers if a.status == 200) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {n} answers in {timeout} s: {self.answers[-3:]}")
            time.sleep(0.05)
