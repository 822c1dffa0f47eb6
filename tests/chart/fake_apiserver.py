"""A read-only Kubernetes API stand-in, just enough for helm's ``lookup``.

``helm template --dry-run=server`` asks the cluster for discovery (``/version``, ``/api``,
``/apis``, the resource lists) and then GETs each object a template ``lookup``s. This
server answers those from a dict of objects and refuses every write (500), so a test can
show what a ``helm upgrade`` would render over controller-modified objects without a
cluster. Used by test_chart_lookup.py only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# group/version path -> (resource, kind) of everything the chart renders
RESOURCES: dict[str, list[tuple[str, str]]] = {
    "/api/v1": [
        ("services", "Service"),
        ("secrets", "Secret"),
        ("serviceaccounts", "ServiceAccount"),
        ("configmaps", "ConfigMap"),
        ("pods", "Pod"),
    ],
    "/apis/apps/v1": [("deployments", "Deployment")],
    "/apis/rbac.authorization.k8s.io/v1": [("roles", "Role"), ("rolebindings", "RoleBinding")],
    "/apis/policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget")],
    "/apis/autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler")],
    "/apis/coordination.k8s.io/v1": [("leases", "Lease")],
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def object_path(obj: dict[str, Any]) -> str:
    """The REST path of a namespaced object, e.g. /apis/apps/v1/namespaces/ns/deployments/x."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    (resource,) = [r for r, k in RESOURCES[prefix] if k == kind]
    meta = obj["metadata"]
    return f"{prefix}/namespaces/{meta['namespace']}/{resource}/{meta['name']}"


def helm_owned(obj: dict[str, Any], release: str) -> dict[str, Any]:
    """Add the ownership metadata helm puts on the objects of a release."""
    meta = obj["metadata"]
    meta.setdefault("labels", {})["app.kubernetes.io/managed-by"] = "Helm"
    meta.setdefault("annotations", {}).update(
        {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": meta["namespace"]}
    )
    return obj


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self) -> None:
        self.server.writes.append(f"{self.command} {self.path}")
        self._send(500, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500})

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.reads.append(path)
        if path == "/version":
            return self._send(200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0"})
        if path == "/api":
            return self._send(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
                    ],
                },
            )
        if path == "/apis":
            groups = []
            for gv_path in RESOURCES:
                if gv_path.startswith("/apis/"):
                    group, version = gv_path.removeprefix("/apis/").split("/")
                    gv = {"groupVersion": f"{group}/{version}", "version": version}
                    groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if path in RESOURCES:
            group_version = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
            resources = [
                {
                    "name": r,
                    "singularName": k.lower(),
                    "namespaced": True,
                    "kind": k,
                    "verbs": VERBS,
                }
                for r, k in RESOURCES[path]
            ]
            return self._send(
                200,
                {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": group_version,
                    "resources": resources,
                },
            )
        if path in self.server.objects:
            return self._send(200, self.server.objects[path])
        return self._send(
            404,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
                "message": f"{path} not found",
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects = objects
        self.reads: list[str] = []
        self.writes: list[str] = []


@contextmanager
def fake_apiserver(objects: list[dict[str, Any]], workdir: Path) -> Iterator[tuple[_Server, Path]]:
    """Serve ``objects``; yield the server (with .reads/.writes) and a kubeconfig path."""
    server = _Server({object_path(o): o for o in objects})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = workdir / "kubeconfig"
    host, port = server.server_address[:2]
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://{host}:{port}"}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    try:
        yield server, kubeconfig
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
