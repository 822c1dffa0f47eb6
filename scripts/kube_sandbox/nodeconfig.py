"""Configuration files and command lines of the node: containerd, CNI, kubelet, kube-proxy,
kube-scheduler.

Called by the supervisor, which writes the files into DIR/etc and DIR/cni before it starts
each process. What each setting is for on this machine kind:

- containerd: its root, state and sockets under DIR; runc (crun refuses hybrid cgroups) with
  the cgroupfs driver; ``restrict_oom_score_adj`` because runc may not lower a process's
  ``oom_score_adj`` without CAP_SYS_RESOURCE; the pause image of our own making.
- CNI: the bridge plugin on the bridge the supervisor made (its address is the node's address,
  the pods' gateway and where pods reach the host); host-local addresses in the sandbox's
  pod /24; routes only to 198.18.0.0/15, so pods reach the host, each other and Services,
  and nothing else.
- kubelet: cgroupfs, its own cgroup root, every port and socket on 127.0.0.1, the node's
  address or under DIR; no swap check; image GC off (images are imported, never pulled).
- kube-proxy (iptables mode): no conntrack sysctls, no localhost NodePorts (both would change
  the host's sysctls), NodePorts only on the node's address.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kube_sandbox.layout import Layout, State

PAUSE_IMAGE = "localhost/kube-sandbox-pause:1"
COREDNS_IMAGE = "localhost/kube-sandbox-coredns:1"
CLUSTER_DOMAIN = "cluster.local"


def dns_service_ip(state: State) -> str:
    return state.service_cidr.rsplit(".", 1)[0] + ".10"


def write_containerd_config(layout: Layout) -> Path:
    c = layout.containerd
    text = f"""version = 2
root = "{c / "root"}"
state = "{c / "state"}"
plugin_dir = ""
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{layout.containerd_socket}"
[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{c / "opt"}"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE_IMAGE}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    netns_mounts_under_state_dir = true
    disable_apparmor = true
    restrict_oom_score_adj = true
    tolerate_missing_hugetlb_controller = true
    max_container_log_line_size = 16384
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          Root = "{c / "runc"}"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "{layout.cni_conf}"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""
"""
    path = layout.etc / "containerd.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_cni_config(layout: Layout, state: State) -> None:
    net = state.pod_cidr.rsplit(".", 1)[0]
    conf = {
        "cniVersion": "0.4.0",
        "name": "kube-sandbox",
        "plugins": [
            {
                "type": "bridge",
                "bridge": state.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.root / "cni-ipam"),
                    "ranges": [
                        [
                            {
                                "subnet": state.pod_cidr,
                                "rangeStart": f"{net}.10",
                                "rangeEnd": f"{net}.250",
                                "gateway": state.host_address,
                            }
                        ]
                    ],
                    "routes": [{"dst": "198.18.0.0/15"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False},
        ],
    }
    layout.cni_conf.mkdir(parents=True, exist_ok=True)
    (layout.cni_conf / "10-kube-sandbox.conflist").write_text(json.dumps(conf, indent=2))


def _yaml(path: Path, data: dict[str, Any]) -> Path:
    # JSON is YAML: no PyYAML needed on the sandbox's Python.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _component_argv(
    binary: Path, config_file: Path, config: dict[str, Any], *flags: str
) -> list[str]:
    """A node component's command line: its configuration file, written here, then the flags
    it takes only on the command line."""
    return [str(binary), f"--config={_yaml(config_file, config)}", *flags, "--v=1"]


def kubelet_argv(binary: Path, layout: Layout, state: State) -> list[str]:
    sock = f"unix://{layout.containerd_socket}"
    resolv = layout.etc / "resolv.conf"
    # Pods get only the cluster's DNS; nothing outside is resolvable from a pod.
    resolv.write_text("search kube-sandbox.invalid\noptions ndots:5\n")
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": state.host_address,
        "port": state.ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": state.ports["kubelet_healthz"],
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(layout.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": sock,
        "imageServiceEndpoint": sock,
        "clusterDNS": [dns_service_ip(state)],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(resolv),
        "maxPods": 40,
        "podLogsDir": str(layout.pods),
        "staticPodPath": "",
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "cgroupRoot": f"/{state.cgroup_root}",
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": True,
        "nodeStatusUpdateFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "runtimeRequestTimeout": "2m",
        "shutdownGracePeriod": "0s",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "registerNode": True,
    }
    return _component_argv(
        binary,
        layout.etc / "kubelet.yaml",
        config,
        f"--kubeconfig={layout.component_kubeconfig('node')}",
        f"--hostname-override={state.node_name}",
        f"--node-ip={state.host_address}",
        f"--root-dir={layout.kubelet_root}",
        f"--cert-dir={layout.kubelet_root / 'pki'}",
    )


def kube_proxy_argv(binary: Path, layout: Layout, state: State) -> list[str]:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.component_kubeconfig("proxy"))},
        "mode": "iptables",
        "hostnameOverride": state.node_name,
        "bindAddress": state.host_address,
        "healthzBindAddress": f"127.0.0.1:{state.ports['proxy_healthz']}",
        "metricsBindAddress": f"127.0.0.1:{state.ports['proxy_metrics']}",
        "clusterCIDR": state.pod_cidr,
        "nodePortAddresses": [f"{state.host_address}/32"],
        "iptables": {
            "localhostNodePorts": False,
            "masqueradeAll": False,
            "syncPeriod": "10s",
            "minSyncPeriod": "0s",
        },
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
    }
    return _component_argv(binary, layout.etc / "kube-proxy.yaml", config)


def scheduler_argv(binary: Path, layout: Layout, state: State) -> list[str]:
    kubeconfig = layout.component_kubeconfig("scheduler")
    config = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "leaderElection": {"leaderElect": False},
    }
    return _component_argv(
        binary,
        layout.etc / "kube-scheduler.yaml",
        config,
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={state.ports['scheduler']}",
        f"--cert-dir={layout.pki / 'scheduler-generated'}",
    )


def containerd_argv(layout: Layout) -> list[str]:
    return ["containerd", "--config", str(write_containerd_config(layout))]
