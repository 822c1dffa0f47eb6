"""What the real node changes on the host outside DIR, recorded before and undone after.

The supervisor calls ``save_sysctls`` and ``make_cgroup_root`` before it starts the node and
``claim`` to record that this machine's one node lives in DIR (iptables chains and several
sysctls are host-wide, so two nodes at once cannot both be cleaned up correctly). ``down``
(and the next ``up`` after a crashed run, through ``recover``) calls ``restore``, which:

- restores every sysctl the kubelet, kube-proxy and the CNI bridge plugin change
  (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops, net.ipv4.ip_forward, ...);
- runs ``kube-proxy --cleanup``, then deletes every rule jumping to a KUBE-*/CNI-* chain and
  those chains (IPv4 and IPv6), kube-proxy's nfacct counters and the nft tables the
  iptables-nft tools created that hold nothing any more;
- removes the node's cgroup folders and the fixed host paths containerd and the kubelet use
  whatever they are told (/run/containerd/s, /var/lib/cni/results, ...), only where they
  were absent before the node started.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from pathlib import Path

from kube_sandbox.layout import Layout

SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
# Paths containerd, the kubelet and libcni use whatever their configuration says.
HOST_PATHS = (
    "/run/containerd",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/etc/kubernetes",
)
CHAIN_PREFIXES = ("KUBE-", "CNI-")
NFACCT_COUNTERS = ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts")
OWNER_RECORD = Path("/run/kube-sandbox/node")


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def save_sysctls(layout: Layout) -> None:
    """Record the sysctls and which fixed host paths exist (a crashed run's record was
    restored and removed by ``up`` before this runs)."""
    record = {
        "sysctls": read_sysctls(),
        "host_paths_present": [p for p in HOST_PATHS if os.path.lexists(p)],
    }
    layout.sysctl_before.write_text(json.dumps(record, indent=2) + "\n")


def changed_sysctls(layout: Layout) -> dict[str, tuple[str, str]]:
    """Sysctls whose value differs from the record: name -> (before, now)."""
    if not layout.sysctl_before.exists():
        return {}
    before = json.loads(layout.sysctl_before.read_text())["sysctls"]
    now = read_sysctls()
    return {k: (v, now.get(k, "")) for k, v in before.items() if now.get(k) != v}


def _restore_sysctls(layout: Layout) -> None:
    for name, (before, _now) in changed_sysctls(layout).items():
        with contextlib.suppress(OSError):
            _sysctl_path(name).write_text(before + "\n")


# -- cgroups ----------------------------------------------------------------------------


def _hierarchies() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    return [h for h in sorted(base.iterdir()) if h.is_dir() and h.name != "unified"]


# In cgroup v1 a child cgroup competes for CPU with each process of its parent as one
# process does (1024): on a machine shared with other work, every pod together would get the
# share of one host process. The node's root weighs as many processes instead.
NODE_CPU_SHARES = 8192


def make_cgroup_root(name: str) -> None:
    """The node's cgroup root in every v1 hierarchy (cpuset needs its cpus and mems set)."""
    for h in _hierarchies():
        (h / name).mkdir(exist_ok=True)
    shares = Path("/sys/fs/cgroup/cpu") / name / "cpu.shares"
    if shares.exists():
        shares.write_text(f"{NODE_CPU_SHARES}\n")
    cpuset = Path("/sys/fs/cgroup/cpuset")
    if (cpuset / name).is_dir():
        for f in ("cpuset.cpus", "cpuset.mems"):
            (cpuset / name / f).write_text((cpuset / f).read_text())


def cgroup_dirs(name: str) -> list[Path]:
    return [h / name for h in _hierarchies() if name and (h / name).is_dir()]


def _remove_cgroups(name: str) -> None:
    for top in cgroup_dirs(name):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


# -- iptables and nft ---------------------------------------------------------------------


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def kube_chains() -> list[str]:
    """``TOOL TABLE CHAIN`` for every KUBE-*/CNI-* chain still on the host."""
    found = []
    for tool in ("iptables", "ip6tables"):
        table = ""
        for line in _run([f"{tool}-save"]).stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
                found.append(f"{tool} {table} {line[1:].split()[0]}")
    return found


