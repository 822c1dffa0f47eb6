"""`kubectl port-forward svc/NAME` as the README and the chart's NOTES tell operators to run it.

``PortForward`` starts the real kubectl (the one scripts/install-helm.py puts in .tools/bin)
on a free local port of 127.0.0.1, waits for its "Forwarding from" line, and offers GETs
through it on fresh connections. kubectl resolves the Service to one of its pods when it
starts and forwards to that pod only, through the API server and the kubelet.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

from tests.support.chart import TOOLS_BIN
from tests.support.kube import http_get


def kubectl() -> str:
    local = TOOLS_BIN / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    assert found, "kubectl not found: run scripts/install-helm.py .tools/bin"
    return found


class PortForward:
    def __init__(self, *, kubeconfig: Path, namespace: str, target: str, remote_port: int):
        self._argv = [
            kubectl(),
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            namespace,
            "port-forward",
            "--address",
            "127.0.0.1",
            target,
            f":{remote_port}",
        ]
        self.output: list[str] = []
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> PortForward:
        self._proc = subprocess.Popen(
            self._argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()

        def read() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                self.output.append(line.rstrip())
                if line.startswith("Forwarding from 127.0.0.1:"):
                    self.port = int(line.split("127.0.0.1:", 1)[1].split()[0])
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30) or not self.port:
            self.__exit__()
            raise AssertionError(f"port-forward did not start: {self.output}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.port}{path}", timeout=timeout)

    def get_retrying(self, path: str, timeout: float = 20) -> tuple[int, str]:
        """The first answer; the forward's first connection may race its listener."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get(path)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
