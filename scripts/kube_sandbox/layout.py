"""Names of things: pinned versions, the build cache, and the files a sandbox keeps in DIR.

Every other module asks this one where a file lives, so the layout of DIR is written down
once. ``State`` is the sandbox's record of what it created (addresses, interface and
namespace names, ports, pids); the supervisor writes it, ``down`` reads it to clean up.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

KUBERNETES_VERSION = "v1.34.10"
ETCD_VERSION = "v3.6.14"

PACKAGE_DIR = Path(__file__).resolve().parent
GO_DIR = PACKAGE_DIR / "go"

# Network ranges the sandbox owns: the benchmarking block 198.18.0.0/15 (RFC 2544), which
# is never a real network. Each sandbox takes one /24 of 198.18.0.0/16 for pods (host side
# .1) and the same /24 of 198.19.0.0/16 for Service ClusterIPs.
POD_NET_PREFIX = "198.18"
SERVICE_NET_PREFIX = "198.19"


def cache_dir() -> Path:
    """The folder that holds the binaries, GOMODCACHE and GOCACHE."""
    env = os.environ.get("KUBE_SANDBOX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kube-sandbox"


@dataclass(frozen=True)
class Layout:
    """Where each file of one sandbox lives under its DIR."""

    root: Path

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def sandbox_json(self) -> Path:
        return self.root / "sandbox.json"

    @property
    def host_address(self) -> Path:
        return self.root / "host-address"

    @property
    def state_json(self) -> Path:
        return self.root / "state.json"

    @property
    def config_json(self) -> Path:
        return self.root / "config.json"

    @property
    def pid_file(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def ready_file(self) -> Path:
        return self.root / "ready"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pods(self) -> Path:
        """Pod logs (NAMESPACE_NAME_CONTAINER.log) and per-pod folders."""
        return self.root / "pods"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfigs(self) -> Path:
        """One kubeconfig per component identity (node, scheduler, proxy, controller-manager)."""
        return self.root / "kubeconfigs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def host_dirs(self) -> Path:
        """Mount targets the kubelet had to create on the host file system (removed by down)."""
        return self.root / "host-dirs.txt"

    @property
    def etc(self) -> Path:
        """Configuration files of the node's processes (containerd, kubelet, kube-proxy...)."""
        return self.root / "etc"

    @property
    def containerd(self) -> Path:
        """containerd's root, state, runc root and socket."""
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd / "containerd.sock"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def sysctl_before(self) -> Path:
        """The host's sysctls as they were before the node started (restored by down)."""
        return self.root / "sysctl.before.json"

    def component_kubeconfig(self, name: str) -> Path:
        return self.kubeconfigs / f"{name}.kubeconfig"


@dataclass
class State:
    """What one sandbox created; enough for ``down`` to remove it all."""

    sandbox_id: str
    net_index: int
    bridge: str
    host_address: str
    pod_cidr: str
    service_cidr: str
    kubernetes_service_ip: str
    node_name: str
    netns_prefix: str
    veth_prefix: str
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    cgroup_root: str = ""
    """The node's cgroup root (a folder in each cgroup v1 hierarchy)."""

    @classmethod
    def load(cls, path: Path) -> State:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically (rename), so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
