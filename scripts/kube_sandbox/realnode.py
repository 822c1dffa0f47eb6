"""The supervisor of a real single-node cluster: containerd + runc, the kubelet, kube-proxy,
kube-scheduler and CoreDNS on top of the control plane.

``kube-sandbox up DIR`` starts it (``supervise DIR``) unless asked for the stand-in node. In
order it: records the host's sysctls and nft tables and claims the machine's one node
(``hoststate``); takes a free /24 pair, creates the bridge (the node's address, the pods'
gateway and where pods reach the host) and a route that sends the Service range to it; makes
the node's cgroup root, the certificates and kubeconfigs; starts containerd and imports the
images while etcd, kube-apiserver (on the node's address, so pods reach it through the
``kubernetes`` Service) and kube-controller-manager start; then kube-scheduler, the kubelet and
kube-proxy; waits for the node to be Ready, applies CoreDNS and waits for it and for the
``kubernetes`` Service to answer at its ClusterIP from the host; writes sandbox.json and
DIR/ready. On SIGTERM it stops the node's processes, kills the containers, stops the control
plane and containerd, and undoes what it changed on the host (``teardown``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

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
    State,
    write_json,
)
from kube_sandbox.supervisor import IDENTITIES, Supervisor

log = logging.getLogger("node")

KUBELET_CLIENT = certs.Identity(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
)
STOP_ORDER = (
    "kubelet",
    "kube-scheduler",
    "kube-proxy",
    "controller-manager",
    "kube-apiserver",
    "etcd",
)


class NodeSupervisor(Supervisor):
    def _network(self) -> State:
        lay = self.layout
        hoststate.save_sysctls(lay)
        hoststate.record_nft_tables(lay)
        hoststate.claim(lay)
        sid = netutil.new_sandbox_id()
        index, bridge = netutil.create_bridge(sid, service_route="bridge")
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

    def _wait(self, what: str, check, timeout: float, watch: tuple[str, ...]) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name in watch:
                if self.children[name].poll() is not None:
                    raise RuntimeError(
                        f"{name} exited while waiting for {what} (DIR/logs/{name}.log)"
                    )
            try:
                if check():
                    return
            except Exception as e:  # not yet
                last = str(e)[:200]
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {timeout:.0f} s {last}")

    def start(self) -> None:
        from kube_sandbox.kubeapi import Kube

        lay = self.layout
        t0 = time.monotonic()
        bins = build.binaries()
        self.state = state = self._network()
        self._pki(state)
        nodeconfig.write_cni_config(lay, state)
        log.info(
            "network %s, bridge %s, pki (%.1f s)",
            state.pod_cidr,
            state.bridge,
            time.monotonic() - t0,
        )
        self._start("containerd", nodeconfig.containerd_argv(lay))
        self._wait(
            "containerd",
            lambda: images.ctr(lay, "version", check=False).returncode == 0,
            30,
            ("containerd",),
        )
        failed: list[BaseException] = []
        importer = threading.Thread(target=self._import_images, args=(bins, failed))
        importer.start()
        self._start("etcd", controlplane.etcd_argv(bins["etcd"], lay, state))
        controlplane.wait_etcd(state, self._alive("etcd"))
        self._start(
            "kube-apiserver",
            controlplane.apiserver_argv(bins["kube-apiserver"], lay, state, real_node=True),
        )
        controlplane.wait_apiserver(lay, state, self._alive("kube-apiserver"))
        log.info("kube-apiserver ready (%.1f s)", time.monotonic() - t0)
        self._start(
            "controller-manager",
            controlplane.controller_manager_argv(bins["kube-controller-manager"], lay, state),
        )
        self._start("kube-scheduler", nodeconfig.scheduler_argv(bins["kube-scheduler"], lay, state))
        importer.join()
        if failed:
            raise RuntimeError(f"image import failed: {failed[0]}")
        self._start("kubelet", nodeconfig.kubelet_argv(bins["kubelet"], lay, state))
        self._start("kube-proxy", nodeconfig.kube_proxy_argv(bins["kube-proxy"], lay, state))
        kube = Kube(str(lay.kubeconfig))
        watch = ("kubelet", "kube-proxy", "kube-scheduler", "controller-manager", "kube-apiserver")
        self._wait("node Ready", lambda: self._node_ready(kube), 120, watch)
        log.info("node Ready (%.1f s)", time.monotonic() - t0)
        self._wait(
            "default ServiceAccount",
            lambda: kube.get_optional("/api/v1/namespaces/default/serviceaccounts/default"),
            60,
            watch,
        )
        coredns.apply(kube, state)
        self._wait(
            "kube-root-ca.crt",
            lambda: kube.get_optional("/api/v1/namespaces/default/configmaps/kube-root-ca.crt"),
            60,
            watch,
        )
        self._wait(
            "the kubernetes Service at its ClusterIP (kube-proxy)",
            lambda: _connects(state.kubernetes_service_ip, 443),
            60,
            watch,
        )
        self._wait("CoreDNS", lambda: coredns.ready(kube), 120, watch)
        log.info("CoreDNS ready (%.1f s)", time.monotonic() - t0)
        info = {
            "dir": str(lay.root),
            "kind": "real",
            "kubeconfig": str(lay.kubeconfig),
            "apiserver": f"https://{state.host_address}:{state.ports['apiserver']}",
            "host_address": state.host_address,
            "pod_cidr": state.pod_cidr,
            "service_cidr": state.service_cidr,
            "kubernetes_service_ip": state.kubernetes_service_ip,
            "dns_service_ip": nodeconfig.dns_service_ip(state),
            "node": state.node_name,
            "pid": os.getpid(),
            "pods_dir": str(lay.pods),
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

    def _restart_env(self, name: str) -> dict[str, str] | None:
        return None

    def stop(self) -> None:
        self.stopping = True
        for name in STOP_ORDER[:4]:
            proc = self.children.get(name)
            if proc is not None:
                log.info("stopped %s (%s)", name, procs.stop(proc, timeout=10))
        if "containerd" in self.children and self.children["containerd"].poll() is None:
            teardown.kill_containers(self.layout)
        for name in (*STOP_ORDER[4:], "containerd"):
            proc = self.children.get(name)
            if proc is not None:
                log.info("stopped %s (%s)", name, procs.stop(proc, timeout=10))
        if self.state is not None:
            teardown.cleanup(self.layout, self.state)
        self.layout.ready_file.unlink(missing_ok=True)


def _connects(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True
