"""The background process that owns one node, from ``up`` until ``down``.

``kube-sandbox up DIR`` starts it detached (``python -m kube_sandbox supervise DIR``, pid in
DIR/supervisor.pid, log in DIR/logs/supervisor.log) and waits for DIR/ready. In order it:
records the host's sysctls and nft tables and claims the machine's one node (``hoststate``);
takes a free /24 pair, creates the bridge (the node's address, the pods' gateway and where
pods reach the host) and a route that sends the Service range to it; makes the node's cgroup
root, the certificates and kubeconfigs; starts containerd and imports the images while etcd,
kube-apiserver (on the node's address, so pods reach it through the ``kubernetes`` Service)
and kube-controller-manager start; then kube-scheduler, the kubelet and kube-proxy; waits for
the node to be Ready, applies CoreDNS and waits for it and for the ``kubernetes`` Service to
answer at its ClusterIP from the host; writes sandbox.json and DIR/ready. Then it restarts any
child that exits. On SIGTERM it stops the node's processes, kills the containers, stops the
control plane and containerd, and undoes what it changed on the host (``teardown``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config

from kube_sandbox import (
    build,
    certs,
    controlplane,
    coredns,
    hoststate,
    images,
    netutil,
    nodeconfig,
    procs,
    teardown,
)
from kube_sandbox.layout import (
    KUBERNETES_VERSION,
    POD_NET_PREFIX,
    SERVICE_NET_PREFIX,
    Layout,
    State,
    write_json,
)

log = logging.getLogger("node")

IDENTITIES = [
    certs.Identity("admin", "kube-sandbox-admin", "system:masters"),
    certs.Identity("controller-manager", "system:kube-controller-manager"),
    certs.Identity("scheduler", "system:kube-scheduler"),
    certs.Identity("proxy", "system:kube-proxy"),
]
KUBELET_CLIENT = certs.Identity(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
)
# containerd stops last: the containers are killed through it first.
STOP_ORDER = (
    "kubelet",
    "kube-scheduler",
    "kube-proxy",
    "controller-manager",
    "kube-apiserver",
    "etcd",
    "containerd",
)
WATCHED = ("kubelet", "kube-proxy", "kube-scheduler", "controller-manager", "kube-apiserver")
RESTARTS_PER_MINUTE = 5


class Children:
    """The node's processes: started with their logs in DIR/logs, pids in state.json,
    restarted when they exit (up to five times a minute), stopped in a given order."""

    def __init__(self, layout: Layout, state: State) -> None:
        self._layout = layout
        self._state = state
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._argv: dict[str, list[str]] = {}
        self._restarts: dict[str, list[float]] = {}

    def start(self, name: str, argv: list[str]) -> None:
        self._argv[name] = argv
        proc = procs.spawn(argv, log=self._layout.logs / f"{name}.log", cwd=self._layout.root)
        self._procs[name] = proc
        self._state.pids[name] = proc.pid
        self._state.save(self._layout.state_json)
        log.info("started %s (pid %d)", name, proc.pid)

    def exited(self, names: tuple[str, ...]) -> str | None:
        """The first of ``names`` that is no longer running."""
        return next(
            (n for n in names if n in self._procs and self._procs[n].poll() is not None), None
        )

    def restart_exited(self) -> None:
        for name, proc in list(self._procs.items()):
            if proc.poll() is None:
                continue
            recent = [t for t in self._restarts.get(name, []) if time.time() - t < 60]
            log.warning("%s exited with %s", name, proc.returncode)
            if len(recent) >= RESTARTS_PER_MINUTE:
                log.error("%s keeps exiting; not restarting it", name)
                del self._procs[name]
                continue
            self._restarts[name] = [*recent, time.time()]
            self.start(name, self._argv[name])

    def stop(self, names: tuple[str, ...]) -> None:
        for name in names:
            proc = self._procs.get(name)
            if proc is not None:
                log.info("stopped %s (%s)", name, procs.stop(proc, timeout=10))


class NodeSupervisor:
    def __init__(self, root: Path) -> None:
        self.layout = Layout(root)
        self.config: dict[str, Any] = json.loads(self.layout.config_json.read_text())
        self.stopping = False
        self.state: State | None = None
        self.children: Children | None = None

    # ---- setup --------------------------------------------------------------------------
    def _network(self) -> State:
        lay = self.layout
        hoststate.save_sysctls(lay)
        hoststate.record_nft_tables(lay)
        hoststate.claim(lay)
        sid = netutil.new_sandbox_id()
        index, bridge = netutil.create_bridge(sid)
        host = f"{POD_NET_PREFIX}.{index}.1"
        state = State(
            sandbox_id=sid,
            net_index=index,
            bridge=bridge,
            host_address=host,
            pod_cidr=f"{POD_NET_PREFIX}.{index}.0/24",
            service_cidr=f"{SERVICE_NET_PREFIX}.{index}.0/24",
            kubernetes_service_ip=f"{SERVICE_NET_PREFIX}.{index}.1",
            node_name=self.config.get("node_name") or "sandbox",
            netns_prefix=f"cni-{sid}-",  # containerd names them cni-<uuid>: none match
            veth_prefix=f"ksv{sid}",
            cgroup_root=f"kube-sandbox-{sid}",
        )
        state.ports = {
            "etcd": netutil.free_port(),
            "etcd_peer": netutil.free_port(),
            "apiserver": netutil.free_port(host),
            "controller_manager": netutil.free_port(),
            "scheduler": netutil.free_port(),
            "kubelet": netutil.free_port(host),
            "kubelet_healthz": netutil.free_port(),
            "proxy_healthz": netutil.free_port(),
            "proxy_metrics": netutil.free_port(),
        }
        state.save(lay.state_json)
        hoststate.make_cgroup_root(state.cgroup_root)
        return state

    def _pki(self, state: State) -> None:
        lay = self.layout
        node = certs.Identity("node", f"system:node:{state.node_name}", "system:nodes")
        certs.make_pki(
            lay.pki,
            ip_sans=["127.0.0.1", state.kubernetes_service_ip, state.host_address],
            identities=[*IDENTITIES, node, KUBELET_CLIENT],
        )
        server = f"https://{state.host_address}:{state.ports['apiserver']}"
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

    def _import_images(self, bins: dict[str, Path], failed: list[BaseException]) -> None:
        try:
            t0 = time.monotonic()
            wanted = [
                (
                    nodeconfig.PAUSE_IMAGE,
                    images.node_image_archive(nodeconfig.PAUSE_IMAGE, bins["pause"]),
                ),
                (
                    nodeconfig.COREDNS_IMAGE,
                    images.node_image_archive(nodeconfig.COREDNS_IMAGE, bins["coredns"]),
                ),
            ]
            wanted += [(n, images.local_image_archive(n)) for n in self.config.get("images", [])]
            for name, archive in wanted:
                images.import_archive(self.layout, archive, name)
            log.info(
                "images imported: %s (%.1f s)",
                ", ".join(n for n, _ in wanted),
                time.monotonic() - t0,
            )
        except BaseException as e:  # reported by the waiting thread
            failed.append(e)

    def _wait(
        self, what: str, check: Callable[[], object], timeout: float, watch: tuple[str, ...]
    ) -> None:
        assert self.children is not None
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            gone = self.children.exited(watch)
            if gone is not None:
                raise RuntimeError(f"{gone} exited while waiting for {what} (DIR/logs/{gone}.log)")
            try:
                if check():
                    return
            except Exception as e:  # not yet
                last = str(e)[:200]
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {timeout:.0f} s {last}")

    def start(self) -> None:
        lay = self.layout
        t0 = time.monotonic()
        bins = build.binaries()
        self.state = state = self._network()
        self.children = children = Children(lay, state)
        self._pki(state)
        nodeconfig.write_cni_config(lay, state)
        log.info(
            "network %s, bridge %s, pki (%.1f s)",
            state.pod_cidr,
            state.bridge,
            time.monotonic() - t0,
        )
        children.start("containerd", nodeconfig.containerd_argv(lay))
        self._wait(
            "containerd",
            lambda: images.ctr(lay, "version", check=False).returncode == 0,
            30,
            ("containerd",),
        )
        failed: list[BaseException] = []
        importer = threading.Thread(target=self._import_images, args=(bins, failed))
        importer.start()
        children.start("etcd", controlplane.etcd_argv(bins["etcd"], lay, state))
        self._wait("etcd", lambda: controlplane.etcd_healthy(state), 60, ("etcd",))
        children.start(
            "kube-apiserver", controlplane.apiserver_argv(bins["kube-apiserver"], lay, state)
        )
        self._wait(
            "kube-apiserver",
            lambda: controlplane.apiserver_ready(lay, state),
            90,
            ("kube-apiserver",),
        )
        log.info("kube-apiserver ready (%.1f s)", time.monotonic() - t0)
        children.start(
            "controller-manager",
            controlplane.controller_manager_argv(bins["kube-controller-manager"], lay, state),
        )
        children.start(
            "kube-scheduler", nodeconfig.scheduler_argv(bins["kube-scheduler"], lay, state)
        )
        importer.join()
        if failed:
            raise RuntimeError(f"image import failed: {failed[0]}")
        children.start("kubelet", nodeconfig.kubelet_argv(bins["kubelet"], lay, state))
        children.start("kube-proxy", nodeconfig.kube_proxy_argv(bins["kube-proxy"], lay, state))
        api = config.new_client_from_config(config_file=str(lay.kubeconfig))
        core = client.CoreV1Api(api)
        self._wait("node Ready", lambda: _node_ready(core, state.node_name), 120, WATCHED)
        log.info("node Ready (%.1f s)", time.monotonic() - t0)
        self._wait(
            "default ServiceAccount",
            lambda: core.read_namespaced_service_account("default", "default"),
            60,
            WATCHED,
        )
        coredns.apply(api, state)
        self._wait(
            "kube-root-ca.crt",
            lambda: core.read_namespaced_config_map("kube-root-ca.crt", "default"),
            60,
            WATCHED,
        )
        self._wait(
            "the kubernetes Service at its ClusterIP (kube-proxy)",
            lambda: _connects(state.kubernetes_service_ip, 443),
            60,
            WATCHED,
        )
        self._wait("CoreDNS", lambda: coredns.ready(api), 120, WATCHED)
        log.info("CoreDNS ready (%.1f s)", time.monotonic() - t0)
        info = {
            "dir": str(lay.root),
            "kubeconfig": str(lay.kubeconfig),
            "apiserver": f"https://{state.host_address}:{state.ports['apiserver']}",
            "host_address": state.host_address,
            "pod_cidr": state.pod_cidr,
            "service_cidr": state.service_cidr,
            "kubernetes_service_ip": state.kubernetes_service_ip,
            "dns_service_ip": nodeconfig.dns_service_ip(state),
            "node": state.node_name,
            "pid": os.getpid(),
            "logs_dir": str(lay.logs),
            "etcd": f"http://127.0.0.1:{state.ports['etcd']}",
            "ports": state.ports,
            "kubernetes_version": KUBERNETES_VERSION,
            "images": self.config.get("images", []),
            "bridge": state.bridge,
            "cgroup_root": state.cgroup_root,
            "started_in_s": round(time.monotonic() - t0, 1),
        }
        write_json(lay.sandbox_json, info)
        lay.host_address.write_text(state.host_address + "\n")
        lay.ready_file.write_text(f'{{"seconds": {info["started_in_s"]}}}\n')
        log.info("node ready in %.1f s", time.monotonic() - t0)

    # ---- run and stop -------------------------------------------------------------------
    def monitor(self) -> None:
        while not self.stopping:
            if self.children is not None:
                self.children.restart_exited()
            time.sleep(0.5)

    def stop(self) -> None:
        self.stopping = True
        if self.children is not None:
            self.children.stop(STOP_ORDER[:4])
            if self.children.exited(("containerd",)) is None:
                teardown.kill_containers(self.layout)
            self.children.stop(STOP_ORDER[4:])
        if self.state is not None:
            teardown.cleanup(self.layout, self.state)
        self.layout.ready_file.unlink(missing_ok=True)


def _node_ready(core: client.CoreV1Api, name: str) -> bool:
    status = core.read_node(name).status
    conditions = (status and status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _connects(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True


def main(root: str) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    sup = NodeSupervisor(Path(root).resolve())
    sup.layout.pid_file.write_text(f"{os.getpid()}\n")

    def on_signal(signum: int, frame: object) -> None:
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
