"""An ingress stand-in: serves the controller under a path prefix (`/bluegreen/`), stripped
before forwarding, as an ingress with a rewrite does. Loopback only, one thread per request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_FORWARDED = ("authorization", "content-type", "accept")


@contextmanager
def prefix_proxy(upstream: str, prefix: str = "/bluegreen") -> Iterator[str]:
    """Yields the proxy's base URL, ending in `prefix/`."""
    client = httpx.Client(base_url=upstream, timeout=60)

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if not self.path.startswith(prefix + "/"):
                self.send_error(404, "outside the prefix")
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED}
            answer = client.request(
                self.command, self.path[len(prefix) :], content=body, headers=headers
            )
            self.send_response(answer.status_code)
            for name in ("content-type", "cache-control", "location"):
                if name in answer.headers:
                    self.send_header(name, answer.headers[name])
            self.send_header("content-length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{prefix}/"
    finally:
        server.shutdown()
        server.server_close()
        client.close()
