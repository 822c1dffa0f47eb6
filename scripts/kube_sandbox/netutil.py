"""Ports, address ranges, the bridge, and what is left of pod networks (``ip`` commands).

The supervisor picks a free /24 index and creates the bridge (host side ``198.18.N.1``, the
pods' gateway) with a route that sends the Service range ``198.19.N.0/24`` out of it, where
kube-proxy's rules translate a ClusterIP to a pod. The CNI bridge plugin puts each pod's
veth on that bridge; ``down`` deletes what is left by name prefix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import secrets
import socket
import subprocess
from pathlib import Path

from kube_sandbox.layout import POD_NET_PREFIX, SERVICE_NET_PREFIX, cache_dir


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _used_indexes() -> set[int]:
    """/24 indexes of 198.18.x / 198.19.x already routed on this host (other sandboxes)."""
    out = ip("-j", "route", "show", "table", "all").stdout
    used: set[int] = set()
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        for prefix in (POD_NET_PREFIX, SERVICE_NET_PREFIX):
            if dst.startswith(prefix + "."):
                with contextlib.suppress(ValueError, IndexError):
                    used.add(int(dst.split(".")[2].split("/")[0]))
    return used


def new_sandbox_id() -> str:
    """Five hex digits: interface names must stay under 16 characters."""
    return secrets.token_hex(3)[:5]


def bridge_name(sandbox_id: str) -> str:
    return f"ksb{sandbox_id}"


def create_bridge(sandbox_id: str) -> tuple[int, str]:
    """Take a free /24 index, create the bridge and the Service-range route (out of the
    bridge from its address: kube-proxy's OUTPUT rules translate it to a pod).

    Returns (index, bridge name). A lock in the cache folder serialises sandboxes that start
    at the same time.
    """
    lock_path = cache_dir() / "net.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    br = bridge_name(sandbox_id)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        used = _used_indexes()
        index = next((i for i in range(1, 255) if i not in used), None)
        if index is None:
            raise RuntimeError("no free /24 left in 198.18.0.0/16")
        ip("link", "add", br, "type", "bridge")
        try:
            ip("addr", "add", f"{POD_NET_PREFIX}.{index}.1/24", "dev", br)
            ip("link", "set", br, "up")
            services = f"{SERVICE_NET_PREFIX}.{index}.0/24"
            ip("route", "add", services, "dev", br, "src", f"{POD_NET_PREFIX}.{index}.1")
        except BaseException:
            ip("link", "del", br, check=False)
            raise
    return index, br


def delete_bridge(bridge: str) -> None:
    ip("link", "del", bridge, check=False)  # takes its addresses and routes with it


def netns_list() -> list[str]:
    out = ip("-j", "netns", "list", check=False).stdout
    try:
        return [n["name"] for n in json.loads(out or "[]")]
    except json.JSONDecodeError:
        return []


def netns_pids(name: str) -> list[int]:
    out = ip("netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split()]


def links_with_prefix(prefix: str) -> list[str]:
    out = ip("-j", "link", "show", check=False).stdout
    return [lk["ifname"] for lk in json.loads(out or "[]") if lk["ifname"].startswith(prefix)]


def links_with_master(bridge: str) -> list[str]:
    """Interfaces enslaved to ``bridge`` (the pods' veth ends)."""
    out = ip("-j", "link", "show", "master", bridge, check=False).stdout
    try:
        return [lk["ifname"] for lk in json.loads(out or "[]")]
    except json.JSONDecodeError:
        return []


def mounts_under(path: Path) -> list[str]:
    """Mount points (in this mount namespace) at or below ``path``."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4]
            if mnt == prefix or mnt.startswith(prefix + "/"):
                found.append(mnt)
    return found
