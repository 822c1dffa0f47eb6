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

from tests.cluster.load import ROW, AnswerLog


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


class KeepAliveClients(AnswerLog[KeptAnswer]):
    def __init__(self, url: str, *, clients: int = 3, interval: float = 0.02) -> None:
        super().__init__()
        u = urllib.parse.urlsplit(url)
        self._host, self._port = u.hostname or "127.0.0.1", u.port or 80
        self._interval = interval
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
