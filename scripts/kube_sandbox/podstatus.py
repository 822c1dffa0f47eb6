"""A pod's status as a kubelet computes it: phase, conditions, container statuses, addresses.

A mixin of ``pod.PodWorker``; the kubelet's ``StatusSync`` sends ``build_status()``.
Conditions keep their transition time until their status changes; readiness gates count.
"""

from __future__ import annotations

from typing import Any

from kube_sandbox.podcontainer import now_iso

Obj = dict[str, Any]


class StatusMixin:
    def _cond(self, kind: str, ok: bool, reason: str | None = None) -> Obj:
        status = "True" if ok else "False"
        old = self.conditions.get(kind)
        if old is None or old[0] != status:
            self.conditions[kind] = (status, now_iso())
        cond = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self.conditions[kind][1],
            # null removes a reason/message left from an earlier status (strategic merge)
            "reason": reason if reason and not ok else None,
            "message": None,
        }
        return cond

    def phase(self) -> str:
        if self.phase_override:
            return self.phase_override
        cs = self.containers
        if all(c.done for c in cs) and self.initialized:
            codes = [c.state.get("terminated", {}).get("exitCode", 1) for c in cs]
            return "Succeeded" if all(code == 0 for code in codes) else "Failed"
        if self.initialized and any(
            "running" in c.state or c.restart_count > 0 or "terminated" in c.state or c.last_state
            for c in cs
        ):
            return "Running"
        return "Pending"

    def build_status(self) -> Obj:
        cs = self.containers
        containers_ready = self.initialized and all(c.ready for c in cs)
        gates = [g["conditionType"] for g in self.pod["spec"].get("readinessGates") or []]
        current = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or []}
        gates_ok = all(current.get(g, {}).get("status") == "True" for g in gates)
        not_ready = [c.name for c in cs if not c.ready]
        reason = "PodCompleted" if self.phase() in ("Succeeded", "Failed") else "ContainersNotReady"
        conditions = [
            self._cond("PodReadyToStartContainers", self.sandbox_ready and bool(self.netns)),
            self._cond("Initialized", self.initialized, "ContainersNotInitialized"),
            self._cond("ContainersReady", containers_ready, reason),
            self._cond(
                "Ready",
                containers_ready and gates_ok,
                reason if not containers_ready else "ReadinessGatesNotReady",
            ),
        ]
        for cond in conditions[2:]:
            if cond["reason"] == "ContainersNotReady" and not_ready:
                cond["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
        status: Obj = {
            "phase": self.phase(),
            "conditions": conditions,
            "hostIP": self.k.state.host_address,
            "hostIPs": [{"ip": self.k.state.host_address}],
            "startTime": self.start_time,
            "containerStatuses": [c.status() for c in cs],
        }
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        gen = self.pod["metadata"].get("generation")
        if gen is not None:
            status["observedGeneration"] = gen
        return status
