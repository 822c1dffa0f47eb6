"""The background process that owns one sandbox, from ``up`` until ``down``.

``kube-sandbox up DIR`` starts it detached (``python -m kube_sandbox supervise DIR``, pid in
DIR/supervisor.pid, log in DIR/logs/supervisor.log) and waits for DIR/ready. In order it:
takes a free /24 pair and creates the bridge; makes the certificates and kubeconfigs; starts
etcd, kube-apiserver, kube-controller-manager, the proxy stand-in and the kubelet stand-in
(logs in DIR/logs/); waits until the node is Ready, the ``default`` ServiceAccount and the
``kube-root-ca.crt`` ConfigMap exist and services.json lists ``default/kubernetes``; writes
sandbox.json and host-address; and touches DIR/ready. Then it restarts any child that
exits. On SIGTERM it stops the kubelet stand-in first (which kills the pods), then the rest
in reverse order, removes the network, and exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kube_sandbox import build, certs, controlplane, netutil, procs, teardown
from kube_sandbox.layout import (
    KUBERNETES_VERSION,
    POD_NET_PREFIX,
    SERVICE_NET_PREFIX,
    Layout,
    State,
    write_json,
)

log = logging.getLogger("supervisor")

IDENTITIES = [
    certs.Identity("admin", "kube-sandbox-admin", "system:masters"),
    certs.Identity("controller-manager", "system:kube-controller-manager"),
    certs.Identity("scheduler", "system:kube-scheduler"),
    certs.Identity("proxy", "system:kube-proxy"),
]


class Supervisor:
    def __init__(self, root: Path):
        self.layout = Layout(root)
        self.config = json.loads(self.layout.config_json.read_text())
        self.children: dict[str, subprocess.Popen] = {}
        self.argv: dict[str, list[str]] = {}
        self.restarts: dict[str, list[float]] = {}
        self.stopping = False
        self.state: State | None = None

    # ---- setup --------------------------------------------------------------------------
    def _network(self) -> State:
        sid = netutil.new_sandbox_id()
        index, bridge = netutil.create_bridge(sid)
        node = self.config.get("node_name") or "sandbox"
        state = State(
            sandbox_id=sid,
            net_index=index,
            bridge=bridge,
            host_address=f"{POD_NET_PREFIX}.{index}.1",
            pod_cidr=f"{POD_NET_PREFIX}.{index}.0/24",
            service_cidr=f"{SERVICE_NET_PREFIX}.{index}.0/24",
            kubernetes_service_ip=f"{SERVICE_NET_PREFIX}.{index}.1",
            node_name=node,
            netns_prefix=f"ks{sid}-",
            veth_prefix=f"ksv{sid}",
        )
        state.ports = {
            "etcd": netutil.free_port(),
            "etcd_peer": netutil.free_port(),
            "apiserver": netutil.free_port(),
            "controller_manager": netutil.free_port(),
        }
        state.save(self.layout.state_json)
        return state

    def _pki(self, state: State) -> None:
        lay = self.layout
        node = certs.Identity("node", f"system:node:{state.node_name}", "system:nodes")
        certs.make_pki(
            lay.pki,
            ip_sans=["127.0.0.1", state.kubernetes_service_ip, state.host_address],
            identities=[*IDENTITIES, node],
        )
        server = f"https://127.0.0.1:{state.ports['apiserver']}"
        certs.write_kubeconfig(
            lay.kubeconfig, server=server, pki=lay.pki, stem="admin", user="kube-sandbox-admin"
        )
        for ident in [*IDENTITIES[1:], node]:
            certs.write_kubeconfig(
                lay.component_kubeconfig(ident.name),
                server=server,
                pki=lay.pki,
                stem=ident.name,
                user=ident.common_name,
            )

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv[name] = argv
        self.children[name] = procs.spawn(
            argv, log=self.layout.logs / f"{name}.log", env=env, cwd=self.layout.root
        )
        self.state.pids[name] = self.children[name].pid
        self.state.save(self.layout.state_json)
        log.info("started %s (pid %d)", name, self.children[name].pid)

    def _alive(self, name: str):
        return lambda: self.children[name].poll() is None

    def _python_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG",))}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _wait_ready(self, timeout: float = 90) -> None:
        from kube_sandbox.kubeapi import Kube

        kube = Kube(str(self.layout.kubeconfig))
        deadline = time.monotonic() + timeout
        waiting = "kubelet stand-in"
        while time.monotonic() < deadline:
            for name in ("kubelet", "proxy", "controller-manager", "kube-apiserver"):
                if self.children[name].poll() is not None:
                    raise RuntimeError(f"{name} exited during start (see DIR/logs/{name}.log)")
            try:
                if not (self.layout.root / "kubelet.ready").exists():
                    waiting = "kubelet stand-in"
                elif not self._node_ready(kube):
                    waiting = "node Ready"
                elif (
                    kube.get_optional("/api/v1/namespaces/default/serviceaccounts/default") is None
                ):
                    waiting = "default ServiceAccount (serviceaccount controller)"
                elif (
                    kube.get_optional("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
                    is None
                ):
                    waiting = "kube-root-ca.crt (root-ca-cert-publisher)"
                elif "default/kubernetes" not in self._services():
                    waiting = "proxy stand-in (services.json)"
                else:
                    return
            except Exception as e:
                waiting = f"{waiting} ({e})"
            time.sleep(0.2)
        raise RuntimeError(f"sandbox not ready after {timeout:.0f} s: waiting for {waiting}")

    def _node_ready(self, kube) -> bool:
        node = kube.get_optional(f"/api/v1/nodes/{self.state.node_name}")
        conds = (node or {}).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def _services(self) -> dict:
        try:
            return json.loads(self.layout.services_json.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def start(self) -> None:
        lay = self.layout
        t0 = time.monotonic()
        bins = build.binaries()
        self.state = state = self._network()
        self._pki(state)
        log.info(
            "network %s, bridge %s, pki ready (%.1f s)",
            state.pod_cidr,
            state.bridge,
            time.monotonic() - t0,
        )
        self._start("etcd", controlplane.etcd_argv(bins["etcd"], lay, state))
        controlplane.wait_etcd(state, self._alive("etcd"))
        log.info("etcd healthy (%.1f s)", time.monotonic() - t0)
        self._start(
            "kube-apiserver", controlplane.apiserver_argv(bins["kube-apiserver"], lay, state)
        )
        controlplane.wait_apiserver(lay, state, self._alive("kube-apiserver"))
        log.info("kube-apiserver ready (%.1f s)", time.monotonic() - t0)
        self._start(
            "controller-manager",
            controlplane.controller_manager_argv(bins["kube-controller-manager"], lay, state),
        )
        py = [sys.executable, "-m", "kube_sandbox"]
        root = str(lay.root)
        self._start("proxy", [*py, "proxy", root], env=self._python_env())
        self._start("kubelet", [*py, "kubelet", root], env=self._python_env())
        controlplane.wait_controller_manager(lay, state, self._alive("controller-manager"))
        log.info("kube-controller-manager healthy (%.1f s)", time.monotonic() - t0)
        self._wait_ready()
        info = {
            "dir": root,
            "kubeconfig": str(lay.kubeconfig),
            "apiserver": f"https://127.0.0.1:{state.ports['apiserver']}",
            "host_address": state.host_address,
            "pod_cidr": state.pod_cidr,
            "service_cidr": state.service_cidr,
            "kubernetes_service_ip": state.kubernetes_service_ip,
            "node": state.node_name,
            "pid": os.getpid(),
            "services_file": str(lay.services_json),
            "pods_dir": str(lay.pods),
            "logs_dir": str(lay.logs),
            "etcd": f"http://127.0.0.1:{state.ports['etcd']}",
            "ports": state.ports,
            "kubernetes_version": KUBERNETES_VERSION,
            "pod_path": self.config.get("path", []),
            "image_env": self.config.get("image_env", {}),
            "bridge": state.bridge,
            "started_in_s": round(time.monotonic() - t0, 1),
        }
        write_json(lay.sandbox_json, info)
        lay.host_address.write_text(state.host_address + "\n")
        lay.ready_file.write_text(json.dumps({"seconds": info["started_in_s"]}) + "\n")
        log.info("sandbox ready in %.1f s", time.monotonic() - t0)

    # ---- run and stop -------------------------------------------------------------------
    def monitor(self) -> None:
        while not self.stopping:
            for name, proc in list(self.children.items()):
                if proc.poll() is not None and not self.stopping:
                    recent = [t for t in self.restarts.get(name, []) if time.time() - t < 60]
                    log.warning("%s exited with %s", name, proc.returncode)
                    if len(recent) >= 5:
                        log.error("%s keeps exiting; not restarting it", name)
                        del self.children[name]
                        continue
                    self.restarts[name] = [*recent, time.time()]
                    self._start(name, self.argv[name], env=self._restart_env(name))
            time.sleep(0.5)

    def _restart_env(self, name: str) -> dict[str, str] | None:
        return self._python_env() if name in ("kubelet", "proxy") else None

    def stop(self) -> None:
        self.stopping = True
        order = ["kubelet", "proxy", "controller-manager", "kube-apiserver", "etcd"]
        for name in order:
            proc = self.children.get(name)
            if proc is not None:
                rc = procs.stop(proc, timeout=30 if name == "kubelet" else 10)
                log.info("stopped %s (%s)", name, rc)
        if self.state is not None:
            teardown.cleanup(self.layout, self.state)
        for f in (self.layout.ready_file, self.layout.root / "kubelet.ready"):
            f.unlink(missing_ok=True)


def main(root: str) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    config = json.loads(Layout(Path(root).resolve()).config_json.read_text())
    if config.get("node") == "standin":
        sup = Supervisor(Path(root).resolve())
    else:
        from kube_sandbox.realnode import NodeSupervisor

        sup = NodeSupervisor(Path(root).resolve())
    sup.layout.pid_file.write_text(f"{os.getpid()}\n")

    def on_signal(signum, frame):
        if not sup.stopping:
            sup.stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        sup.start()
        sup.monitor()
    except KeyboardInterrupt:
        log.info("stopping")
    except Exception as e:
        log.exception("failed: %s", e)
        (sup.layout.root / "failed").write_text(f"{e}\n")
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with contextlib.suppress(Exception):
            sup.stop()
        sup.layout.pid_file.unlink(missing_ok=True)
        log.info("stopped")
    sys.exit(code)
