"""Loads the pinned MLflow version and predicts with it on the fast path.

`load_pinned_model` is called once at start-up by the app (`lifecycle.py`). It makes one
registry call (`registry.py`) and looks the version up in the local model cache
(`model_cache.py`); without a valid entry, a child process prepares one with MLflow's own
loader (`prepare.py`), which also proves the fast path on the model. Models with the
scikit-learn flavor, its default `predict` and an all-double column signature get the fast
path: the raw estimator's `predict` on a numpy matrix that `fastpath.py` built, skipping
the pandas frame and pyfunc wrapping that make `mlflow models serve` slow, and without
MLflow in the server's memory. Everything else goes through MLflow's own scoring code
(`mlflow_protocol.py`), whose model is loaded on first use (`LoadedModel.mlflow_model`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model_server import model_cache, registry
from model_server.errors import InvalidInput, ModelLoadError, PredictionFailed
from model_server.fastpath import FastColumns
from model_server.mlflow_protocol import Answer, invoke
from model_server.settings import ModelServerSettings
from plumbing.retry import retry_transient

log = logging.getLogger(__name__)

# Estimators fitted on a DataFrame warn on every numpy predict; the fast path checks
# column names itself, so the warning is noise (and costs time on the hot path).
warnings.filterwarnings("ignore", message="X does not have valid feature names")

# What a start waits at most for the preparing child (download, load, proof).
PREPARE_TIMEOUT_S = 600.0


@dataclass
class LoadedModel:
    """The pinned version, ready to predict, and what `/model-info` reports about it."""

    name: str
    version: str
    run_id: str | None
    model_uri: str
    serving_input_example: str | None
    columns: FastColumns | None
    estimator: Any | None
    model_dir: Path | None = None
    """The artifacts MLflow's own loader reads, on first use."""
    pyfunc: Any = None
    """MLflow's pyfunc model: loaded by `mlflow_model` on first use, or given (the child)."""
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    load_seconds: float = 0.0
    slow_reason: str | None = None
    # Why concurrent requests are predicted one by one instead of in merged batches.
    unbatched_reason: str | None = None
    _pyfunc_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def fast(self) -> bool:
        return self.estimator is not None and self.columns is not None

    def mlflow_model(self) -> Any:
        """MLflow's pyfunc model, loaded by MLflow's serving loader on first call (blocking)."""
        with self._pyfunc_lock:
            if self.pyfunc is None:
                from mlflow.pyfunc import scoring_server

                if self.model_dir is None:
                    raise PredictionFailed("the model's artifacts are not on this server")
                load: Any = scoring_server.load_model_with_mlflow_config
                started = time.perf_counter()
                self.pyfunc = load(str(self.model_dir))
                log.info(
                    "MLflow's scoring code loaded %s in %.1f s",
                    self.model_uri,
                    time.perf_counter() - started,
                )
            return self.pyfunc

    @property
    def input_schema(self) -> Any:
        return self.mlflow_model().metadata.get_input_schema()

    def invoke_mlflow(self, body: bytes, content_type: str | None) -> Answer:
        """MLflow's own answer to one `/invocations` request (blocking: run in a thread)."""
        pyfunc = self.mlflow_model()
        return invoke(pyfunc, pyfunc.metadata.get_input_schema(), body, content_type)

    def disable_fast_path(self, reason: str) -> None:
        self.columns, self.estimator, self.slow_reason = None, None, reason

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Fast path: the estimator's own predict on a float matrix laid out as pandas would."""
        estimator = self.estimator
        if estimator is None:
            raise PredictionFailed("the fast path is off for this model")
        if not matrix.flags.f_contiguous:  # merged batches are C-ordered
            matrix = np.asfortranarray(matrix)
        try:
            return np.asarray(estimator.predict(matrix))
        except ValueError as exc:
            raise InvalidInput(f"the model rejected the input: {exc}") from None
        except Exception as exc:
            raise PredictionFailed(f"prediction failed: {type(exc).__name__}: {exc}") from None


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
        entry = _prepare(path, fingerprint)
    else:
        log.info("model cache hit: %s", path)
    estimator = entry.load_estimator() if entry.columns is not None else None
    return LoadedModel(
        name=settings.model_name,
        version=settings.model_version,
        run_id=entry.run_id,
        model_uri=entry.model_uri,
        serving_input_example=entry.serving_input_example,
        columns=FastColumns(tuple(entry.columns)) if entry.columns is not None else None,
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


def _prepare(path: Path, fingerprint: dict[str, str]) -> model_cache.Entry:
    """Run `python -m model_server.prepare` for the entry at `path` and read it back."""
    command = [
        sys.executable, "-m", "model_server.prepare",
        "--entry", str(path), "--fingerprint", json.dumps(fingerprint),
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        _preimport_fast_path_library()  # on this core while the child works on the other
        try:
            stdout, _ = child.communicate(timeout=PREPARE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            raise ModelLoadError(
                f"preparing the model took over {PREPARE_TIMEOUT_S:.0f} s", permanent=False
            ) from None
    done = subprocess.CompletedProcess(command, child.returncode, stdout)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if "error" in result:
        raise ModelLoadError(str(result["error"]), permanent=bool(result.get("permanent", True)))
    entry = model_cache.lookup(Path(result.get("entry", path)), fingerprint)
    if done.returncode != 0 or entry is None:
        raise ModelLoadError(
            f"preparing the model failed (exit {done.returncode}); see the log above",
            permanent=True,
        )
    return entry


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
