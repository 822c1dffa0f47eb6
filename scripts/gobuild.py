"""Go builds for the scripts' own tools: the mechanics ``kube_sandbox`` and ``object_store`` share.

Each tool pins its Go modules under its own ``go/`` folder and builds into a cache folder of its
own, under a key that hashes what went into the binaries; ``kube_sandbox.build`` and
``object_store.build`` say what to build and how they name it. What they do alike lives here
once: the Go version, the key's digest, the environment that makes a build reproducible and
offline-friendly, the lock that lets one build wait for another, and building into a
``.tmp`` folder that replaces the old one only when everything in it was built.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

Log = Callable[[str], None]


def go_version() -> str:
    """``go env GOVERSION``, or ``no-go`` when there is no usable ``go`` on PATH."""
    try:
        return subprocess.run(
            ["go", "env", "GOVERSION"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no-go"


def build_digest(inputs: Iterable[bytes], ldflags: str) -> str:
    """12 hex digits over the inputs (module files), the link flags and the Go version: a
    change to any of them must land in a new cache folder, never over a binary in use."""
    digest = hashlib.sha256()
    for data in inputs:
        digest.update(data)
    digest.update(ldflags.encode())
    digest.update(go_version().encode())
    return digest.hexdigest()[:12]


def go_build_command(output: str, *packages: str, ldflags: str | None = None) -> list[str]:
    """``go build`` of the packages into ``output`` (a file, or a folder ending in ``/``)."""
    flags = ["-ldflags", ldflags] if ldflags is not None else []
    return ["go", "build", "-trimpath", *flags, "-o", output, *packages]


def all_executable(paths: Iterable[Path]) -> bool:
    return all(p.is_file() and os.access(p, os.X_OK) for p in paths)


def go_env(cache: Path) -> dict[str, str]:
    """The caller's environment with the module and build caches in ``cache``, static
    binaries, and exactly the committed go.sum (no toolchain download, no VCS stamping)."""
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(cache / "gomod"),
        GOCACHE=str(cache / "gocache"),
        CGO_ENABLED="0",
        GOFLAGS="-mod=readonly -buildvcs=false",
        GOTOOLCHAIN="local",
    )
    return env


@contextmanager
def build_lock(cache: Path, *, tool: str, go_needed: str) -> Iterator[None]:
    """Hold the cache's build lock (another build may be running: wait for it), then check
    that Go is there, so a missing ``go`` is one clear line instead of a traceback."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if go_version() == "no-go":
            raise SystemExit(f"{tool} build: no `go` on PATH (Go >= {go_needed} is needed)")
        yield


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A fresh ``OUT.tmp`` to build into; it replaces ``out`` only when the block succeeds,
    so an interrupted build never leaves a half-filled ``out`` that looks built."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def write_build_info(
    folder: Path, versions: Mapping[str, str], *, started: float, **extra: str
) -> float:
    """``build.json`` in ``folder``: the versions built, the Go version, the seconds since
    ``started`` (a ``time.monotonic()``) and any ``extra``; returns those seconds."""
    seconds = time.monotonic() - started
    info = {**versions, "go": go_version(), "seconds": round(seconds), **extra}
    (folder / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    return seconds
