"""The kubelet and Deployment-controller stand-in: runs "pods" and writes Deployment status.

kmock never simulates Deployment status, and the backend's readiness gate reads nothing
else. `Kubelet` polls the color Deployments over HTTP with the official client, like a
controller would, and writes `/status` back with a merge patch:

- a new pod template (the pinned version changed) starts new pods; pods of an earlier
  template keep running until every new pod is ready (RollingUpdate, maxUnavailable 0,
  maxSurge 1), then go; going back to a template whose pods still run adopts them (as
  Kubernetes reuses an old ReplicaSet);
- the EndpointSlices of the color's Service (named like the Deployment), as the
  EndpointSlice controller writes them: one slice per target port (each process pod has a
  port of its own), each pod an endpoint with its ready/serving/terminating conditions;
- `observedGeneration`, `replicas`, `updatedReplicas`, `readyReplicas`,
  `availableReplicas`, `unavailableReplicas` follow the pods; the `Progressing` condition
  turns False with reason ProgressDeadlineExceeded once a rollout is not complete after
  `spec.progressDeadlineSeconds`.

Pods come from a runtime: `ScriptedPods` (ready after a delay, or never) for the backend
tests, `ProcessPods` (real model-server processes, ready when `/readyz` answers 200) for
the end-to-end tests. `ColorService` stands in for the per-color Service (`R-blue`,
`R-green`): a TCP forwarder to the newest ready pod of that color.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import logging
import os
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from kubernetes import client
from kubernetes.client import ApiException

from plumbing.processes import python_module_command
from tests.support.ports import free_port

log = logging.getLogger("tests.kubelet")

_POD_IDS = itertools.count(1)
SCRIPTED_POD_PORT = 8080


@dataclass
class Pod:
    template: str
    version: str
    started: float
    ready: bool = False
    failed: str | None = None
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    ready_at: float | None = None  # ScriptedPods: when it turns ready (None: never)
    address: str = "127.0.0.1"
    ready_since: float | None = None
    name: str = field(default_factory=lambda: f"pod-{next(_POD_IDS)}")


class PodRuntime(Protocol):
    def start(self, deployment: dict[str, Any], template: str) -> Pod: ...

    def probe(self, pod: Pod) -> None:
        """Update `pod.ready` / `pod.failed` (the readiness probe and the container state)."""
        ...

    def stop(self, pod: Pod) -> None: ...


@dataclass
class _Rollout:
    template: str = ""
    started: float = 0.0
    pods: list[Pod] = field(default_factory=list)


class Kubelet:
    """Runs the pods of the given Deployments and keeps their status current."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        names: list[str],
        runtime: PodRuntime,
        interval: float = 0.05,
        on_sync: Callable[[str, list[Pod]], None] | None = None,
    ) -> None:
        self._apps = client.AppsV1Api(api)
        self._discovery = client.DiscoveryV1Api(api)
        self._slices: dict[str, dict[str, Any]] = {}
        self.slices_lag = 0.0  # seconds a ready pod waits before its endpoint turns ready
        self._namespace = namespace
        self._names = names
        self._runtime = runtime
        self._interval = interval
        self._on_sync = on_sync
        self._rollouts: dict[str, _Rollout] = {name: _Rollout() for name in names}
        self._written: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)
        self.pods_started = 0

    def start(self) -> Kubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for rollout in self._rollouts.values():
            for pod in rollout.pods:
                self._runtime.stop(pod)

    def pods(self, name: str) -> list[Pod]:
        return list(self._rollouts[name].pods)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name in self._names:
                try:
                    self._sync(name)
                except (ApiException, OSError, ValueError) as exc:
                    log.debug("kubelet sync of %s failed: %s", name, exc)
            self._stop.wait(self._interval)

    def _sync(self, name: str) -> None:
        deployment = self._apps.api_client.sanitize_for_serialization(
            self._apps.read_namespaced_deployment(name, self._namespace)
        )
        self._reconcile(name, deployment)
        self._write_slices(name)
        status = deployment_status(deployment, self._rollouts[name], time.monotonic())
        if self._written.get(name) != status:
            self._apps.patch_namespaced_deployment_status(
                name,
                self._namespace,
                {"status": status},
                _content_type="application/merge-patch+json",
            )
            self._written[name] = status

    def _reconcile(self, name: str, deployment: dict[str, Any]) -> None:
        rollout = self._rollouts[name]
        template = template_key(deployment)
        if template != rollout.template:
            rollout.template, rollout.started = template, time.monotonic()
        wanted = spec_replicas(deployment)
        new = [p for p in rollout.pods if p.template == template]
        old = [p for p in rollout.pods if p.template != template]
        while len(new) < wanted:
            new.append(self._runtime.start(deployment, template))
            self.pods_started += 1
        while len(new) > wanted:
            self._runtime.stop(new.pop())
        for pod in new + old:
            self._runtime.probe(pod)
            if pod.ready and pod.ready_since is None:
                pod.ready_since = time.monotonic()
            elif not pod.ready:
                pod.ready_since = None
        if all(p.ready for p in new):  # maxUnavailable 0: old pods go only then
            for pod in old:
                self._runtime.stop(pod)
            old = []
        rollout.pods = old + new
        if self._on_sync is not None:
            self._on_sync(name, rollout.pods)

    def _write_slices(self, service: str) -> None:
        now = time.monotonic()
        by_port: dict[str, dict[str, Any]] = {}
        for pod in self._rollouts[service].pods:
            port = pod.port or SCRIPTED_POD_PORT
            ready = (
                pod.ready
                and pod.ready_since is not None
                and now - pod.ready_since >= self.slices_lag
            )
            one = by_port.setdefault(
                f"{service}-{port}",
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{service}-{port}",
                        "labels": {"kubernetes.io/service-name": service},
                    },
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                    "endpoints": [],
                },
            )
            one["endpoints"].append(
                {
                    "addresses": [pod.address],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                    "targetRef": {"kind": "Pod", "name": pod.name},
                }
            )
        ours = {name for name in self._slices if name.rsplit("-", 1)[0] == service}
        for name in ours - set(by_port):
            self._discovery.delete_namespaced_endpoint_slice(name, self._namespace)
            del self._slices[name]
        for name, body in by_port.items():
            if self._slices.get(name) == body:
                continue
            if name in self._slices:
                self._discovery.patch_namespaced_endpoint_slice(
                    name,
                    self._namespace,
                    {"endpoints": body["endpoints"]},
                    _content_type="application/merge-patch+json",
                )
            else:
                self._discovery.create_namespaced_endpoint_slice(self._namespace, body)
            self._slices[name] = copy.deepcopy(body)


