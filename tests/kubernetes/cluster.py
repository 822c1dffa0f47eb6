"""The Kubernetes API stand-in: kmock's `KubernetesEmulator`, extended, over real HTTP.

What is real: the official `kubernetes` client, its HTTP requests and its error handling,
against kmock 0.8's emulator (an in-memory API server: create, read, JSON merge patch,
JSON patch, delete; 409 on duplicate create; 404 on missing objects).

What `ClusterEmulator` adds, because kmock lacks it and the controller relies on it:

- `metadata.resourceVersion`: a cluster-wide counter stamped on every create and patch;
  a patch carrying a stale `metadata.resourceVersion` (in a merge patch body, or as an
  `add`/`replace`/`test` op on `/metadata/resourceVersion` in a JSON patch) is refused
  with the API server's 409 Conflict;
- `metadata.generation`: 1 on create, +1 when a patch changes `spec` (not on `/status`);
  `namespace`, `uid` and `creationTimestamp` on create;
- the patch Content-Type must fit the body (a JSON patch is a list, a merge patch an
  object), as the real API server insists; the client defaults to JSON patch, so a
  forgotten `_content_type` fails here as it would in a cluster;
- test hooks: `fail_next` answers the next matching requests with 503, and
  `interfere` bumps an object's resourceVersion just before our next patch of it (a
  concurrent writer, deterministically).

Not emulated (the code under test does not use it): strategic merge patch semantics
(kmock treats it as a JSON merge patch; we only send merge and JSON patches), PUT,
label selectors on list, watches with resourceVersion, admission and validation.

kmock's pytest fixture runs the server on the test's own event loop, where a blocking
client call would hang it; `ApiServer` runs it in a thread with its own loop instead.
Deployment status is written by the kubelet stand-in in `kubelet.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import kmock
import pytest
from kubernetes import client

JSON_PATCH = "application/json-patch+json"


@dataclass
class _Failure:
    remaining: int
    status: int
    path_contains: str


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus resourceVersion, generation and fault injection."""

    conflicts: int = attrs.field(default=0, init=False)
    failed_requests: int = attrs.field(default=0, init=False)
    _versions: Any = attrs.field(factory=lambda: itertools.count(1000), init=False)
    _writes: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    _hooks: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _failures: list[_Failure] = attrs.field(factory=list, init=False)
    _interfere: set[tuple[str, str]] = attrs.field(factory=set, init=False)

    # -- test hooks (called from the test thread) ----------------------------------------

    def fail_next(self, count: int, *, status: int = 503, path_contains: str = "") -> None:
        """Answer the next `count` requests whose path contains `path_contains` with `status`."""
        with self._hooks:
            self._failures.append(_Failure(count, status, path_contains))

    def interfere(self, plural: str, name: str) -> None:
        """Another writer changes this object right before our next patch of it."""
        with self._hooks:
            self._interfere.add((plural, name))

    # -- request handling ----------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self._maybe_fail(request)
        if request.resource is None or request.action not in (
            kmock.action.CREATE,
            kmock.action.UPDATE,
        ):
            return await super()._handle(request)
        async with self._writes:  # check, stamp and write as one step, like etcd's txn
            if request.action == kmock.action.CREATE:
                self._stamp_create(request)
            elif request.name is not None:
                self._check_and_stamp_patch(request)
            return await super()._handle(request)

    def _maybe_fail(self, request: kmock.Request) -> None:
        with self._hooks:
            for failure in self._failures:
                if failure.remaining > 0 and failure.path_contains in request.url.path:
                    failure.remaining -= 1
                    self.failed_requests += 1
                    raise kmock.KubernetesError(
                        status=failure.status,
                        reason="ServiceUnavailable",
                        message="injected by the test: the API server is unavailable",
                        details={},
                    )

    def _stamp_create(self, request: kmock.Request) -> None:
        assert request.resource is not None
        metadata = request.data.setdefault("metadata", {})
        key = (
            request.resource,
            request.namespace or metadata.get("namespace"),
            metadata.get("name"),
        )
        if key in self.objects and not self.objects[key].deleted:
            return  # kmock answers the 409 AlreadyExists itself
        metadata.update(
            namespace=key[1],
            uid=str(uuid.uuid4()),
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            resourceVersion=str(next(self._versions)),
            generation=1,
        )

    def _check_and_stamp_patch(self, request: kmock.Request) -> None:
        assert request.resource is not None and request.name is not None
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return  # kmock answers the 404 itself
        body = request.data
        self._check_content_type(request, body)
        self._maybe_interfere(request, key)
        current = self.objects[key].raw
        expected = _precondition(body)
        actual = current.get("metadata", {}).get("resourceVersion")
        if expected is not None and expected != actual:
            self.conflicts += 1
            raise kmock.KubernetesError(
                status=409,
                reason="Conflict",
                message=(
                    f'Operation cannot be fulfilled on {request.resource.plural} "{request.name}": '
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again"
                ),
                details={"name": request.name, "kind": request.resource.plural},
            )
        patched = _apply(current, body)
        stamp: dict[str, Any] = {"resourceVersion": str(next(self._versions))}
        if request.subresource is None and patched.get("spec") != current.get("spec"):
            stamp["generation"] = int(current.get("metadata", {}).get("generation") or 0) + 1
        _inject(body, stamp)

    def _maybe_interfere(self, request: kmock.Request, key: Any) -> None:
        assert request.resource is not None and request.name is not None
        with self._hooks:
            hit = (request.resource.plural, request.name) in self._interfere
            self._interfere.discard((request.resource.plural, request.name))
        if hit:
            self.objects[key].patch({"metadata": {"resourceVersion": str(next(self._versions))}})

    @staticmethod
    def _check_content_type(request: kmock.Request, body: Any) -> None:
        content_type = next(
            (v for k, v in request.headers.items() if k.lower() == "content-type"), ""
        )
        wants_list = content_type.startswith(JSON_PATCH)
        if wants_list != isinstance(body, list):
            raise kmock.KubernetesError(
                status=400,
                reason="BadRequest",
                message=f"the body does not fit Content-Type {content_type!r}",
                details={},
            )


