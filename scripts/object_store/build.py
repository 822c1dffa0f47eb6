"""Build SeaweedFS's ``weed`` binary from its Go module, once.

Called by ``object-store build`` and by ``up`` (which builds only when the binary is
missing). ``go/`` pins the version, its go.sum committed, so a build downloads exactly
those modules. Everything lands in one cache folder (``OBJECT_STORE_CACHE``, default
``~/.cache/object-store``): ``gomod/`` (GOMODCACHE), ``gocache/`` (GOCACHE) and
``bin/<key>/weed``, where the key hashes go.mod, go.sum, the link flags and the Go version
(as kube-sandbox keys its binaries). A second build with the same key does nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent / "go"
SEAWEEDFS_MODULE = "github.com/seaweedfs/seaweedfs"
LDFLAGS = "-s -w"

Log = Callable[[str], None]


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


def go_version() -> str:
    try:
        return subprocess.run(
            ["go", "env", "GOVERSION"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no-go"


def build_key() -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((GO_DIR / name).read_bytes())
    digest.update(LDFLAGS.encode())
    digest.update(go_version().encode())
    return f"seaweedfs-{seaweedfs_version()}-{digest.hexdigest()[:12]}"


def weed_path() -> Path:
    """Where the binary is (it may not be built yet)."""
    return cache_dir() / "bin" / build_key() / "weed"


def is_built() -> bool:
    path = weed_path()
    return path.is_file() and os.access(path, os.X_OK)


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


def ensure_built(log: Log) -> Path:
    """Build ``weed`` unless it is in the cache; its path."""
    if is_built():
        return weed_path()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build may be running: wait for it
        if go_version() == "no-go":
            raise SystemExit("object-store build: no `go` on PATH (Go >= 1.26 is needed)")
        if not is_built():
            _build(cache, log)
    return weed_path()


def _build(cache: Path, log: Log) -> None:
    out = weed_path().parent
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"building SeaweedFS {seaweedfs_version()} with {go_version()} into {out}")
    log("  a cold build takes minutes (niced: it yields the cores to everything else)")
    started = time.monotonic()
    command = [
        *("nice", "-n", "19", "go", "build", "-trimpath", "-ldflags", LDFLAGS),
        *("-o", str(tmp / "weed"), f"{SEAWEEDFS_MODULE}/weed"),
    ]
    subprocess.run(command, cwd=GO_DIR, env=_go_env(cache), check=True)
    seconds = time.monotonic() - started
    info = {"seaweedfs": seaweedfs_version(), "go": go_version(), "seconds": round(seconds)}
    (tmp / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"built in {seconds:.0f} s")
