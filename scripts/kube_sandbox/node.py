"""The stand-in node: its registration, status (Ready, addresses, capacity) and Lease.

A mixin of ``kubelet.Kubelet``, with the node's identity (``system:node:NAME``): it creates
the Node, reports its status every minute and renews its Lease in ``kube-node-lease`` every
10 s, so the real node-lifecycle controller keeps it Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import time
from typing import Any

from kube_sandbox.kubeapi import ApiError
from kube_sandbox.layout import KUBERNETES_VERSION
from kube_sandbox.podcontainer import now_iso

log = logging.getLogger("kubelet")
Obj = dict[str, Any]


def micro_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


class NodeMixin:
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


def mem_kib() -> int:
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
