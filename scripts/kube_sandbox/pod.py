"""One pod on the stand-in node: its sandbox, containers, probes, hooks, status and end.

The kubelet stand-in (``kubelet``) makes one ``PodWorker`` per pod bound to its node. The
worker gives the pod a network namespace and address, writes its volumes (requesting the
service-account token with TokenRequest), runs init containers in order and then each
container as a local process (``podexec`` inside the pod's namespaces, output appended to
DIR/pods/NAMESPACE_NAME_CONTAINER.log), with startup, readiness and liveness probes,
postStart/preStop hooks, restartPolicy with the kubelet's crash back-off (10 s doubling to
5 min), and reports the pod's status as a kubelet computes it. On graceful deletion it runs
preStop, sends SIGTERM, waits out terminationGracePeriodSeconds, sends SIGKILL, reports the
final status and deletes the pod with grace 0. Readiness probes keep running while a pod
terminates, as on a real kubelet (the EndpointSlice controller marks a terminating endpoint
not ready at once; "serving" follows the probe).

The worker's parts, one job each: ``podprocess`` (a container's process), ``podprobes``,
``podstop`` (termination), ``podstatus`` (what is reported), ``podcontainer`` (one
container's state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kube_sandbox import netutil, podspec
from kube_sandbox.podcontainer import Container, now_iso
from kube_sandbox.podprobes import ProbesMixin
from kube_sandbox.podprocess import ProcessMixin
from kube_sandbox.podstatus import StatusMixin
from kube_sandbox.podstop import StopMixin

if TYPE_CHECKING:
    from kube_sandbox.kubelet import Kubelet

__all__ = ["Container", "PodWorker", "now_iso"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0


class PodWorker(ProcessMixin, ProbesMixin, StopMixin, StatusMixin):
    def __init__(self, kubelet: Kubelet, pod: Obj):
        self.k = kubelet
        self.pod = pod
        md = pod["metadata"]
        self.ns, self.name, self.uid = md["namespace"], md["name"], md["uid"]
        self.key = f"{self.ns}/{self.name}"
        self.dir = kubelet.layout.pods / f"{self.ns}_{self.name}_{self.uid[:8]}"
        self.init_containers = [
            Container(c, init=True) for c in pod["spec"].get("initContainers") or []
        ]
        self.containers = [Container(c) for c in pod["spec"]["containers"]]
        self.pod_ip: str | None = None
        self.ip_index: int | None = None
        self.netns = ""
        self.veth = ""
        self.start_time: str | None = None
        self.initialized = False
        self.sandbox_ready = False
        self.terminating = False
        self.finished = False  # final status reported
        self.phase_override: str | None = None
        self.conditions: dict[str, tuple[str, str]] = {}
        self.deletion = asyncio.Event()
        self.force = asyncio.Event()
        self.shutdown = asyncio.Event()  # the sandbox is going down
        self.volumes: dict[str, Path] = {}
        self.task = asyncio.create_task(self.run(), name=f"pod {self.key}")

    # ---- events from the informer -------------------------------------------------------
    def update(self, pod: Obj) -> None:
        if pod["metadata"]["uid"] != self.uid:
            return
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deletion.set()

    def deleted(self) -> None:
        self.force.set()
        self.deletion.set()

    def stop_for_shutdown(self) -> None:
        self.shutdown.set()
        self.deletion.set()

    # ---- life ---------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s: runtime error", self.key)
        finally:
            await self._kill_all(grace=0)
            await self._teardown()
            if self.deletion.is_set() and not self.shutdown.is_set() and not self.force.is_set():
                await self._final_delete()
            self.k.worker_done(self)

    async def _run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.start_time = now_iso()
        await self._setup_network()
        if self.deletion.is_set():
            return
        self.sandbox_ready = True
        self.k.status.push(self)
        if not await self._prepare_volumes():
            return
        for c in self.init_containers:
            ok = await self._run_init(c)
            if not ok or self.deletion.is_set():
                if not ok:
                    self.phase_override = "Failed"
                    self.k.status.push(self)
                    await self._wait_deletion()
                return
        self.initialized = True
        self.k.status.push(self)
        loops = [asyncio.create_task(self._container_loop(c)) for c in self.containers]
        deletion = asyncio.create_task(self.deletion.wait())
        all_done = asyncio.gather(*loops)
        await asyncio.wait([deletion, all_done], return_when=asyncio.FIRST_COMPLETED)
        if self.deletion.is_set():
            await self._terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(all_done, 10)
        else:
            deletion.cancel()
            # every container finished for good (restartPolicy Never / OnFailure)
            self.k.status.push(self)
            await self._teardown()
            await self._wait_deletion()

    async def _wait_deletion(self) -> None:
        await self.deletion.wait()

    # ---- sandbox ------------------------------------------------------------------------
    async def _setup_network(self) -> None:
        self.ip_index, self.pod_ip = self.k.allocate_ip()
        st = self.k.state
        self.netns = f"{st.netns_prefix}{self.ip_index}"
        self.veth = f"{st.veth_prefix}{self.ip_index}"
        await asyncio.to_thread(
            netutil.create_pod_netns,
            netns=self.netns,
            veth=self.veth,
            bridge=st.bridge,
            address=self.pod_ip,
            host_address=st.host_address,
            service_cidr=st.service_cidr,
        )
        etc = self.dir / "etc"
        etc.mkdir(exist_ok=True)
        (etc / "hostname").write_text(self.name[:63] + "\n")
        (etc / "resolv.conf").write_text(
            "# kube-sandbox: Service names come from /etc/hosts (kept up to date by the\n"
            "# kubelet stand-in); there is no DNS server, so other names fail fast.\n"
            f"search {self.ns}.svc.cluster.local svc.cluster.local cluster.local\n"
            "nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n"
        )
        self.k.dns.add(self)

    async def _teardown(self) -> None:
        if self.netns:
            self.k.dns.remove(self)
            netns, veth = self.netns, self.veth
            self.netns = ""
            for pid in await asyncio.to_thread(netutil.netns_pids, netns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(netutil.delete_pod_netns, netns, veth)
            self.k.release_ip(self.ip_index)

    # ---- volumes ------------------------------------------------------------------------
    async def _prepare_volumes(self) -> bool:
        delay = 0.5
        while not self.deletion.is_set():
            try:
                self.volumes = await asyncio.to_thread(
                    podspec.write_volumes,
                    self.pod,
                    self.dir / "volumes",
                    sources=self.k.sources,
                    token=self._token,
                    ca_bundle=self.k.ca_bundle,
                )
                return True
            except Exception as e:
                msg = str(e)
                log.info("pod %s: volumes not ready: %s", self.key, msg)
                self.k.event(self.pod, "FailedMount", msg, "Warning")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.deletion.wait(), delay)
                delay = min(delay * 2, 8)
        return False

    def _token(self, source: Obj) -> str:
        return self.k.request_token(self.pod, source)

    # ---- containers ---------------------------------------------------------------------
    async def _run_init(self, c: Container) -> bool:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while not self.deletion.is_set():
            if await self._start(c):
                self.k.status.push(self)
                rc = await self._wait_exit(c)
                self._terminated(c, rc, "Completed" if rc == 0 else "Error")
                if rc == 0:
                    c.ready = True
                    c.done = True
                    self.k.status.push(self)
                    return True
            if policy == "Never":
                c.done = True
                self.k.status.push(self)
                return False
            await self._backoff(c)
        return False

    async def _container_loop(self, c: Container) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while not self.deletion.is_set():
            if await self._start(c):
                self._start_probes(c)
                post = (c.spec.get("lifecycle") or {}).get("postStart")
                if post:
                    ok, msg = await self._hook(c, post, 30)
                    if not ok:
                        self.k.event(self.pod, "FailedPostStartHook", msg, "Warning", c.name)
                        await self._kill(c, grace=self._grace(), run_pre_stop=False)
                self._maybe_started(c)
                self.k.status.push(self)
                rc = await self._wait_exit(c)
                self._stop_probes(c)
                reason = "Completed" if rc == 0 else "Error"
                self._terminated(c, rc, reason)
                self.k.status.push(self)
                if self.deletion.is_set():
                    break
                if policy == "Never" or (policy == "OnFailure" and rc == 0):
                    break
            elif policy == "Never":
                break
            await self._backoff(c)
        c.done = True
        self.k.status.push(self)

    async def _backoff(self, c: Container) -> None:
        ran = time.monotonic() - c.started_mono if c.started_mono else 0
        if ran > BACKOFF_RESET:
            c.backoff = 0
        delay = c.backoff
        c.backoff = BACKOFF_START if c.backoff == 0 else min(c.backoff * 2, BACKOFF_MAX)
        if "terminated" in c.state:
            c.last_state = c.state
        if delay > 0:
            msg = f"back-off {delay:.0f}s restarting failed container={c.name} pod={self.name}"
            c.state = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
            self.k.status.push(self)
            self.k.event(
                self.pod,
                "BackOff",
                f"Back-off restarting failed container {c.name}",
                "Warning",
                c.name,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.deletion.wait(), delay)
        if not self.deletion.is_set():
            c.restart_count += 1
