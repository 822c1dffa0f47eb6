"""Running a container's command as a local process inside its pod's namespaces.

A mixin of ``pod.PodWorker``: it builds the container's environment (``podspec``) and the
spec ``podexec.py`` reads (argv, env, mounts, /etc files, user and group ids), starts the
process with ``ip netns exec`` in the pod's network namespace with its output appended to
DIR/pods/NAMESPACE_NAME_CONTAINER.log, records its termination, and runs ``exec`` probes and
lifecycle hooks (``exec``, ``httpGet``, ``sleep``) the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from kube_sandbox import podspec
from kube_sandbox.podcontainer import Container, now_iso
from kube_sandbox.probes import run_action

Obj = dict[str, Any]
PODEXEC = str(Path(__file__).with_name("podexec.py"))


class ProcessMixin:
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
