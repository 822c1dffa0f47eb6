"""The kubelet stand-in: a Node, a binder in the scheduler's place, and the pods' runtime.

Started by the supervisor as ``python -m kube_sandbox kubelet DIR``. With the node's own
identity (``system:node:NAME`` in ``system:nodes``, so the API server's Node authorizer and
NodeRestriction admission apply as to a real kubelet) it registers the Node (Ready, with
the bridge address as InternalIP), renews the node Lease every 10 s, watches the pods bound
to the node and runs each one with a ``pod.PodWorker``, patching ``pods/status`` and
deleting finished pods. With the scheduler's identity (``system:kube-scheduler``) it binds
every pending pod that names no node and no other scheduler to this node through
``pods/binding`` (there is one node: no filtering, no scoring). It also watches Services,
for the pods' environment variables and their /etc/hosts (``dns``).

Its parts: ``node`` (the Node and its Lease), ``binder`` (the scheduler's stand-in),
``kubestatus`` (sending pod statuses), ``pod`` (one worker per pod).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import time
from typing import Any

from kube_sandbox import dns, podspec, procs
from kube_sandbox.binder import BinderMixin
from kube_sandbox.kubeapi import ApiError, Informer, Kube
from kube_sandbox.kubestatus import StatusSync
from kube_sandbox.layout import Layout, State
from kube_sandbox.node import NodeMixin, mem_kib
from kube_sandbox.pod import PodWorker, now_iso

log = logging.getLogger("kubelet")
Obj = dict[str, Any]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Kubelet(NodeMixin, BinderMixin):
    def __init__(self, layout: Layout, state: State, config: Obj):
        self.layout = layout
        self.state = state
        self.config = config
        self.node_name = state.node_name
        self.node = Kube(str(layout.component_kubeconfig("node")))
        self.scheduler = Kube(str(layout.component_kubeconfig("scheduler")))
        self.workers: dict[str, PodWorker] = {}
        self.ip_used: set[int] = set()
        self.ip_cursor = 1
        self.status = StatusSync(self)
        self.services: dict[str, Obj] = {}
        self.dns = dns.Dns(self.services)
        self.binding: set[str] = set()
        self.recent_events: dict[tuple, float] = {}
        self.stopping = False
        self.background: set[asyncio.Task] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ca = (layout.pki / "ca.crt").read_bytes()
        self.allocatable = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{mem_kib()}Ki",
            "pods": "110",
            "ephemeral-storage": "100Gi",
        }
        self.sources = podspec.Sources(
            secret=lambda ns, n: self._lookup(f"/api/v1/namespaces/{ns}/secrets/{n}"),
            configmap=lambda ns, n: self._lookup(f"/api/v1/namespaces/{ns}/configmaps/{n}"),
            node_allocatable=self.allocatable,
        )

    # ---- helpers used by the pod workers ------------------------------------------------
    async def call(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))

    def _lookup(self, path: str) -> Obj | None:
        try:
            return self.node.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise podspec.ConfigError(str(e)) from e

    def ca_bundle(self) -> bytes:
        return self.ca

    def allocate_ip(self) -> tuple[int, str]:
        prefix = self.state.host_address.rsplit(".", 1)[0]
        for _ in range(253):
            self.ip_cursor = self.ip_cursor % 253 + 1
            idx = self.ip_cursor + 1  # 2..254; .1 is the host
            if idx not in self.ip_used:
                self.ip_used.add(idx)
                return idx, f"{prefix}.{idx}"
        raise RuntimeError("pod address range exhausted")

    def release_ip(self, idx: int | None) -> None:
        if idx is not None:
            self.ip_used.discard(idx)

    def base_env(self, hostname: str, uid: int | None) -> dict[str, str]:
        """What a container runtime and the image give: PATH, HOSTNAME, HOME, image ENV."""
        paths = [p for p in self.config.get("path", []) if p]
        env = {
            "PATH": ":".join([*paths, SYSTEM_PATH]),
            "HOSTNAME": hostname,
            "HOME": "/root" if not uid else "/",  # no passwd entry for other users
        }
        env.update(self.config.get("image_env", {}))
        return env

    def services_env(self, ns: str, enable_links: bool) -> dict[str, str]:
        chosen = []
        for svc in list(self.services.values()):
            md = svc["metadata"]
            if (md["namespace"], md["name"]) == ("default", "kubernetes") or (
                enable_links and md["namespace"] == ns
            ):
                chosen.append(svc)
        env = podspec.service_env(chosen)
        # The master Service always points at what reaches the API server from a pod.
        env["KUBERNETES_SERVICE_HOST"] = self.state.kubernetes_service_ip
        env["KUBERNETES_SERVICE_PORT"] = "443"
        return env

    def request_token(self, pod: Obj, source: Obj) -> str:
        md = pod["metadata"]
        sa = pod["spec"].get("serviceAccountName") or "default"
        spec: Obj = {
            "audiences": [source["audience"]] if source.get("audience") else [],
            "expirationSeconds": int(source.get("expirationSeconds", 3607)),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": md["name"],
                "uid": md["uid"],
            },
        }
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            out = self.node.create(
                f"/api/v1/namespaces/{md['namespace']}/serviceaccounts/{sa}/token", body
            )
        except ApiError as e:
            raise podspec.ConfigError(f"token for service account {sa}: {e}") from e
        return out["status"]["token"]

    def event(
        self,
        pod: Obj,
        reason: str,
        message: str,
        kind: str = "Normal",
        container: str | None = None,
    ) -> None:
        md = pod["metadata"]
        key = (md["uid"], reason, container, message[:60])
        now = time.monotonic()
        if now - self.recent_events.get(key, -1e9) < 30:
            return
        self.recent_events[key] = now
        if len(self.recent_events) > 5000:
            self.recent_events.clear()
        involved = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": md["namespace"],
            "name": md["name"],
            "uid": md["uid"],
        }
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        ts = now_iso()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{md['name']}.", "namespace": md["namespace"]},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "kubelet", "host": self.node_name},
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_name,
        }
        log.info("event %s/%s %s: %s", md["namespace"], md["name"], reason, message)
        self.loop.run_in_executor(None, self._post_event, md["namespace"], body)

    def _post_event(self, ns: str, body: Obj) -> None:
        with contextlib.suppress(Exception):
            self.node.create(f"/api/v1/namespaces/{ns}/events", body)

    async def delete_pod(self, w: PodWorker) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": w.uid},
        }
        for _ in range(10):
            try:
                await self.call(self.node.delete, f"/api/v1/namespaces/{w.ns}/pods/{w.name}", body)
                return
            except ApiError as e:
                if e.status in (404, 409):
                    return
                log.warning("delete %s: %s", w.key, e)
            except Exception as e:
                log.warning("delete %s: %s", w.key, e)
            await asyncio.sleep(1)

    def worker_done(self, w: PodWorker) -> None:
        if self.workers.get(w.uid) is w:
            del self.workers[w.uid]

    # ---- pods on this node --------------------------------------------------------------
    def _on_pod_thread(self, kind: str, pod: Obj) -> None:
        self.loop.call_soon_threadsafe(self._on_pod, kind, pod)

    def _on_pod(self, kind: str, pod: Obj) -> None:
        md = pod["metadata"]
        w = self.workers.get(md["uid"])
        if kind == "DELETED":
            if w:
                w.deleted()
            return
        if w:
            w.update(pod)
            return
        if self.stopping:
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            if md.get("deletionTimestamp"):
                self._background(self._delete_untracked(pod))
            return
        if md.get("deletionTimestamp"):
            self._background(self._delete_untracked(pod))
            return
        self.workers[md["uid"]] = PodWorker(self, pod)

    def _background(self, coro) -> None:
        task = self.loop.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _delete_untracked(self, pod: Obj) -> None:
        class _W:  # the bits of a worker delete_pod needs
            pass

        w = _W()
        w.ns, w.name, w.uid = (pod["metadata"][k] for k in ("namespace", "name", "uid"))
        w.key = f"{w.ns}/{w.name}"
        await self.delete_pod(w)  # type: ignore[arg-type]

    def _on_service_thread(self, kind: str, svc: Obj) -> None:
        self.loop.call_soon_threadsafe(self.dns.services_changed)

    # ---- main ---------------------------------------------------------------------------
    async def main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=24))
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, stop.set)
        await self.call(self.register_node)
        await self.call(self.renew_lease)
        node_task = asyncio.create_task(self._node_loop())
        svc_inf = Informer(self.node, "/api/v1/services", self._on_service_thread, name="services")
        svc_inf.items = self.services  # shared with dns
        svc_inf.start()
        await self.call(svc_inf.synced.wait, 30)
        pods = Informer(
            self.node,
            "/api/v1/pods",
            self._on_pod_thread,
            field_selector=f"spec.nodeName={self.node_name}",
            name="pods",
        ).start()
        unscheduled = Informer(
            self.scheduler,
            "/api/v1/pods",
            self._on_unscheduled,
            field_selector="spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed",
            name="unscheduled",
        ).start()
        log.info("kubelet stand-in up: node %s", self.node_name)
        (self.layout.root / "kubelet.ready").write_text(now_iso() + "\n")
        await stop.wait()
        log.info("stopping: killing %d pods", len(self.workers))
        self.stopping = True
        for inf in (pods, unscheduled, svc_inf):
            inf.stop()
        node_task.cancel()
        workers = list(self.workers.values())
        for w in workers:
            w.stop_for_shutdown()
        if workers:
            await asyncio.wait([w.task for w in workers], timeout=20)


def main(root: str) -> None:
    procs.start_component()
    import json

    layout = Layout(__import__("pathlib").Path(root))
    state = State.load(layout.state_json)
    config = json.loads(layout.config_json.read_text())
    with contextlib.suppress(AttributeError):
        watcher = asyncio.PidfdChildWatcher()
        asyncio.set_child_watcher(watcher)
    asyncio.run(Kubelet(layout, state, config).main())
