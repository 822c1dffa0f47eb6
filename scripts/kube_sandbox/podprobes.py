"""A container's startup, readiness and liveness probes, as a kubelet runs them.

A mixin of ``pod.PodWorker``: readiness and liveness wait for the startup probe; readiness
drives the container's ``ready``; a failed liveness or startup probe kills the container
(preStop and grace period included) so its loop restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kube_sandbox import podspec
from kube_sandbox.podcontainer import Container
from kube_sandbox.probes import Prober, run_action

log = logging.getLogger("kube_sandbox.pod")
Obj = dict[str, Any]


class ProbesMixin:
    def _port_of(self, c: Container) -> Callable[[Any], int]:
        return lambda port: podspec.resolve_port(c.spec, port)

    def _start_probes(self, c: Container) -> None:
        c.started = False
        c.ready = False
        startup = c.spec.get("startupProbe")
        readiness = c.spec.get("readinessProbe")
        liveness = c.spec.get("livenessProbe")
        started_at = c.started_mono
        started_evt = asyncio.Event()
        c.started_evt = started_evt
        c.readiness = None
        if not startup:
            started_evt.set()

        async def gated(prober: Prober) -> None:
            """Readiness and liveness probes start once the startup probe has passed."""
            await started_evt.wait()
            await prober.loop()

        def runner(spec: Obj) -> Callable[[float], Awaitable[tuple[bool, str]]]:
            async def run(timeout: float) -> tuple[bool, str]:
                try:
                    return await run_action(
                        spec,
                        pod_ip=self.pod_ip,
                        port_of=self._port_of(c),
                        exec_fn=lambda argv, t: self._exec(c, argv, t),
                        timeout=timeout,
                    )
                except podspec.ConfigError as e:
                    return False, str(e)

            return run

        def unhealthy(kind: str):
            def report(msg: str) -> None:
                self.k.event(
                    self.pod, "Unhealthy", f"{kind} probe failed: {msg}", "Warning", c.name
                )

            return report

        def prober(kind: str, spec: Obj, on_result: Callable[[bool, str], None]) -> Prober:
            return Prober(
                kind,
                spec,
                started_at=started_at,
                run=runner(spec),
                on_result=on_result,
                on_failure_attempt=unhealthy(kind.capitalize()),
            )

        if startup:

            def on_startup(ok: bool, msg: str) -> None:
                if ok:
                    started_evt.set()
                    self._maybe_started(c)
                    self.k.status.push(self)
                    for t in list(c.probes):
                        if t.get_name() == "startup":
                            t.cancel()
                else:
                    self._restart_unhealthy(c, "startup", msg, startup)

            first = prober("startup", startup, on_startup)
            c.probes.append(asyncio.create_task(first.loop(), name="startup"))

        if readiness:

            def on_ready(ok: bool, msg: str) -> None:
                log.info("pod %s container %s readiness %s %s", self.key, c.name, ok, msg)
                if c.ready != ok and "running" in c.state:
                    c.ready = ok and c.started
                    self.k.status.push(self)

            c.readiness = prober("readiness", readiness, on_ready)
            c.probes.append(asyncio.create_task(gated(c.readiness), name="readiness"))

        if liveness:

            def on_live(ok: bool, msg: str) -> None:
                if not ok:
                    self._restart_unhealthy(c, "liveness", msg, liveness)

            live = prober("liveness", liveness, on_live)
            c.probes.append(asyncio.create_task(gated(live), name="liveness"))

    def _maybe_started(self, c: Container) -> None:
        evt = c.started_evt
        if "running" in c.state and (evt is None or evt.is_set()):
            c.started = True
            if not c.spec.get("readinessProbe"):
                c.ready = True
            else:
                c.ready = bool(c.readiness and c.readiness.result)

    def _restart_unhealthy(self, c: Container, kind: str, msg: str, probe: Obj) -> None:
        if c.killing or self.deletion.is_set():
            return
        self.k.event(
            self.pod,
            "Killing",
            f"Container {c.name} failed {kind} probe, will be restarted",
            "Normal",
            c.name,
        )
        grace = probe.get("terminationGracePeriodSeconds")
        grace = self._grace() if grace is None else int(grace)
        task = asyncio.create_task(self._kill(c, grace=grace, run_pre_stop=True))
        self.k.background.add(task)
        task.add_done_callback(self.k.background.discard)

    def _stop_probes(self, c: Container) -> None:
        for t in c.probes:
            t.cancel()
        c.probes = []
