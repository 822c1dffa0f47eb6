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
import copy
import functools
import itertools
import subprocess
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
import yaml
from kubernetes import client

from tests.support.chart import CHART, find_helm

JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Write:
    """One create or patch as the API server received it (before any stamping)."""

    path: str
    body: Any
    field_manager: str | None


CONFIG_MAP_LIMIT = 1024 * 1024  # etcd's object limit as the API server enforces it: 1 MiB


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
    writes: list[Write] = attrs.field(factory=list, init=False)
    _versions: Any = attrs.field(factory=lambda: itertools.count(1000), init=False)
    _writes: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    _hooks: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _failures: list[_Failure] = attrs.field(factory=list, init=False)
    _interfere: dict[tuple[str, str], dict[str, Any]] = attrs.field(factory=dict, init=False)

    # -- test hooks (called from the test thread) ----------------------------------------

    def fail_next(self, count: int, *, status: int = 503, path_contains: str = "") -> None:
        """Answer the next `count` requests whose path contains `path_contains` with `status`."""
        with self._hooks:
            self._failures.append(_Failure(count, status, path_contains))

    def interfere(self, plural: str, name: str, change: dict[str, Any] | None = None) -> None:
        """Another writer changes this object (a merge patch, or only its resourceVersion)
        right before our next patch of it."""
        with self._hooks:
            self._interfere[(plural, name)] = change or {}

    # -- request handling ----------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self._maybe_fail(request)
        if request.resource is None or request.action not in (
            kmock.action.CREATE,
            kmock.action.UPDATE,
        ):
            return await super()._handle(request)
        self.writes.append(
            Write(
                path=request.url.path,
                body=copy.deepcopy(request.data),
                field_manager=request.url.query.get("fieldManager"),
            )
        )
        _check_size(request)
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
            change = self._interfere.pop((request.resource.plural, request.name), None)
        if change is not None:
            stamp = {"metadata": {"resourceVersion": str(next(self._versions))}}
            self.objects[key].patch(change)  # kmock's merge patch: None removes a key
            self.objects[key].patch(stamp)

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


def _check_size(request: kmock.Request) -> None:
    """A ConfigMap's data over 1 MiB is refused (422), as the real API server does."""
    assert request.resource is not None
    if request.resource.plural != "configmaps":
        return
    body = request.data
    data = body.get("data") if isinstance(body, dict) else None
    size = sum(len(k) + len(str(v).encode()) for k, v in (data or {}).items())
    if size > CONFIG_MAP_LIMIT:
        raise kmock.KubernetesError(
            status=422,
            reason="Invalid",
            message=f"ConfigMap is invalid: []: Too long: at most {CONFIG_MAP_LIMIT} bytes",
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


# -- the objects the chart installs: `helm template` of the real chart ----------------------


@functools.cache
def _render(release: str, namespace: str, values: tuple[tuple[str, str], ...]) -> str:
    helm = find_helm()
    if helm is None:
        pytest.fail("no helm binary: run scripts/install-helm.py (the chart tests do it)")
    args = [
        arg
        for key, value in values
        for arg in ("--set-string" if key.endswith("version") else "--set", f"{key}={value}")
    ]
    proc = subprocess.run(
        [str(helm), "template", release, str(CHART), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return proc.stdout


def chart_objects(
    *,
    namespace: str,
    release: str,
    live: str = "blue",
    blue: str | None = "1",
    green: str | None = None,
    replicas: int = 2,
    model: str = "iris",
    tracking_uri: str = "http://mlflow.invalid:5000",
    progress_deadline_seconds: int = 600,
    autoscaling: bool = False,
) -> list[dict[str, Any]]:
    """The model-server Deployments and Services `helm template` renders for these values."""
    values = {
        "liveColor": live,
        "blue.version": blue or "",
        "green.version": green or "",
        "modelServer.replicaCount": str(replicas),
        "autoscaling.enabled": str(autoscaling).lower(),
        "autoscaling.minReplicas": str(replicas),
        "model.name": model,
        "mlflow.trackingUri": tracking_uri,
        "modelServer.progressDeadlineSeconds": str(max(progress_deadline_seconds, 10)),
    }
    rendered = _render(release, namespace, tuple(sorted(values.items())))
    names = {f"{release}-blue", f"{release}-green", release}
    objects = [
        doc
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"] in ("Deployment", "Service") and doc["metadata"]["name"] in names
    ]
    for obj in objects:  # below the schema's 10 s floor only to keep the tests short
        if obj["kind"] == "Deployment":
            obj["spec"]["progressDeadlineSeconds"] = progress_deadline_seconds
    return objects


def install_release(api: client.ApiClient, *, namespace: str, release: str, **values: Any) -> None:
    """What `helm install` creates for the model servers: the chart's two Deployments and
    three Services, created as rendered. The chart renders no `spec.replicas`; the API server
    defaults it to 1, as here, and the controller scales each color to its target."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    for obj in chart_objects(namespace=namespace, release=release, **values):
        if obj["kind"] == "Deployment":
            obj["spec"].setdefault("replicas", 1)  # the API server's defaulting
            apps.create_namespaced_deployment(namespace, obj)
        else:
            core.create_namespaced_service(namespace, obj)


def wait_for(
    condition: Callable[[], bool], *, what: str, timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Poll until `condition()` holds; fail the test naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
