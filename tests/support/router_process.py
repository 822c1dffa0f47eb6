"""Real `python -m router` processes for the tests, in front of any upstream.

Used by tests/router and tests/security; the router's log goes to a file in `logs`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from plumbing.processes import child_env, python_module_command, spawn, stop, wait_http_ok
from tests.support.ports import free_port
from tests.support.processes import ServerProcess


class RouterProcess(ServerProcess):
    def rss_mb(self) -> float:
        return psutil.Process(self.process.pid).memory_info().rss / 2**20


def router_env(upstream: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "BLUEGREEN_"))}
    return child_env(base, ROUTER_BLUE_URL=upstream, ROUTER_GREEN_URL=upstream, **extra)


@contextmanager
def router_process(upstream: str, logs: Path, **extra: str) -> Iterator[RouterProcess]:
    """`python -m router` in front of `upstream` (both colors), `extra` env on top."""
    port = free_port()
    log = logs / f"router-{port}.log"
    process = spawn(
        python_module_command("router", "--port", str(port)),
        env=router_env(upstream, **extra),
        log_path=log,
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/_bluegreen/healthz", timeout_s=30, process=process)
        yield RouterProcess(process, port, log)
    finally:
        stop(process)
