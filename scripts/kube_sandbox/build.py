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

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kube_sandbox.layout import ETCD_VERSION, GO_DIR, KUBERNETES_VERSION, cache_dir

Log = Callable[[str], None]

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


def _go_version() -> str:
    try:
        return subprocess.run(
            ["go", "env", "GOVERSION"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no-go"


def build_key() -> str:
    h = hashlib.sha256()
    for mod in ("etcd", "kube"):
        for name in ("go.mod", "go.sum"):
            h.update((GO_DIR / mod / name).read_bytes())
    h.update(_ldflags().encode())
    h.update(_go_version().encode())
    return f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}-{h.hexdigest()[:12]}"


def node_build_key() -> str:
    h = hashlib.sha256()
    for mod in ("node", "coredns", "pause"):
        for f in sorted((GO_DIR / mod).glob("*")):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    h.update(_ldflags().encode())
    h.update(_go_version().encode())
    return f"node-{KUBERNETES_VERSION}-coredns-{COREDNS_VERSION}-{h.hexdigest()[:12]}"


def bin_dir() -> Path:
    return cache_dir() / "bin" / build_key()


def node_bin_dir() -> Path:
    return cache_dir() / "bin" / node_build_key()


def binaries() -> dict[str, Path]:
    """Paths of the built binaries (they may not exist yet)."""
    d, n = bin_dir(), node_bin_dir()
    return {name: d / name for name in BINARIES} | {name: n / name for name in NODE_BINARIES}


def _built(paths: list[Path]) -> bool:
    return all(p.is_file() and os.access(p, os.X_OK) for p in paths)


def is_built() -> bool:
    return _built(list(binaries().values()))


def _go_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(cache / "gomod"),
        GOCACHE=str(cache / "gocache"),
        CGO_ENABLED="0",
        GOFLAGS="-mod=readonly -buildvcs=false",
        GOTOOLCHAIN="local",
    )
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: Log) -> None:
    log(f"$ (cd {cwd.relative_to(GO_DIR.parent.parent)} && {' '.join(cmd)})")
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=cwd, env=env, check=True)
    log(f"  {time.monotonic() - t0:.0f} s")


def ensure_built(log: Log | None = None) -> dict[str, Path]:
    """Build the binaries unless they are in the cache; return their paths."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if is_built():
        return binaries()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build may be running: wait for it
        if _go_version() == "no-go":
            raise SystemExit("kube-sandbox build: no `go` on PATH (Go >= 1.25 is needed)")
        paths = binaries()
        if not _built([paths[n] for n in BINARIES]):
            _build_control_plane(cache, log)
        if not _built([paths[n] for n in NODE_BINARIES]):
            _build_node(cache, log)
    return binaries()


def _build_node(cache: Path, log: Log) -> None:
    """kubelet, kube-proxy, kube-scheduler, CoreDNS and pause into ``node_bin_dir()``."""
    out = node_bin_dir()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = _go_env(cache)
    log(f"kube-sandbox: building the node ({KUBERNETES_VERSION}, CoreDNS {COREDNS_VERSION})")
    t0 = time.monotonic()
    _run(
        ["go", "build", "-trimpath", "-ldflags", _ldflags(), "-o", str(tmp) + "/"]
        + [f"k8s.io/kubernetes/cmd/{n}" for n in ("kubelet", "kube-proxy", "kube-scheduler")],
        GO_DIR / "node",
        env,
        log,
    )
    _run(
        [
            *("go", "build", "-trimpath", "-ldflags", "-s -w"),
            *("-o", str(tmp / "coredns"), "github.com/coredns/coredns"),
        ],
        GO_DIR / "coredns",
        env,
        log,
    )
    _run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp / "pause"), "."],
        GO_DIR / "pause",
        env,
        log,
    )
    seconds = time.monotonic() - t0
    (tmp / "build.json").write_text(
        json.dumps(
            {
                "kubernetes": KUBERNETES_VERSION,
                "coredns": COREDNS_VERSION,
                "go": _go_version(),
                "seconds": round(seconds),
            },
            indent=2,
        )
        + "\n"
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"kube-sandbox: node built in {seconds:.0f} s")


def _build_control_plane(cache: Path, log: Log) -> None:
    """etcd, kube-apiserver and kube-controller-manager into ``bin_dir()``."""
    out = bin_dir()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = _go_env(cache)
    log(f"kube-sandbox: building etcd {ETCD_VERSION} and Kubernetes {KUBERNETES_VERSION}")
    log(f"  with {_go_version()} into {out} (cache {cache}); a cold build takes minutes")
    t0 = time.monotonic()
    _run(
        ["go", "build", "-trimpath", "-o", str(tmp / "etcd"), "go.etcd.io/etcd/server/v3"],
        GO_DIR / "etcd",
        env,
        log,
    )
    _run(
        [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            _ldflags(),
            "-o",
            str(tmp) + "/",
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
        ],
        GO_DIR / "kube",
        env,
        log,
    )
    seconds = time.monotonic() - t0
    (tmp / "build.json").write_text(
        json.dumps(
            {
                "kubernetes": KUBERNETES_VERSION,
                "etcd": ETCD_VERSION,
                "go": _go_version(),
                "seconds": round(seconds),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
        + "\n"
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"kube-sandbox: built in {seconds:.0f} s")
