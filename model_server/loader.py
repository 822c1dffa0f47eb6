"""Loads the pinned MLflow version at start-up: one registry call, the cache, or a child.

`start_loading` (by `main.py`, before the web stack is imported) and `load_pinned_model` (by
the app, `lifecycle.py`) are the callers. One registry call (`registry.py`), then the local
model cache (`model_cache.py`); without a valid entry, one is prepared with MLflow's own loader
(`prepare.py`, which also proves the fast path on the model): by the warm preparer when one
is configured and answers (`prepare_service.py`), else in a child process of this server. An
unreachable registry is retried with the one retry policy (`plumbing.retry`) within the
configured window; anything else is a `ModelLoadError` that says whether retrying can help.
The result is a `LoadedModel` (`loaded_model.py`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path

from model_server import model_cache, registry
from model_server.errors import ModelLoadError
from model_server.loaded_model import LoadedModel
from model_server.settings import ModelServerSettings
from model_server.signature_matrix import SignatureColumns
from plumbing.retry import retry_transient
from plumbing.settings_env import settings_environment

log = logging.getLogger(__name__)

# What a start waits at most for the preparing child (download, load, proof).
PREPARE_TIMEOUT_S = 600.0
_ADMIN_TOKEN_VARIABLE = "MODEL_SERVER_ADMIN_TOKEN"  # and its _FILE twin


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, ModelLoadError) and not exc.permanent


def load_pinned_model(settings: ModelServerSettings) -> LoadedModel:
    """Load `models:/NAME/VERSION`, retrying only while the registry is unreachable."""
    retrying = retry_transient(
        _is_transient,
        within_s=settings.load_retry_seconds,
        first_wait_s=0.5,
        max_wait_s=5.0,
        log=log,
        what="model load",
    )
    return retrying(_load_once, settings)


def _load_once(settings: ModelServerSettings) -> LoadedModel:
    started = time.perf_counter()
    record = registry.get_version(
        settings.tracking_uri, settings.model_name, settings.model_version
    )
    if record is None:  # no registry record to check an entry against: never reused
        root = Path(tempfile.mkdtemp(prefix="bluegreen-models-"))
        fingerprint = {"uncached": str(root)}
    else:
        root = _cache_root(settings.cache_dir, user_cache=settings.user_cache_dir)
        fingerprint = {
            **record.fingerprint(),
            "tracking_uri": settings.tracking_uri,
            "model_config": settings.serving_model_config,
        }
    path = model_cache.entry_dir(root, settings.model_name, settings.model_version, fingerprint)
    entry = model_cache.lookup(path, fingerprint)
    if entry is None:
        entry = _prepare(settings, path, fingerprint)
    else:
        log.info("model cache hit: %s", path)
    estimator = entry.load_estimator() if entry.columns is not None else None
    return LoadedModel(
        name=settings.model_name,
        version=settings.model_version,
        run_id=entry.run_id,
        model_uri=entry.model_uri,
        serving_input_example=entry.serving_input_example,
        columns=SignatureColumns(tuple(entry.columns)) if entry.columns is not None else None,
        estimator=estimator,
        model_dir=entry.model_dir,
        load_seconds=time.perf_counter() - started,
        slow_reason=entry.slow_reason,
        unbatched_reason=entry.unbatched_reason,
    )


def start_loading(settings: ModelServerSettings) -> Future[LoadedModel]:
    """`load_pinned_model` in a daemon thread, begun before the web stack is even imported.

    While it waits on the registry and the preparing child, the main thread imports
    FastAPI and uvicorn: the start pays the longer of the two, not their sum.
    """
    future: Future[LoadedModel] = Future()

    def load() -> None:
        try:
            future.set_result(load_pinned_model(settings))
        except BaseException as exc:  # handed to whoever awaits the model
            future.set_exception(exc)

    threading.Thread(target=load, name="model-load", daemon=True).start()
    return future


def _prepare(
    settings: ModelServerSettings, path: Path, fingerprint: dict[str, str]
) -> model_cache.Entry:
    """Prepare the entry at `path`, at the warm preparer or in a child, and read it back.

    The preparation reads the same settings from its environment: a server built from a
    settings object rather than from its own environment (an embedding app, a test) hands
    them over.
    """
    entry_path, fingerprint_json = str(path), json.dumps(fingerprint)
    # The admin token stays out: a preparation serves nothing.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(_ADMIN_TOKEN_VARIABLE)},
        **settings_environment(settings, exclude={"admin_token", "admin_token_file"}),
    }
    result = None
    if settings.prepare_socket is not None:
        request = {"entry": entry_path, "fingerprint": fingerprint_json, "env": env}
        result = _prepare_at(settings.prepare_socket, request)
    if result is None:
        argv = ["--entry", entry_path, "--fingerprint", fingerprint_json]
        result = _prepare_in_child(argv, env)
    if "error" in result:
        raise ModelLoadError(str(result["error"]), permanent=bool(result.get("permanent", True)))
    entry = model_cache.lookup(Path(str(result.get("entry", path))), fingerprint)
    if entry is None:
        raise ModelLoadError(
            f"preparing the model failed ({result.get('failed', 'no entry written')}); "
            "see the log above",
            permanent=True,
        )
    return entry


def _prepare_at(socket_path: Path, request: Mapping[str, object]) -> dict[str, object] | None:
    """The warm preparer's result; None when it does not answer (then a child prepares)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.settimeout(5.0)
            conn.connect(str(socket_path))
            conn.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:  # not there, not listening, or too busy to take it
            log.info("no warm preparer at %s (%s): preparing in a child", socket_path, exc)
            return None
        _preimport_fast_path_library()  # here while the preparer works over there
        try:
            conn.settimeout(PREPARE_TIMEOUT_S)
            with conn.makefile("rb") as answer:
                line = answer.readline()
        except TimeoutError:
            raise ModelLoadError(
                f"preparing the model took over {PREPARE_TIMEOUT_S:.0f} s", permanent=False
            ) from None
        except OSError:
            line = b""  # the connection broke: no result, as below
    try:
        result = json.loads(line)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        # The preparer's child died mid-way (killed, out of memory): a child of ours tries.
        log.warning("the warm preparer at %s answered no result: preparing in a child", socket_path)
        return None
    log.info("prepared by the warm preparer at %s", socket_path)
    return result


def _prepare_in_child(argv: list[str], env: dict[str, str]) -> dict[str, object]:
    """Run `python -m model_server.prepare` and read its result line."""
    command = [sys.executable, "-m", "model_server.prepare", *argv]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as child:
        _preimport_fast_path_library()  # on this core while the child works on the other
        try:
            stdout, _ = child.communicate(timeout=PREPARE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            raise ModelLoadError(
                f"preparing the model took over {PREPARE_TIMEOUT_S:.0f} s", permanent=False
            ) from None
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if not isinstance(result, dict):
        result = {}
    if child.returncode != 0 and "error" not in result:
        result = {"failed": f"exit {child.returncode}"}
    return result


def _cache_root(configured: str | None, *, user_cache: str | None) -> Path:
    if configured:
        return Path(configured)
    try:
        root = Path(user_cache or Path.home() / ".cache") / "bluegreen" / "models"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except (OSError, RuntimeError):  # no or a read-only home: this start's own temp dir
        return Path(tempfile.mkdtemp(prefix="bluegreen-models-"))
    return root


def _preimport_fast_path_library() -> None:
    """Import scikit-learn, which unpickling a fast-path estimator needs, if it is installed."""
    with contextlib.suppress(ImportError):
        importlib.import_module("sklearn.base")
