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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import platform
import signal
import sys
import time
from typing import Any

from kube_sandbox import dns, podspec, procs
from kube_sandbox.kubeapi import ApiError, Informer, Kube
from kube_sandbox.layout import KUBERNETES_VERSION, Layout, State
from kube_sandbox.pod import PodWorker, now_iso

log = logging.getLogger("kubelet")
Obj = dict[str, Any]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def micro_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


class StatusSync:
    """Sends each pod's latest status; one request in flight per pod, newer ones coalesced."""

    def __init__(self, kubelet: Kubelet):
        self.k = kubelet
        self.dirty: set[str] = set()
        self.sending: dict[str, asyncio.Task] = {}

    def push(self, w: PodWorker) -> None:
        self.dirty.add(w.uid)
        if w.uid not in self.sending:
            self.sending[w.uid] = asyncio.get_running_loop().create_task(self._send(w))

    async def flush(self, w: PodWorker) -> None:
        self.push(w)
        task = self.sending.get(w.uid)
        if task:
            with contextlib.suppress(Exception):
                await task

    async def _send(self, w: PodWorker) -> None:
        try:
            while w.uid in self.dirty:
                self.dirty.discard(w.uid)
                body = {"metadata": {"uid": w.uid}, "status": w.build_status()}
                path = f"/api/v1/namespaces/{w.ns}/pods/{w.name}/status"
                for attempt in range(30):
                    try:
                        await self.k.call(self.k.node.patch, path, body)
                        log.info(
                            "status %s: %s ready=%s",
                            w.key,
                            body["status"]["phase"],
                            [c["ready"] for c in body["status"]["containerStatuses"]],
                        )
                        break
                    except ApiError as e:
                        if e.status in (404, 409):
                            return  # gone, or replaced by a pod of the same name
                        log.warning("status %s: %s", w.key, e)
                    except Exception as e:
                        log.warning("status %s: %s", w.key, e)
                    await asyncio.sleep(min(0.2 * (attempt + 1), 2))
                    if w.uid in self.dirty:
                        break  # something newer to send
        finally:
            self.sending.pop(w.uid, None)


class Kubelet:
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
            "memory": f"{_mem_kib()}Ki",
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

    # ---- node ---------------------------------------------------------------------------
    def _node_status(self) -> Obj:
        ts = now_iso()

        def cond(kind: str, status: str, reason: str, message: str) -> Obj:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": ts,
                "lastTransitionTime": self.started_at,
            }

        uname = platform.uname()
        return {
            "addresses": [
                {"type": "InternalIP", "address": self.state.host_address},
                {"type": "Hostname", "address": self.node_name},
            ],
            "capacity": self.allocatable,
            "allocatable": self.allocatable,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kube-sandbox"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kube-sandbox"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kube-sandbox"),
                cond("Ready", "True", "KubeletReady", "kube-sandbox kubelet stand-in is ready"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/etc/machine-id"),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": uname.release,
                "osImage": _os_image(),
                "containerRuntimeVersion": "kube-sandbox://local-processes",
                "kubeletVersion": KUBERNETES_VERSION,
                "kubeProxyVersion": KUBERNETES_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64" if uname.machine == "x86_64" else uname.machine,
            },
        }

    def register_node(self) -> None:
        self.started_at = now_iso()
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                },
            },
            "spec": {},
        }
        try:
            self.node.create("/api/v1/nodes", body)
        except ApiError as e:
            if e.status != 409:
                raise
        self.node.patch(f"/api/v1/nodes/{self.node_name}/status", {"status": self._node_status()})

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        try:
            self.node.patch(path, {"spec": {"renewTime": micro_now()}}, kind="merge")
        except ApiError as e:
            if e.status != 404:
                raise
            node = self.node.get(f"/api/v1/nodes/{self.node_name}")
            self.node.create(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.node_name,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Node",
                                "name": self.node_name,
                                "uid": node["metadata"]["uid"],
                            }
                        ],
                    },
                    "spec": {
                        "holderIdentity": self.node_name,
                        "leaseDurationSeconds": 40,
                        "renewTime": micro_now(),
                    },
                },
            )

    async def _node_loop(self) -> None:
        n = 0
        while True:
            try:
                await self.call(self.renew_lease)
                if n % 6 == 0:
                    await self.call(
                        self.node.patch,
                        f"/api/v1/nodes/{self.node_name}/status",
                        {"status": self._node_status()},
                    )
            except Exception as e:
                log.warning("node heartbeat: %s", e)
            n += 1
            await asyncio.sleep(10)

    # ---- scheduling ---------------------------------------------------------------------
    def _on_unscheduled(self, kind: str, pod: Obj) -> None:
        if kind == "DELETED":
            return
        md, spec = pod["metadata"], pod["spec"]
        if md.get("deletionTimestamp") or spec.get("nodeName") or spec.get("schedulingGates"):
            return
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return
        if md["uid"] in self.binding:
            return
        self.binding.add(md["uid"])
        self.loop.call_soon_threadsafe(lambda: self.loop.run_in_executor(None, self._bind, pod))

    def _bind(self, pod: Obj) -> None:
        md = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.scheduler.create(
                f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}/binding", body
            )
            ts = now_iso()
            with contextlib.suppress(Exception):
                self.scheduler.create(
                    f"/api/v1/namespaces/{md['namespace']}/events",
                    {
                        "apiVersion": "v1",
                        "kind": "Event",
                        "metadata": {
                            "generateName": f"{md['name']}.",
                            "namespace": md["namespace"],
                        },
                        "involvedObject": {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "namespace": md["namespace"],
                            "name": md["name"],
                            "uid": md["uid"],
                        },
                        "reason": "Scheduled",
                        "message": f"Successfully assigned {md['namespace']}/{md['name']} "
                        f"to {self.node_name}",
                        "type": "Normal",
                        "source": {"component": "default-scheduler"},
                        "firstTimestamp": ts,
                        "lastTimestamp": ts,
                        "count": 1,
                        "reportingComponent": "default-scheduler",
                    },
                )
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("bind %s/%s: %s", md["namespace"], md["name"], e)
                time.sleep(1)
                self.binding.discard(md["uid"])  # the next event retries
                return
        except Exception as e:
            log.warning("bind %s/%s: %s", md["namespace"], md["name"], e)
            self.binding.discard(md["uid"])
            return
        if len(self.binding) > 10000:
            self.binding.clear()

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


def _mem_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 1 << 20


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _os_image() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def main(root: str) -> None:
    procs.set_pdeathsig()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    import json

    layout = Layout(__import__("pathlib").Path(root))
    state = State.load(layout.state_json)
    config = json.loads(layout.config_json.read_text())
    with contextlib.suppress(AttributeError):
        watcher = asyncio.PidfdChildWatcher()
        asyncio.set_child_watcher(watcher)
    asyncio.run(Kubelet(layout, state, config).main())
