"""Removing what a sandbox left on the machine, and checking that nothing is left.

``cleanup`` is called by the supervisor as it stops and again by ``kube-sandbox down`` (which
also covers a supervisor that was killed): it kills any process still in one of the
sandbox's pod network namespaces and any recorded child still alive, deletes those
namespaces, the veth ends and the bridge (which takes the Service-range route with it), and
removes the folders the kubelet had to create on the host for mount targets. ``leftovers``
lists what is still there; the tests assert it is empty after ``down``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from kube_sandbox import build, hoststate, images, netutil, procs
from kube_sandbox.layout import Layout, State


def _markers(layout: Layout) -> list[str]:
    root = str(layout.root.resolve())
    return [
        f"{root}/etc/",  # containerd, kubelet, kube-proxy, kube-scheduler (their configs)
        f"-address {root}/containerd/",  # containerd's shims
        f"--data-dir={root}/etcd",
        f"--cert-dir={root}/pki/",
    ]


def _ours(pid: int, markers: list[str]) -> bool:
    """Is ``pid`` one of the sandbox's own processes (by its command line)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return any(m in cmdline for m in markers)


def sandbox_processes(layout: Layout, state: State) -> list[int]:
    """Processes in the pod namespaces or the node's cgroups, and the node's own still alive."""
    pids: set[int] = set()
    for ns in netutil.netns_list():
        if ns.startswith(state.netns_prefix):
            pids.update(netutil.netns_pids(ns))
    markers = _markers(layout)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _ours(int(entry), markers) and procs.alive(int(entry)):
            pids.add(int(entry))
    for cgroup in hoststate.cgroup_dirs(state.cgroup_root):
        for procs_file in cgroup.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs_file.read_text().split())
    pids.discard(os.getpid())
    return sorted(pids)


def kill_containers(layout: Layout) -> None:
    """SIGKILL every container through containerd (their network namespaces go with them)."""
    listed = images.ctr(layout, "tasks", "list", "--quiet", check=False).stdout.split()
    for task in listed:
        images.ctr(layout, "tasks", "kill", "--signal", "SIGKILL", "--all", task, check=False)


def cleanup(layout: Layout, state: State) -> None:
    for pid in sandbox_processes(layout, state):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for pid in sandbox_processes(layout, state):
        procs.wait_gone(pid, 5)
    for ns in netutil.netns_list():
        if ns.startswith(state.netns_prefix):
            netutil.ip("netns", "del", ns, check=False)
    for link in netutil.links_with_prefix(state.veth_prefix):
        netutil.ip("link", "del", link, check=False)
    for mnt in reversed(netutil.mounts_under(layout.root)):
        subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
    for link in netutil.links_with_master(state.bridge):
        netutil.ip("link", "del", link, check=False)
    netutil.delete_bridge(state.bridge)
    if state.cgroup_root:
        bins = build.binaries()
        hoststate.restore(layout, state.cgroup_root, bins["kube-proxy"])
        hoststate.release(layout)
    if layout.host_dirs.exists():
        for line in reversed(layout.host_dirs.read_text().splitlines()):
            with contextlib.suppress(OSError):
                Path(line).rmdir()
        layout.host_dirs.unlink()


def leftovers(layout: Layout, state: State) -> dict[str, list[Any]]:
    host = hoststate.leftovers(layout, state.cgroup_root) if state.cgroup_root else {}
    return host | {
        "processes": sandbox_processes(layout, state),
        "netns": [n for n in netutil.netns_list() if n.startswith(state.netns_prefix)],
        "links": netutil.links_with_prefix(state.veth_prefix)
        + netutil.links_with_prefix(state.bridge),
        "mounts": netutil.mounts_under(layout.root),
    }
