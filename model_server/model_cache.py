"""The local model cache: one prepared entry per registered name and version.

Written by the preparing child (`prepare.py`) after MLflow's own loader loaded the version
and the fast path was proved on it; read by `loader.load_pinned_model` at every start.
A re-pin, a rollback or a restart on the same `MODEL_SERVER_CACHE_DIR` finds its entry and
starts without MLflow, skops or the proof. An entry is used only while the registry's
record of the version (run, source, creation time) and the runtime (Python, MLflow,
scikit-learn, numpy versions) are those it was prepared with.

    CACHE/<name>/<version>/<key>/meta.json       what `Entry` holds
    CACHE/<name>/<version>/<key>/model/          the artifacts, as MLflow downloaded them
    CACHE/<name>/<version>/<key>/estimator.pkl   the fast path's estimator (fast entries only)

`<key>` digests the registry record and the runtime: servers of different registries (or
images) sharing a cache directory never touch each other's entries.

`estimator.pkl` is a pickle this server's own child wrote from the estimator MLflow loaded
(skops-checked): the cache directory must be private to the server, as its model files are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import platform
import shutil
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import quote

META = "meta.json"
MODEL_DIR = "model"
ESTIMATOR = "estimator.pkl"


def runtime() -> dict[str, str]:
    """The versions an entry's pickle and proof depend on."""

    def dist(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return ""

    return {
        "python": platform.python_version(),
        **{name: dist(name) for name in ("mlflow", "scikit-learn", "numpy")},
    }


@dataclass(frozen=True)
class Entry:
    """One prepared version; `columns` is None when MLflow's scoring code serves it."""

    model_uri: str
    run_id: str | None
    fingerprint: dict[str, str]
    runtime: dict[str, str]
    columns: list[str] | None
    serving_input_example: str | None
    slow_reason: str | None
    unbatched_reason: str | None
    """Why rows must not be merged, as the proof found on the estimator MLflow loaded."""
    path: Path

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    def load_estimator(self) -> Any:
        # Our own file, written by our child from the estimator MLflow loaded (module doc).
        return pickle.loads((self.path / ESTIMATOR).read_bytes())


def entry_dir(root: Path, name: str, version_: str, fingerprint: dict[str, str]) -> Path:
    key = json.dumps({"fingerprint": fingerprint, "runtime": runtime()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return root / quote(name, safe="") / version_ / digest


def lookup(path: Path, fingerprint: dict[str, str]) -> Entry | None:
    """The entry at `path` if it is complete and valid for `fingerprint`."""
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("fingerprint") != fingerprint or meta.get("runtime") != runtime():
        return None
    try:
        entry = Entry(path=path, **{k: v for k, v in meta.items() if k != "path"})
    except TypeError:  # written by another version of this server: prepared again
        return None
    if entry.columns is not None and not (path / ESTIMATOR).is_file():
        return None
    return entry


def write(entry: Entry, estimator: Any | None) -> None:
    """Complete an entry whose `model/` is already in place (meta last: it marks it done)."""
    if estimator is not None:
        (entry.path / ESTIMATOR).write_bytes(pickle.dumps(estimator))
    meta = {k: v for k, v in asdict(entry).items() if k != "path"}
    tmp = entry.path / f".{META}.{os.getpid()}"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, entry.path / META)


def publish(staging: Path, path: Path, fingerprint: dict[str, str]) -> Path:
    """Move a complete entry from `staging` to `path`, replacing an incomplete one there.

    A valid entry already there (another color prepared the same version meanwhile) stays:
    a server may be reading its model files.
    """
    if lookup(path, fingerprint) is not None:
        shutil.rmtree(staging, ignore_errors=True)
        return path
    old = path.with_name(f".{path.name}.old.{os.getpid()}")
    with contextlib.suppress(OSError):
        os.rename(path, old)
    try:
        os.rename(staging, path)
    except OSError:  # the other one published first: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return path
