"""Build the sandbox's binaries from the official Go modules, once.

Called by ``kube-sandbox build`` and by ``up`` (which builds only when a binary is missing).
Small modules under ``go/`` pin the versions, their go.sum files committed, so a build
downloads exactly those modules:

- ``go/etcd`` and ``go/kube``: etcd, kube-apiserver, kube-controller-manager (the control
  plane; its key is the one the cluster tiers have always used);
- ``go/node``: kubelet, kube-proxy, kube-scheduler from the same k8s.io/kubernetes release;
- ``go/coredns``: CoreDNS, the cluster DNS;
- ``go/pause``: the pod sandbox process (a few lines of Go, so no registry is needed).

Everything lands in one cache folder (``KUBE_SANDBOX_CACHE``, default
``~/.cache/kube-sandbox``): ``gomod/`` (GOMODCACHE), ``gocache/`` (GOCACHE) and
``bin/<key>/`` per group, where the key hashes the versions, the group's go.mod/go.sum
files, the link flags and the Go version. A second build with the same key does nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import gobuild

from kube_sandbox.layout import ETCD_VERSION, GO_DIR, KUBERNETES_VERSION, cache_dir

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler", "coredns", "pause")
COREDNS_VERSION = "v1.12.4"


def _ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    parts = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        parts += [
            f"-X {pkg}.gitVersion={KUBERNETES_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.gitCommit=",
        ]
    return " ".join(parts)


def build_key() -> str:
    files = (
        (GO_DIR / mod / name).read_bytes()
        for mod in ("etcd", "kube")
        for name in ("go.mod", "go.sum")
    )
    digest = gobuild.build_digest(files, _ldflags())
    return f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}-{digest}"


def node_build_key() -> str:
    files = (
        f.name.encode() + b"\0" + f.read_bytes()
        for mod in ("node", "coredns", "pause")
        for f in sorted((GO_DIR / mod).glob("*"))
    )
    digest = gobuild.build_digest(files, _ldflags())
    return f"node-{KUBERNETES_VERSION}-coredns-{COREDNS_VERSION}-{digest}"


def bin_dir() -> Path:
    return cache_dir() / "bin" / build_key()


def node_bin_dir() -> Path:
    return cache_dir() / "bin" / node_build_key()


def binaries() -> dict[str, Path]:
    """Paths of the built binaries (they may not exist yet)."""
    d, n = bin_dir(), node_bin_dir()
    return {name: d / name for name in BINARIES} | {name: n / name for name in NODE_BINARIES}


def is_built() -> bool:
    return gobuild.all_executable(binaries().values())


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: gobuild.Log) -> None:
    log(f"$ (cd {cwd.relative_to(GO_DIR.parent.parent)} && {' '.join(cmd)})")
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=cwd, env=env, check=True)
    log(f"  {time.monotonic() - t0:.0f} s")


def ensure_built(log: gobuild.Log | None = None) -> dict[str, Path]:
    """Build the binaries unless they are in the cache; return their paths."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if is_built():
        return binaries()
    cache = cache_dir()
    with gobuild.build_lock(cache, tool="kube-sandbox", go_needed="1.25"):
        paths = binaries()
        if not gobuild.all_executable(paths[n] for n in BINARIES):
            _build_control_plane(cache, log)
        if not gobuild.all_executable(paths[n] for n in NODE_BINARIES):
            _build_node(cache, log)
    return binaries()


def _build_node(cache: Path, log: gobuild.Log) -> None:
    """kubelet, kube-proxy, kube-scheduler, CoreDNS and pause into ``node_bin_dir()``."""
    env = gobuild.go_env(cache)
    with gobuild.staged(node_bin_dir()) as tmp:
        log(f"kube-sandbox: building the node ({KUBERNETES_VERSION}, CoreDNS {COREDNS_VERSION})")
        t0 = time.monotonic()
        node = [f"k8s.io/kubernetes/cmd/{n}" for n in ("kubelet", "kube-proxy", "kube-scheduler")]
        kubelet = gobuild.go_build_command(f"{tmp}/", *node, ldflags=_ldflags())
        _run(kubelet, GO_DIR / "node", env, log)
        coredns = gobuild.go_build_command(
            str(tmp / "coredns"), "github.com/coredns/coredns", ldflags="-s -w"
        )
        _run(coredns, GO_DIR / "coredns", env, log)
        pause = gobuild.go_build_command(str(tmp / "pause"), ".", ldflags="-s -w")
        _run(pause, GO_DIR / "pause", env, log)
        versions = {"kubernetes": KUBERNETES_VERSION, "coredns": COREDNS_VERSION}
        seconds = gobuild.write_build_info(tmp, versions, started=t0)
    log(f"kube-sandbox: node built in {seconds:.0f} s")


def _build_control_plane(cache: Path, log: gobuild.Log) -> None:
    """etcd, kube-apiserver and kube-controller-manager into ``bin_dir()``."""
    out = bin_dir()
    env = gobuild.go_env(cache)
    with gobuild.staged(out) as tmp:
        log(f"kube-sandbox: building etcd {ETCD_VERSION} and Kubernetes {KUBERNETES_VERSION}")
        log(f"  with {gobuild.go_version()} into {out} (cache {cache}); a cold build takes minutes")
        t0 = time.monotonic()
        etcd = gobuild.go_build_command(str(tmp / "etcd"), "go.etcd.io/etcd/server/v3")
        _run(etcd, GO_DIR / "etcd", env, log)
        kube = [f"k8s.io/kubernetes/cmd/{n}" for n in ("kube-apiserver", "kube-controller-manager")]
        apiserver = gobuild.go_build_command(f"{tmp}/", *kube, ldflags=_ldflags())
        _run(apiserver, GO_DIR / "kube", env, log)
        seconds = gobuild.write_build_info(
            tmp,
            {"kubernetes": KUBERNETES_VERSION, "etcd": ETCD_VERSION},
            started=t0,
            built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
    log(f"kube-sandbox: built in {seconds:.0f} s")
