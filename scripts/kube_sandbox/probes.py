"""Probe and lifecycle-hook actions, as a kubelet runs them (asyncio).

Used by the pod runtime (``pod``): ``http_get`` and ``tcp_socket`` connect from the host to
the pod's address, as a kubelet does; exec actions run inside the pod through a callback
the runtime gives. ``Prober`` runs one probe of one container on its schedule
(initialDelaySeconds, periodSeconds, timeoutSeconds) and reports a result only when
successThreshold / failureThreshold consecutive outcomes agree.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

Obj = dict[str, Any]
ExecFn = Callable[[list[str], float], Awaitable[tuple[bool, str]]]
PortFn = Callable[[Any], int]

USER_AGENT = "kube-probe/1.34"


async def http_get(action: Obj, pod_ip: str, port_of: PortFn, timeout: float) -> tuple[bool, str]:
    host = action.get("host") or pod_ip
    port = port_of(action.get("port"))
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    scheme = (action.get("scheme") or "HTTP").upper()
    headers = {"Host": f"{host}:{port}", "User-Agent": USER_AGENT, "Accept": "*/*"}
    for h in action.get("httpHeaders") or []:
        headers[h["name"]] = h["value"]
    headers["Connection"] = "close"
    ctx = None
    if scheme == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
            req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write((req + "\r\n").encode())
            await writer.drain()
            line = await reader.readline()
        parts = line.decode(errors="replace").split()
        if len(parts) < 2 or not parts[1].isdigit():
            return False, f"bad HTTP response {line[:80]!r}"
        code = int(parts[1])
        if 200 <= code < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {code}"
    except TimeoutError:
        return False, f'Get "http://{host}:{port}{path}": context deadline exceeded'
    except OSError as e:
        return False, f'Get "http://{host}:{port}{path}": {e.strerror or e}'
    finally:
        if writer is not None:
            writer.close()


async def tcp_socket(action: Obj, pod_ip: str, port_of: PortFn, timeout: float) -> tuple[bool, str]:
    host = action.get("host") or pod_ip
    port = port_of(action.get("port"))
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
        return True, ""
    except TimeoutError:
        return False, f"dial tcp {host}:{port}: i/o timeout"
    except OSError as e:
        return False, f"dial tcp {host}:{port}: {e.strerror or e}"


async def run_action(
    action: Obj, *, pod_ip: str, port_of: PortFn, exec_fn: ExecFn, timeout: float
) -> tuple[bool, str]:
    """One probe or hook action: exec, httpGet, tcpSocket or sleep."""
    if "exec" in action:
        return await exec_fn(list(action["exec"].get("command") or []), timeout)
    if "httpGet" in action:
        return await http_get(action["httpGet"], pod_ip, port_of, timeout)
    if "tcpSocket" in action:
        return await tcp_socket(action["tcpSocket"], pod_ip, port_of, timeout)
    if "sleep" in action:
        await asyncio.sleep(min(float(action["sleep"]["seconds"]), timeout))
        return True, ""
    if "grpc" in action:
        return False, "grpc probes are not supported by kube-sandbox"
    return False, "no probe action"


class Prober:
    """Runs one probe until cancelled; calls ``on_result(ok, message)`` on each flip."""

    def __init__(
        self,
        kind: str,
        spec: Obj,
        *,
        started_at: float,
        run: Callable[[float], Awaitable[tuple[bool, str]]],
        on_result: Callable[[bool, str], None],
        on_failure_attempt: Callable[[str], None] | None = None,
    ):
        self.kind = kind
        self.spec = spec
        self.started_at = started_at
        self.run_once = run
        self.on_result = on_result
        self.on_failure_attempt = on_failure_attempt
        self.period = max(1, int(spec.get("periodSeconds", 10)))
        self.timeout = max(1, int(spec.get("timeoutSeconds", 1)))
        self.success_threshold = max(1, int(spec.get("successThreshold", 1)))
        self.failure_threshold = max(1, int(spec.get("failureThreshold", 3)))
        self.initial_delay = int(spec.get("initialDelaySeconds", 0))
        self.result: bool | None = None
        self._successes = 0
        self._failures = 0

    async def loop(self) -> None:
        delay = self.started_at + self.initial_delay - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        while True:
            t0 = time.monotonic()
            ok, msg = await self.run_once(self.timeout)
            self.record(ok, msg)
            await asyncio.sleep(max(0.0, self.period - (time.monotonic() - t0)))

    def record(self, ok: bool, msg: str) -> None:
        if ok:
            self._successes += 1
            self._failures = 0
            if self.result is not True and self._successes >= self.success_threshold:
                self.result = True
                self.on_result(True, "")
        else:
            self._failures += 1
            self._successes = 0
            if self.on_failure_attempt:
                self.on_failure_attempt(msg)
            if self.result is not False and self._failures >= self.failure_threshold:
                self.result = False
                self.on_result(False, msg)
