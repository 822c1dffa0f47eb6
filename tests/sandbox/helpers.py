"""Helpers of the sandbox tests: objects to create, waits, a tiny HTTP server, a load loop.

Everything talks to the sandbox with the official ``kubernetes`` client as admin.
``SERVER`` is the program the test pods run (``python3 -c SERVER``): it answers its pod name
and version on ``/``, readiness on ``/ready`` (flipped by ``/set-ready?v=0|1``), and logs
SIGTERM with a timestamp; with ``IGNORE_SIGTERM=1`` it keeps running so the kubelet's SIGKILL
is what ends it.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, utils
from kubernetes.client.rest import ApiException

SERVER = r"""
import http.server, os, signal, socketserver, sys, threading, time
NAME = os.environ.get("POD_NAME", "?")
VERSION = os.environ.get("VERSION", "v1")
state = {"ready": True, "live": True}
def log(msg):
    print(f"{time.time():.3f} {msg}", flush=True)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _send(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path.startswith("/set-ready"):
            state["ready"] = self.path.endswith("v=1")
            return self._send(200, str(state["ready"]))
        if self.path.startswith("/set-live"):
            state["live"] = self.path.endswith("v=1")
            return self._send(200, str(state["live"]))
        if self.path == "/healthz":
            return self._send(200 if state["live"] else 500, "")
        if self.path == "/ready":
            return self._send(200 if state["ready"] else 503, "ready" if state["ready"] else "no")
        if self.path == "/prestop":
            log("prestop-http")
            return self._send(200, "ok")
        return self._send(200, f"{NAME} {VERSION}")
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
srv = S(("0.0.0.0", int(os.environ.get("PORT", "8080"))), H)
def term(signum, frame):
    log("sigterm")
    if os.environ.get("IGNORE_SIGTERM") == "1":
        return
    if os.environ.get("EXIT_ON_SIGTERM") == "1":
        os._exit(0)
    threading.Thread(target=srv.shutdown, daemon=True).start()
signal.signal(signal.SIGTERM, term)
log(f"serving {NAME} {VERSION}")
srv.serve_forever()
log("exiting")
"""


def namespace_name(test_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{int(time.time() * 1000) % 100000}"


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 60, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except ApiException as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    """One request on a fresh connection (as each new client connection meets the proxy)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        conn.request("GET", target, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def server_container(
    *,
    env: dict[str, str] | None = None,
    readiness: dict | None = None,
    pre_stop: dict | None = None,
    volume_mounts: list[dict] | None = None,
) -> dict:
    envs = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *({"name": k, "value": v} for k, v in (env or {}).items()),
    ]
    c: dict = {
        "name": "server",
        "image": "example.invalid/tiny-server:1",
        "command": ["python3", "-c", SERVER],
        "env": envs,
        "ports": [{"name": "http", "containerPort": 8080}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 2},
        "readinessProbe": readiness
        or {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
    }
    if pre_stop:
        c["lifecycle"] = {"preStop": pre_stop}
    if volume_mounts:
        c["volumeMounts"] = volume_mounts
    return c


def deployment(
    name: str,
    *,
    replicas: int = 2,
    container: dict | None = None,
    grace: int = 10,
    extra_spec: dict | None = None,
) -> dict:
    labels = {"app": name}
    spec = {
        "terminationGracePeriodSeconds": grace,
        "containers": [container or server_container()],
    }
    spec.update(extra_spec or {})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def service(name: str, port: int = 80, target: Any = "http") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "web", "port": port, "targetPort": target}],
        },
    }


@dataclass
class Kube:
    """The official client's APIs, as admin of one sandbox."""

    sandbox: Any
    api: client.ApiClient = field(init=False)

    def __post_init__(self) -> None:
        self.api = self.sandbox.api_client()
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.discovery = client.DiscoveryV1Api(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)

    def create(self, ns: str, obj: dict) -> None:
        utils.create_from_dict(self.api, obj, namespace=ns)

    def create_namespace(self, name: str) -> None:
        self.create(None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        wait_for(
            f"default ServiceAccount in {name}",
            lambda: self.core.read_namespaced_service_account("default", name),
            timeout=30,
        )

    def delete_namespace(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_namespace(name)

    def pods(self, ns: str, selector: str | None = None) -> list:
        return self.core.list_namespaced_pod(ns, label_selector=selector).items

    def ready_pods(self, ns: str, selector: str) -> list:
        out = []
        for p in self.pods(ns, selector):
            conds = {c.type: c.status for c in p.status.conditions or []}
            if conds.get("Ready") == "True" and not p.metadata.deletion_timestamp:
                out.append(p)
        return out

    def wait_available(self, ns: str, name: str, replicas: int, timeout: float = 90) -> Any:
        def check():
            d = self.apps.read_namespaced_deployment(name, ns)
            st = d.status
            conds = {c.type: c.status for c in st.conditions or []}
            return (
                d
                if st.observed_generation == d.metadata.generation
                and conds.get("Available") == "True"
                and (st.updated_replicas or 0) == replicas
                and (st.available_replicas or 0) == replicas
                and (st.replicas or 0) == replicas
                else None
            )

        return wait_for(f"deployment {ns}/{name} available with {replicas}", check, timeout)

    def wait_pod_phase(self, ns: str, name: str, phases: set[str], timeout: float = 60) -> Any:
        def check():
            p = self.core.read_namespaced_pod(name, ns)
            return p if p.status.phase in phases else None

        return wait_for(f"pod {ns}/{name} in {phases}", check, timeout)


class Load:
    """Requests in a loop on fresh connections, counting answers and failures."""

    def __init__(self, url: str, interval: float = 0.005):
        self.url = url
        self.interval = interval
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                code, body = http_get(self.url, timeout=5)
                if code == 200:
                    self.answers.append(body)
                else:
                    self.failures.append(f"HTTP {code}")
            except OSError as e:
                self.failures.append(repr(e))
            except http.client.HTTPException as e:
                self.failures.append(repr(e))
            time.sleep(self.interval)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