def template_key(deployment: dict[str, Any]) -> str:
    text = json.dumps(deployment["spec"]["template"], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def spec_replicas(deployment: dict[str, Any]) -> int:
    replicas = deployment["spec"].get("replicas")
    return 1 if replicas is None else int(replicas)


def deployment_status(deployment: dict[str, Any], rollout: _Rollout, now: float) -> dict[str, Any]:
    """The status the Deployment controller would report for these pods."""
    wanted = spec_replicas(deployment)
    new = [p for p in rollout.pods if p.template == rollout.template]
    ready = [p for p in rollout.pods if p.ready]
    complete = len(new) == wanted and all(p.ready for p in new) and len(rollout.pods) == wanted
    deadline = deployment["spec"].get("progressDeadlineSeconds", 600)
    name = deployment["metadata"]["name"]
    if complete:
        progressing = {
            "status": "True",
            "reason": "NewReplicaSetAvailable",
            "message": f'ReplicaSet "{name}-{rollout.template}" has successfully progressed.',
        }
    elif now - rollout.started > deadline:
        progressing = {
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": f'ReplicaSet "{name}-{rollout.template}" has timed out progressing.',
        }
    else:
        progressing = {
            "status": "True",
            "reason": "ReplicaSetUpdated",
            "message": f'ReplicaSet "{name}-{rollout.template}" is progressing.',
        }
    return {
        "observedGeneration": deployment["metadata"].get("generation"),
        "replicas": len(rollout.pods),
        "updatedReplicas": len(new),
        "readyReplicas": len(ready),
        "availableReplicas": len(ready),
        "unavailableReplicas": max(wanted - len(ready), 0),
        "conditions": [{"type": "Progressing", **progressing}],
    }


def container_env(deployment: dict[str, Any], container: str = "model-server") -> dict[str, str]:
    """The literal env values of the model container (valueFrom entries are not resolved).

    Values that point into a mounted Secret (`MODEL_SERVER_ADMIN_TOKEN_FILE`) are left out
    too: this stand-in writes no volumes, so the process runs without them, as it runs
    without the `valueFrom` ones.
    """
    pod = deployment["spec"]["template"]["spec"]
    secret_volumes = {v["name"] for v in pod.get("volumes") or [] if "secret" in v}
    for spec in pod["containers"]:
        if spec["name"] == container:
            secret_dirs = tuple(
                m["mountPath"].rstrip("/") + "/"
                for m in spec.get("volumeMounts") or []
                if m["name"] in secret_volumes
            )
            return {
                e["name"]: e["value"]
                for e in spec.get("env") or []
                if "value" in e and not (secret_dirs and e["value"].startswith(secret_dirs))
            }
    raise ValueError(f"no container {container!r}")


# -- runtimes ----------------------------------------------------------------------------


class ScriptedPods:
    """Pods that turn ready after `ready_after[name]` seconds (None: never; default 0.2 s)."""

    def __init__(self) -> None:
        self.ready_after: dict[str, float | None] = {}

    def start(self, deployment: dict[str, Any], template: str) -> Pod:
        now = time.monotonic()
        delay = self.ready_after.get(deployment["metadata"]["name"], 0.2)
        pod_id = next(_POD_IDS)
        return Pod(
            template=template,
            version=container_env(deployment).get("MODEL_VERSION", ""),
            started=now,
            ready_at=None if delay is None else now + delay,
            address=f"10.244.{pod_id // 250}.{pod_id % 250 + 1}",
        )

    def probe(self, pod: Pod) -> None:
        pod.ready = pod.ready_at is not None and time.monotonic() >= pod.ready_at

    def stop(self, pod: Pod) -> None:
        pod.ready = False


class ProcessPods:
    """Each pod is a real model-server process on its own loopback port."""

    def __init__(self, *, log_dir: Path, cwd: Path) -> None:
        self._log_dir = log_dir
        self._cwd = cwd

    def start(self, deployment: dict[str, Any], template: str) -> Pod:
        env = container_env(deployment)
        port = free_port()
        name = deployment["metadata"]["name"]
        log_file = open(self._log_dir / f"{name}-v{env.get('MODEL_VERSION')}-{port}.log", "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            [*model_server_command(), str(port)],
            env={**os.environ, **env, "MODEL_SERVER_LOAD_RETRY_SECONDS": "2"},
            cwd=self._cwd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.info(
            "started %s v%s as pid %d on port %d", name, env.get("MODEL_VERSION"), process.pid, port
        )
        return Pod(
            template=template,
            version=env.get("MODEL_VERSION", ""),
            started=time.monotonic(),
            port=port,
            process=process,
        )

    def probe(self, pod: Pod) -> None:
        assert pod.process is not None
        if pod.process.poll() is not None:  # no restarts: a crash loop that never recovers
            pod.ready, pod.failed = False, f"exited with {pod.process.returncode}"
            return
        try:
            pod.ready = (
                httpx.get(f"http://127.0.0.1:{pod.port}/readyz", timeout=0.5).status_code == 200
            )
        except httpx.HTTPError:
            pod.ready = False

    def stop(self, pod: Pod) -> None:
        pod.ready = False
        process = pod.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def model_server_command() -> list[str]:
    """The model server's own entry point; the port comes last."""
    return python_module_command("model_server", "--host", "127.0.0.1", "--port")


# -- the per-color Service ---------------------------------------------------------------


class ColorService:
    """A Service stand-in: forwards each TCP connection to the newest ready pod, or refuses it."""

    def __init__(self) -> None:
        self.target: int | None = None
        service = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                service._forward(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> ColorService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def route(self, pods: list[Pod]) -> None:
        ready = [p for p in pods if p.ready and p.port is not None]
        self.target = ready[-1].port if ready else None

    def _forward(self, downstream: socket.socket) -> None:
        target = self.target
        if target is None:
            return  # no ready endpoints: the connection is closed at once
        try:
            upstream = socket.create_connection(("127.0.0.1", target), timeout=30)
        except OSError:
            return
        back = threading.Thread(target=_pump, args=(upstream, downstream), daemon=True)
        back.start()
        _pump(downstream, upstream)
        back.join(30)
        upstream.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):  # the other side may be gone already
            sink.shutdown(socket.SHUT_WR)