def _remove_iptables() -> None:
    for tool in ("iptables", "ip6tables"):
        table = ""
        jumps: list[tuple[str, list[str]]] = []
        chains: list[tuple[str, str]] = []
        for line in _run([f"{tool}-save"]).stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
                chains.append((table, line[1:].split()[0]))
            elif line.startswith("-A "):
                target = re.search(r" -[jg] (\S+)", line)
                if (
                    not line.split()[1].startswith(CHAIN_PREFIXES)
                    and target
                    and target.group(1).startswith(CHAIN_PREFIXES)
                ):
                    jumps.append((table, _split_rule(line)[1:]))
        for table, spec in jumps:
            subprocess.run([tool, "-w", "-t", table, "-D", *spec], capture_output=True)
        for op in ("-F", "-X"):
            for table, chain in chains:
                subprocess.run([tool, "-w", "-t", table, op, chain], capture_output=True)


def _split_rule(line: str) -> list[str]:
    """iptables-save quotes comments with double quotes: split as a shell would."""
    import shlex

    return shlex.split(line)


def _remove_empty_nft_tables(tables_before: list[str]) -> None:
    """Drop the ip/ip6 tables the node's tools created that now hold no rule and no chain."""
    for family in ("ip", "ip6"):
        for table in ("mangle", "nat", "filter"):
            if f"{family} {table}" in tables_before:
                continue
            dump = _run([f"{family}tables-save", "-t", table])
            if dump.returncode != 0 or not dump.stdout.strip():
                continue
            if not re.search(r"^-A |^:\S+ - ", dump.stdout, re.MULTILINE):
                _run(["nft", "delete", "table", family, table])


def nft_tables() -> list[str]:
    out = _run(["nft", "list", "tables"]).stdout
    return [line.removeprefix("table ").strip() for line in out.splitlines() if line.strip()]


def nfacct_counters() -> list[str]:
    out = _run(["nfacct", "list"]).stdout
    return [c for c in NFACCT_COUNTERS if c in out]


# -- the record of the machine's one node ---------------------------------------------------


def claim(layout: Layout) -> None:
    OWNER_RECORD.parent.mkdir(parents=True, exist_ok=True)
    OWNER_RECORD.write_text(f"{layout.root}\n")


def owner() -> Path | None:
    try:
        return Path(OWNER_RECORD.read_text().strip())
    except OSError:
        return None


def release(layout: Layout) -> None:
    if owner() == layout.root:
        OWNER_RECORD.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            OWNER_RECORD.parent.rmdir()


def record_nft_tables(layout: Layout) -> None:
    path = layout.root / "nft.before.json"
    if not path.exists():
        path.write_text(json.dumps(nft_tables()) + "\n")


def restore(layout: Layout, cgroup_root: str, kube_proxy: Path | None) -> None:
    """Undo everything this module lists, in the order that lets each step succeed."""
    if kube_proxy is not None and kube_proxy.exists():
        _run([str(kube_proxy), "--cleanup"])
    _remove_iptables()
    for counter in NFACCT_COUNTERS:
        _run(["nfacct", "delete", counter])
    nft_before_path = layout.root / "nft.before.json"
    nft_before = json.loads(nft_before_path.read_text()) if nft_before_path.exists() else []
    _remove_empty_nft_tables(nft_before)
    _remove_cgroups(cgroup_root)
    present = []
    if layout.sysctl_before.exists():
        present = json.loads(layout.sysctl_before.read_text()).get("host_paths_present", [])
    for path in HOST_PATHS:
        if path in present:
            continue
        # Ours only if it was absent before; a mount left inside goes first.
        subprocess.run(["umount", "-R", "-l", path], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True, check=False)
    _restore_sysctls(layout)


def leftovers(layout: Layout, cgroup_root: str) -> dict[str, list[str]]:
    present = []
    if layout.sysctl_before.exists():
        present = json.loads(layout.sysctl_before.read_text()).get("host_paths_present", [])
    nft_before_path = layout.root / "nft.before.json"
    nft_before = json.loads(nft_before_path.read_text()) if nft_before_path.exists() else None
    return {
        "sysctls": [f"{k}: {a} -> {b}" for k, (a, b) in changed_sysctls(layout).items()],
        "iptables": kube_chains(),
        "nfacct": nfacct_counters(),
        "nft_tables": [t for t in nft_tables() if nft_before is not None and t not in nft_before],
        "cgroups": [str(d) for d in cgroup_dirs(cgroup_root)],
        "host_paths": [p for p in HOST_PATHS if p not in present and os.path.lexists(p)],
    }
