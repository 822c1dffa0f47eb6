"""Sending pod statuses to the API server: one request in flight per pod, newer ones coalesced.

Used by the kubelet stand-in (``kubelet.Kubelet.status``); each ``pod.PodWorker`` pushes
itself whenever what it would report changes, and ``flush`` waits for the last send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from kube_sandbox.kubeapi import ApiError

if TYPE_CHECKING:
    from kube_sandbox.kubelet import Kubelet
    from kube_sandbox.pod import PodWorker

log = logging.getLogger("kubelet")


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
