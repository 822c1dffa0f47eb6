"""Cluster DNS stand-in: one /etc/hosts per pod, kept up to date as Services change.

Used by the kubelet stand-in. Each pod's mount namespace has its own /etc/hosts bind-mounted
(see ``podexec``) from DIR/pods/<pod>/etc/hosts. It maps every Service with a ClusterIP to
``NAME.NAMESPACE.svc.cluster.local``, ``NAME.NAMESPACE.svc`` and ``NAME.NAMESPACE``, plus the
bare ``NAME`` for Services of the pod's own namespace, as cluster DNS with the pod's search
path would answer; and the pod's own name to its address. The files are rewritten in place
(same inode, so the bind mounts see the change) a moment after a Service appears, changes
or goes. There is no DNS server: /etc/resolv.conf names 127.0.0.1 in the pod's network
namespace, where nothing listens, so any other name fails at once and nothing leaves the
machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kube_sandbox.pod import PodWorker

Obj = dict[str, Any]
DOMAIN = "cluster.local"


def hosts_text(pod_ns: str, pod_name: str, pod_ip: str | None, services: list[Obj]) -> str:
    lines = [
        "# Kubernetes-managed hosts file (kube-sandbox: Service names stand in for cluster DNS).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    if pod_ip:
        lines.append(f"{pod_ip}\t{pod_name}")
    for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])):
        ip = (svc.get("spec") or {}).get("clusterIP")
        if not ip or ip == "None":
            continue
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        names = [f"{name}.{ns}.svc.{DOMAIN}", f"{name}.{ns}.svc", f"{name}.{ns}"]
        if ns == pod_ns:
            names.append(name)
        lines.append(f"{ip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def write_in_place(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class Dns:
    def __init__(self, services: dict[str, Obj]):
        self.services = services  # the kubelet's Service informer items (key -> object)
        self.pods: dict[str, PodWorker] = {}
        self._pending: asyncio.TimerHandle | None = None

    def hosts_file(self, w: PodWorker) -> Path:
        return w.dir / "etc" / "hosts"

    def _write(self, w: PodWorker) -> None:
        text = hosts_text(w.ns, w.name, w.pod_ip, list(self.services.values()))
        write_in_place(self.hosts_file(w), text)

    def add(self, w: PodWorker) -> None:
        self.pods[w.uid] = w
        self._write(w)

    def remove(self, w: PodWorker) -> None:
        self.pods.pop(w.uid, None)

    def services_changed(self) -> None:
        """Called on the event loop when a Service changes: rewrite every hosts file soon."""
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(0.05, self._flush)

    def _flush(self) -> None:
        self._pending = None
        for w in list(self.pods.values()):
            with contextlib.suppress(OSError):
                self._write(w)
