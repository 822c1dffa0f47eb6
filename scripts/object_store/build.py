"""Build SeaweedFS's ``weed`` binary from its Go module, once.

Called by ``object-store build`` and by ``up`` (which builds only when the binary is
missing). ``go/`` pins the version, its go.sum committed, so a build downloads exactly
those modules. Everything lands in one cache folder (``OBJECT_STORE_CACHE``, default
``~/.cache/object-store``): ``gomod/`` (GOMODCACHE), ``gocache/`` (GOCACHE) and
``bin/<key>/weed``, where the key hashes go.mod, go.sum, the link flags and the Go version
(as kube-sandbox keys its binaries). A second build with the same key does nothing.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import gobuild

GO_DIR = Path(__file__).resolve().parent / "go"
SEAWEEDFS_MODULE = "github.com/seaweedfs/seaweedfs"
LDFLAGS = "-s -w"


def cache_dir() -> Path:
    """The folder that holds the binary, GOMODCACHE and GOCACHE."""
    env = os.environ.get("OBJECT_STORE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "object-store"


def seaweedfs_version() -> str:
    """The SeaweedFS version go.mod requires."""
    for line in (GO_DIR / "go.mod").read_text().splitlines():
        words = line.split()
        if SEAWEEDFS_MODULE in words:
            return words[words.index(SEAWEEDFS_MODULE) + 1]
    raise RuntimeError(f"{GO_DIR / 'go.mod'} requires no {SEAWEEDFS_MODULE}")


def build_key() -> str:
    files = ((GO_DIR / name).read_bytes() for name in ("go.mod", "go.sum"))
    return f"seaweedfs-{seaweedfs_version()}-{gobuild.build_digest(files, LDFLAGS)}"


def weed_path() -> Path:
    """Where the binary is (it may not be built yet)."""
    return cache_dir() / "bin" / build_key() / "weed"


def is_built() -> bool:
    return gobuild.all_executable([weed_path()])


def ensure_built(log: gobuild.Log) -> Path:
    """Build ``weed`` unless it is in the cache; its path."""
    if is_built():
        return weed_path()
    cache = cache_dir()
    with gobuild.build_lock(cache, tool="object-store", go_needed="1.26"):
        if not is_built():
            _build(cache, log)
    return weed_path()


def _build(cache: Path, log: gobuild.Log) -> None:
    out = weed_path().parent
    with gobuild.staged(out) as tmp:
        log(f"building SeaweedFS {seaweedfs_version()} with {gobuild.go_version()} into {out}")
        log("  a cold build takes minutes (niced: it yields the cores to everything else)")
        started = time.monotonic()
        weed = gobuild.go_build_command(
            str(tmp / "weed"), f"{SEAWEEDFS_MODULE}/weed", ldflags=LDFLAGS
        )
        env = gobuild.go_env(cache)
        subprocess.run(["nice", "-n", "19", *weed], cwd=GO_DIR, env=env, check=True)
        seconds = gobuild.write_build_info(tmp, {"seaweedfs": seaweedfs_version()}, started=started)
    log(f"built in {seconds:.0f} s")
