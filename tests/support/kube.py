"""The official client's view of a kube-sandbox, waits, and a load loop: shared by the tiers on it.

``Kube`` gathers the API groups as the sandbox's admin; ``wait_for`` polls until a call
answers something truthy (an ``ApiException`` counts as not yet); ``http_get`` makes one
request on a fresh connection, as each new client connection meets kube-proxy's rules;
``Load`` runs such requests in a loop. Used by tests/cluster.
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


def namespace_name(test_name: str) -> str:
    """A namespace of its own for one test: its name, cut to fit, and a stamp."""
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{int(time.time() * 1000) % 100000}"


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