def _precondition(body: Any) -> str | None:
    """The resourceVersion a patch insists on, if any."""
    if isinstance(body, dict):
        return (body.get("metadata") or {}).get("resourceVersion")
    for op in body:
        if op.get("path") == "/metadata/resourceVersion" and op.get("op") in {
            "add",
            "replace",
            "test",
        }:
            return op.get("value")
    return None


def _apply(current: dict[str, Any], body: Any) -> dict[str, Any]:
    """The object as the patch would leave it (kmock's own patch logic), or 422."""
    try:
        trial = kmock.Object(current)
        trial.patch(body)
        return trial.raw
    except Exception as exc:  # jsonpatch and kmock raise assorted types for a bad patch
        raise kmock.KubernetesError(
            status=422, reason="Invalid", message=f"the patch does not apply: {exc}", details={}
        ) from None


def _inject(body: Any, stamp: dict[str, Any]) -> None:
    """Make the write itself carry the new resourceVersion (and generation)."""
    if isinstance(body, dict):
        body.setdefault("metadata", {}).update(stamp)
    else:
        body.extend({"op": "add", "path": f"/metadata/{k}", "value": v} for k, v in stamp.items())


class ApiServer:
    """The emulator served over HTTP from its own thread and event loop."""

    def __init__(self) -> None:
        self.emulator = ClusterEmulator()
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve()), name="kmock-api", daemon=True
        )

    def start(self) -> ApiServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the kmock API server did not start")
        return self

    async def _serve(self) -> None:
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def client(self) -> client.ApiClient:
        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)


# -- the objects the chart installs, shaped like `helm template` renders them --------------


def deployment_body(
    *,
    release: str,
    color: str,
    version: str | None,
    model: str = "iris",
    tracking_uri: str = "http://mlflow.invalid:5000",
    replicas: int | None = None,
    progress_deadline_seconds: int = 600,
) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "bluegreen",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": "model-server",
        "bluegreen.io/color": color,
    }
    pinned = version or ""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{release}-{color}",
            "labels": labels,
            "annotations": {
                "bluegreen.io/model-version": pinned,
                "bluegreen.io/target-replicas": "1",
            },
        },
        "spec": {
            "replicas": replicas if replicas is not None else (1 if version else 0),
            "progressDeadlineSeconds": progress_deadline_seconds,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"bluegreen.io/model-version": pinned},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "model-server",
                            "image": "bluegreen:test",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [
                                {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
                                {"name": "MODEL_NAME", "value": model},
                                {"name": "MODEL_VERSION", "value": pinned},
                                {"name": "SERVING_COLOR", "value": color},
                                {
                                    "name": "MODEL_SERVER_ADMIN_TOKEN",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": f"{release}-token", "key": "token"}
                                    },
                                },
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "http"},
                                "periodSeconds": 2,
                            },
                        }
                    ]
                },
            },
        },
    }


def service_body(*, release: str, name: str, color: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "annotations": {"bluegreen.io/managed-selector": "true"}},
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            "selector": {
                "app.kubernetes.io/name": "bluegreen",
                "app.kubernetes.io/instance": release,
                "app.kubernetes.io/component": "model-server",
                "bluegreen.io/color": color,
            },
        },
    }


def install_release(
    api: client.ApiClient,
    *,
    namespace: str,
    release: str,
    live: str = "blue",
    blue: str | None = "1",
    green: str | None = None,
    **deployment_options: Any,
) -> None:
    """What `helm install` creates for the model servers: two Deployments, three Services."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    for color, version in (("blue", blue), ("green", green)):
        apps.create_namespaced_deployment(
            namespace,
            deployment_body(release=release, color=color, version=version, **deployment_options),
        )
        core.create_namespaced_service(
            namespace, service_body(release=release, name=f"{release}-{color}", color=color)
        )
    core.create_namespaced_service(
        namespace, service_body(release=release, name=release, color=live)
    )


def wait_for(
    condition: Callable[[], bool], *, what: str, timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Poll until `condition()` holds; fail the test naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
