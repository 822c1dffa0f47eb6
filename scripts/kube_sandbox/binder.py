"""The scheduler's stand-in: binds every pending pod to the one node.

A mixin of ``kubelet.Kubelet``, with the scheduler's identity (``system:kube-scheduler``):
each pod that names no node, no other scheduler and no scheduling gate is bound through
``pods/binding`` and gets a ``Scheduled`` event. There is one node: no filtering, no scoring.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from kube_sandbox.kubeapi import ApiError
from kube_sandbox.podcontainer import now_iso

log = logging.getLogger("kubelet")
Obj = dict[str, Any]


class BinderMixin:
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
