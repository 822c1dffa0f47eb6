"""The pinned version in memory: what `/model-info` reports, and its two ways to predict.

Built by the loader (`loader.py`) in the server, and by `prepare.py` in the preparing child.
`predict_matrix` is the fast path: the raw estimator's own `predict` on a float matrix laid
out as pandas would hand it (`signature_matrix.py` builds it), without MLflow in memory.
`invoke_mlflow` is MLflow's own scoring code (`mlflow_protocol.py`), whose model is loaded on
first use (`mlflow_model`). Called by `scoring.py`, `batching.py` and the app.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model_server.errors import InvalidInput, PredictionFailed
from model_server.mlflow_protocol import Answer, invoke
from model_server.signature_matrix import SignatureColumns

log = logging.getLogger(__name__)

# Estimators fitted on a DataFrame warn on every numpy predict; the fast path checks
# column names itself, so the warning is noise (and costs time on the hot path).
warnings.filterwarnings("ignore", message="X does not have valid feature names")


@dataclass
class LoadedModel:
    """The pinned version, ready to predict, and what `/model-info` reports about it."""

    name: str
    version: str
    run_id: str | None
    model_uri: str
    serving_input_example: str | None
    columns: SignatureColumns | None
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
