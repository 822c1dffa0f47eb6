"""Stopping a pod's containers: preStop, SIGTERM, the grace period, SIGKILL, the final delete.

A mixin of ``pod.PodWorker``. The grace period is the deletion's (or the pod's
``terminationGracePeriodSeconds``), at least 2 s after a preStop hook that used it up, as a
kubelet gives; liveness and startup probes stop at once, readiness keeps running while the
pod terminates. The final status is reported before the pod is deleted with grace 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

from kube_sandbox.podcontainer import Container


class StopMixin:
    def _grace(self) -> int:
        md = self.pod["metadata"]
        if md.get("deletionTimestamp") and md.get("deletionGracePeriodSeconds") is not None:
            return int(md["deletionGracePeriodSeconds"])
        return int(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    async def _kill(self, c: Container, *, grace: float, run_pre_stop: bool) -> None:
        proc = c.proc
        if proc is None or proc.returncode is not None or c.killing:
            return
        c.killing = True
        deadline = time.monotonic() + grace
        pre_stop = (c.spec.get("lifecycle") or {}).get("preStop")
        if run_pre_stop and pre_stop and grace > 0:
            ok, msg = await self._hook(c, pre_stop, grace)
            if not ok:
                self.k.event(self.pod, "FailedPreStopHook", msg, "Warning", c.name)
        remaining = deadline - time.monotonic()
        if run_pre_stop and pre_stop and remaining <= 0:
            remaining = 2.0  # the kubelet's minimum after a hook used up the grace period
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), max(remaining, 0))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)

    async def _terminate(self) -> None:
        self.terminating = True
        if self.force.is_set() or self.shutdown.is_set():
            grace, pre_stop = (0 if self.force.is_set() else 2), False
        else:
            grace, pre_stop = self._grace(), True
            self.k.event(self.pod, "Killing", f"Stopping pod {self.name}", "Normal")
        for c in self.containers:
            for t in c.probes:
                if t.get_name() in ("liveness", "startup"):
                    t.cancel()
        self.k.status.push(self)
        await asyncio.gather(
            *(self._kill(c, grace=grace, run_pre_stop=pre_stop) for c in self.containers)
        )
        for c in self.containers:
            if c.proc is not None and c.proc.returncode is None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(c.proc.wait(), 5)

    async def _kill_all(self, grace: float) -> None:
        for c in self.init_containers + self.containers:
            self._stop_probes(c)
            if c.proc is not None and c.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(c.proc.wait(), 5)

    async def _final_delete(self) -> None:
        self.finished = True
        for c in self.containers:
            if "terminated" not in c.state and c.state.get("running"):
                self._terminated(c, 137, "Error")
            c.ready = False
        await self.k.status.flush(self)
        await self.k.delete_pod(self)
