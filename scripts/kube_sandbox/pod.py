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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kube_sandbox import netutil, podspec
from kube_sandbox.probes import Prober, run_action

if TYPE_CHECKING:
    from kube_sandbox.kubelet import Kubelet

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PODEXEC = str(Path(__file__).with_name("podexec.py"))
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Container:
    spec: Obj
    init: bool = False
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    proc: asyncio.subprocess.Process | None = None
    container_id: str = ""
    started_mono: float = 0.0
    backoff: float = 0.0
    probes: list[asyncio.Task] = field(default_factory=list)
    killing: bool = False  # the runtime is stopping it on purpose (probe, deletion)
    started_evt: asyncio.Event | None = None  # set once the startup probe has passed
    readiness: Prober | None = None
    done: bool = False  # will not be started again

    @property
    def name(self) -> str:
        return self.spec["name"]

    def status(self) -> Obj:
        st = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if not self.init:
            st["started"] = self.started
        if self.container_id:
            st["containerID"] = self.container_id
        return st


class PodWorker:
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

    # ---- processes ----------------------------------------------------------------------
    def _exec_spec(self, c: Container, argv: list[str], env: dict[str, str], tag: str) -> Path:
        sec = podspec.security(self.pod, c.spec)
        mounts = podspec.volume_mounts(c.spec, self.volumes)
        etc = self.dir / "etc"
        hosts = self.k.dns.hosts_file(self)
        spec = {
            "argv": argv,
            "env": env,
            "cwd": c.spec.get("workingDir") or "/",
            "hostname": self.name,
            "mounts": mounts,
            "etc": {
                "/etc/hosts": str(hosts),
                "/etc/resolv.conf": str(etc / "resolv.conf"),
                "/etc/hostname": str(etc / "hostname"),
            },
            "scratch": str(self.dir / "scratch" / f"{c.name}-{tag}"),
            "host_dirs_record": str(self.k.layout.host_dirs),
            "readonly_root": sec.readonly_root,
            "uid": sec.uid,
            "gid": sec.gid,
            "groups": sec.groups,
            "no_new_privs": sec.no_new_privs,
            "parent_pid": os.getpid(),
        }
        run = self.dir / "run"
        run.mkdir(exist_ok=True)
        path = run / f"{c.name}-{tag}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        return path

    def _argv(self, spec_path: Path) -> list[str]:
        return [
            "ip",
            "netns",
            "exec",
            self.netns,
            sys.executable,
            "-I",
            "-S",
            PODEXEC,
            str(spec_path),
        ]

    async def _env(self, c: Container) -> dict[str, str]:
        enable_links = self.pod["spec"].get("enableServiceLinks", True)
        uid = podspec.security(self.pod, c.spec).uid
        return await asyncio.to_thread(
            podspec.container_env,
            self.pod_with_ips(),
            c.spec,
            base=self.k.base_env(self.name[:63], uid),
            services_env=self.k.services_env(self.ns, enable_links),
            sources=self.k.sources,
        )

    def pod_with_ips(self) -> Obj:
        pod = dict(self.pod)
        status = dict(pod.get("status") or {})
        status["podIP"] = self.pod_ip
        status["podIPs"] = [{"ip": self.pod_ip}]
        status["hostIP"] = self.k.state.host_address
        status["hostIPs"] = [{"ip": self.k.state.host_address}]
        pod["status"] = status
        return pod

    async def _start(self, c: Container) -> bool:
        """Start the container's process; on a configuration error, set its waiting state."""
        try:
            env = await self._env(c)
            argv = podspec.command_of(c.spec, env)
            if "/" not in argv[0] and shutil.which(argv[0], path=env.get("PATH", "")) is None:
                msg = (
                    f'exec: "{argv[0]}": executable file not found in $PATH '
                    f"(PATH={env.get('PATH', '')})"
                )
                self._terminated(c, 128, "StartError", msg)
                self.k.event(self.pod, "Failed", f"Error: {msg}", "Warning", c.name)
                return False
            spec_path = self._exec_spec(c, argv, env, str(c.restart_count))
        except podspec.ConfigError as e:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            self.k.event(self.pod, "Failed", f"Error: {e}", "Warning", c.name)
            self.k.status.push(self)
            return False
        logf = self.k.layout.pods / f"{self.ns}_{self.name}_{c.name}.log"
        with open(logf, "ab") as out:
            out.write(
                f"--- kube-sandbox {now_iso()}: starting container {c.name} (restart "
                f"{c.restart_count}); image {c.spec.get('image', '')!r} ignored, running "
                f"{argv!r} locally\n".encode()
            )
            out.flush()
            c.proc = await asyncio.create_subprocess_exec(
                *self._argv(spec_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        c.container_id = f"kube-sandbox://{self.uid[:8]}-{c.name}-{c.restart_count}-{c.proc.pid}"
        c.started_mono = time.monotonic()
        c.state = {"running": {"startedAt": now_iso()}}
        c.killing = False
        if c.restart_count == 0:
            self.k.event(
                self.pod,
                "Pulled",
                f'Container image "{c.spec.get("image", "")}" ignored: kube-sandbox runs the '
                "pod spec's command as a local process",
                "Normal",
                c.name,
            )
        self.k.event(self.pod, "Started", f"Started container {c.name}", "Normal", c.name)
        return True

    def _terminated(self, c: Container, code: int, reason: str, message: str = "") -> None:
        started = (c.state.get("running") or {}).get("startedAt")
        term = {"exitCode": code, "reason": reason, "finishedAt": now_iso()}
        if started:
            term["startedAt"] = started
        if message:
            term["message"] = message
        if c.container_id:
            term["containerID"] = c.container_id
        c.state = {"terminated": term}
        c.ready = False
        c.started = False

    async def _wait_exit(self, c: Container) -> int:
        rc = await c.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.proc.pid, signal.SIGKILL)  # the rest of its group, as a pid namespace would
        if rc < 0:
            rc = 128 - rc
        return rc

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

    # ---- probes -------------------------------------------------------------------------
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

            p = Prober(
                "startup",
                startup,
                started_at=started_at,
                run=runner(startup),
                on_result=on_startup,
                on_failure_attempt=unhealthy("Startup"),
            )
            c.probes.append(asyncio.create_task(p.loop(), name="startup"))

        if readiness:

            def on_ready(ok: bool, msg: str) -> None:
                log.info("pod %s container %s readiness %s %s", self.key, c.name, ok, msg)
                if c.ready != ok and "running" in c.state:
                    c.ready = ok and c.started
                    self.k.status.push(self)

            p = Prober(
                "readiness",
                readiness,
                started_at=started_at,
                run=runner(readiness),
                on_result=on_ready,
                on_failure_attempt=unhealthy("Readiness"),
            )
            c.readiness = p
            c.probes.append(asyncio.create_task(gated(p), name="readiness"))

        if liveness:

            def on_live(ok: bool, msg: str) -> None:
                if not ok:
                    self._restart_unhealthy(c, "liveness", msg, liveness)

            p = Prober(
                "liveness",
                liveness,
                started_at=started_at,
                run=runner(liveness),
                on_result=on_live,
                on_failure_attempt=unhealthy("Liveness"),
            )
            c.probes.append(asyncio.create_task(gated(p), name="liveness"))

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

    async def _exec(self, c: Container, argv: list[str], timeout: float) -> tuple[bool, str]:
        if not argv or not self.netns:
            return False, "no command"
        try:
            env = await self._env(c)
            spec_path = self._exec_spec(c, argv, env, f"exec-{time.monotonic_ns()}")
        except podspec.ConfigError as e:
            return False, str(e)
        proc = await asyncio.create_subprocess_exec(
            *self._argv(spec_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
            ok = proc.returncode == 0
            return ok, "" if ok else f"command {argv!r} exited {proc.returncode}: {out[-200:]!r}"
        except TimeoutError:
            return False, f"command {argv!r} timed out after {timeout:.0f}s"
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await proc.wait()
            spec_path.unlink(missing_ok=True)

    async def _hook(self, c: Container, handler: Obj, timeout: float) -> tuple[bool, str]:
        try:
            return await run_action(
                handler,
                pod_ip=self.pod_ip,
                port_of=self._port_of(c),
                exec_fn=lambda argv, t: self._exec(c, argv, t),
                timeout=max(timeout, 0.001),
            )
        except podspec.ConfigError as e:
            return False, str(e)

    # ---- termination --------------------------------------------------------------------
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

    # ---- status -------------------------------------------------------------------------
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
