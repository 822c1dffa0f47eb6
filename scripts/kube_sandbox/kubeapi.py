"""A small REST layer and list-then-watch informer over the official ``kubernetes`` client.

Used by the kubelet and kube-proxy stand-ins. Authentication, TLS and connection pooling are
the official client's (``ApiClient`` loaded from a kubeconfig); bodies stay plain dicts (no
model classes: faster, and nothing is validated or dropped on the client side).
``Informer`` lists a collection, then watches it from the list's resourceVersion with
bookmarks, re-lists on 410 Gone, and reconnects after errors, calling ``on_event(type, obj)``
(``type`` is ADDED, MODIFIED or DELETED; a re-list replays what changed meanwhile).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, body: str, method: str, path: str):
        self.status = status
        self.body = body
        try:
            self.reason = json.loads(body).get("reason", "")
            self.message = json.loads(body).get("message", body)
        except (json.JSONDecodeError, AttributeError):
            self.reason, self.message = "", body
        super().__init__(f"{method} {path}: {status} {self.message}")


class Kube:
    """Plain-JSON requests to the API server as the identity of one kubeconfig."""

    def __init__(self, kubeconfig: str, pool_size: int = 32):
        cfg = Configuration()
        kube_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        cfg.connection_pool_maxsize = pool_size
        self.api = ApiClient(configuration=cfg)
        self.host = cfg.host

    def _send(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Any = 30,
    ):
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            path = path + "?" + urlencode(q)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        m, url, hdrs, b, post = self.api.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        return self.api.call_api(m, url, hdrs, b, post, _request_timeout=timeout)

    def request(
        self, method: str, path: str, query: dict[str, Any] | None = None, **send: Any
    ) -> Obj:
        """`_send`'s arguments (`body`, `content_type`, `timeout`); the answer as JSON."""
        resp = self._send(method, path, query, **send)
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, data.decode(errors="replace"), method, path)
        return json.loads(data) if data else {}

    def get(self, path: str, **query) -> Obj:
        return self.request("GET", path, query)

    def get_optional(self, path: str) -> Obj | None:
        try:
            return self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: Any, kind: str = "strategic") -> Obj:
        ct = {
            "strategic": "application/strategic-merge-patch+json",
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
        }[kind]
        return self.request("PATCH", path, body=body, content_type=ct)

    def put(self, path: str, body: Obj) -> Obj:
        return self.request("PUT", path, body=body)

    def delete(self, path: str, body: Obj | None = None) -> Obj:
        return self.request("DELETE", path, body=body)

    def stream_watch(self, path: str, query: dict[str, Any], timeout: float):
        resp = self._send("GET", path, query, timeout=(10, timeout))
        if not 200 <= resp.status < 300:
            data = resp.read()
            raise ApiError(resp.status, data.decode(errors="replace"), "GET", path)
        try:
            for line in iter_resp_lines(resp.response):
                if line:
                    yield json.loads(line)
        finally:
            resp.response.release_conn()


def key_of(obj: Obj) -> str:
    md = obj["metadata"]
    ns = md.get("namespace")
    return f"{ns}/{md['name']}" if ns else md["name"]


class Informer:
    """Keeps ``self.items`` (key → object) in step with a collection; calls on_event."""

    def __init__(
        self,
        kube: Kube,
        path: str,
        on_event: Callable[[str, Obj], None],
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
        name: str = "",
    ):
        self.kube = kube
        self.path = path
        self.on_event = on_event
        self.selectors = {"fieldSelector": field_selector, "labelSelector": label_selector}
        self.items: dict[str, Obj] = {}
        self.synced = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"informer-{name}", daemon=True)

    def start(self) -> Informer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _emit(self, kind: str, obj: Obj) -> None:
        try:
            self.on_event(kind, obj)
        except Exception:
            log.exception("informer %s: handler failed on %s %s", self.path, kind, key_of(obj))

    def _relist(self) -> str:
        lst = self.kube.get(self.path, **self.selectors)
        fresh = {key_of(o): o for o in lst.get("items", [])}
        for key, old in list(self.items.items()):
            if key not in fresh:
                del self.items[key]
                self._emit("DELETED", old)
        for key, obj in fresh.items():
            old = self.items.get(key)
            self.items[key] = obj
            if old is None:
                self._emit("ADDED", obj)
            elif old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._emit("MODIFIED", obj)
        self.synced.set()
        return lst["metadata"]["resourceVersion"]

    def _run(self) -> None:
        rv: str | None = None
        while not self.stopped.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                query = dict(
                    self.selectors,
                    watch="true",
                    resourceVersion=rv,
                    allowWatchBookmarks="true",
                    timeoutSeconds=240,
                )
                for ev in self.kube.stream_watch(self.path, query, timeout=270):
                    if self.stopped.is_set():
                        return
                    kind, obj = ev["type"], ev["object"]
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            rv = None  # too old: list again
                        else:
                            log.warning("watch %s: %s", self.path, obj.get("message"))
                            time.sleep(1)
                        break
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if kind == "BOOKMARK":
                        continue
                    key = key_of(obj)
                    if kind == "DELETED":
                        self.items.pop(key, None)
                    else:
                        self.items[key] = obj
                    self._emit(kind, obj)
            except ApiError as e:
                if e.status == 410:
                    rv = None
                else:
                    log.warning("watch %s: %s", self.path, e)
                    time.sleep(1)
            except Exception as e:  # connection dropped, API server restarting
                if not self.stopped.is_set():
                    log.info("watch %s reconnecting: %s", self.path, e)
                    time.sleep(0.5)
