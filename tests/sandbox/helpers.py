"""Helpers of the sandbox tests: objects to create, waits, a tiny HTTP server, a load loop.

Everything talks to the sandbox with the official ``kubernetes`` client as admin.
``SERVER`` is the program the test pods run (``python3 -c SERVER``): it answers its pod name
and version on ``/``, readiness on ``/ready`` (flipped by ``/set-ready?v=0|1``), and logs
SIGTERM with a timestamp; with ``IGNORE_SIGTERM=1`` it keeps running so the kubelet's SIGKILL
is what ends it.
"""

from __future__ import annotations

import re
import time
from typing import Any

from tests.support.kube import Kube, Load, http_get, wait_for

__all__ = ["Kube", "Load", "http_get", "wait_for"]

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
