"""Loads the pinned MLflow version and predicts with it on the fast path.

`load_pinned_model` is called once at start-up by the app (`app.py`). Models with the
scikit-learn flavor, its default `predict` and an all-double column signature get the fast
path: the raw estimator's `predict` on a numpy matrix that `fastpath.py` built, skipping
the pandas frame and pyfunc wrapping that make `mlflow models serve` slow. Whether the
fast path answers as MLflow does is proved once more on the model itself after loading
(`scoring.prove_fast_path`). Everything else goes through MLflow's own scoring code
(`mlflow_protocol.py`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from model_server.errors import InvalidInput, ModelLoadError, PredictionFailed
from model_server.fastpath import FastColumns
from model_server.settings import ModelServerSettings

log = logging.getLogger(__name__)

# float (float32) columns are cast by MLflow before predicting; the fast path only builds
# float64 matrices, so it takes double columns only.
_FAST_TYPES = frozenset({"double"})


@dataclass
class LoadedModel:
    """The pinned version, ready to predict, and what `/model-info` reports about it."""

    name: str
    version: str
    run_id: str | None
    model_uri: str
    pyfunc: Any
    serving_input_example: str | None
    columns: FastColumns | None
    estimator: Any | None
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    load_seconds: float = 0.0
    slow_reason: str | None = None
    # Why concurrent requests are predicted one by one instead of in merged batches.
    unbatched_reason: str | None = None

    @property
    def fast(self) -> bool:
        return self.estimator is not None and self.columns is not None

    @property
    def input_schema(self) -> Any:
        return self.pyfunc.metadata.get_input_schema()

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
    retrying = retry(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_delay(settings.load_retry_seconds),
        wait=wait_exponential(multiplier=0.5, max=5),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "registry unreachable, retrying model load: %s",
            state.outcome.exception() if state.outcome is not None else "?",
        ),
    )
    return retrying(_load_once)(settings)


def _load_once(settings: ModelServerSettings) -> LoadedModel:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.pyfunc import scoring_server

    started = time.perf_counter()
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    model_uri = f"models:/{settings.model_name}/{settings.model_version}"
    try:
        version = MlflowClient().get_model_version(settings.model_name, settings.model_version)
    except RestException as exc:
        raise ModelLoadError(
            f"{model_uri} is not in the registry: {exc.message}", permanent=True
        ) from None
    except MlflowException as exc:
        raise ModelLoadError(f"registry unreachable: {_first_line(exc)}", permanent=False) from None
    try:
        local_dir = mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri,
            dst_path=tempfile.mkdtemp(prefix="bluegreen-model-", dir=settings.cache_dir),
        )
    except MlflowException as exc:
        raise ModelLoadError(
            f"artifacts of {model_uri} cannot be downloaded: {_first_line(exc)}", permanent=True
        ) from None
    except OSError as exc:
        raise ModelLoadError(
            f"artifacts of {model_uri} unreachable: {_first_line(exc)}", permanent=False
        ) from None
    try:
        # MLflow's own loader for serving: it honours SERVING_MODEL_CONFIG as `models serve` does.
        load: Any = scoring_server.load_model_with_mlflow_config
        pyfunc = load(local_dir)
    except Exception as exc:
        raise ModelLoadError(
            f"{model_uri} does not load: {type(exc).__name__}: {_first_line(exc)}", permanent=True
        ) from None
    columns, estimator, slow_reason = _fast_path(pyfunc)
    return LoadedModel(
        name=settings.model_name,
        version=settings.model_version,
        run_id=version.run_id,
        model_uri=model_uri,
        pyfunc=pyfunc,
        serving_input_example=pyfunc.metadata.get_serving_input(local_dir),
        columns=columns,
        estimator=estimator,
        load_seconds=time.perf_counter() - started,
        slow_reason=slow_reason,
    )


def _fast_path(pyfunc: Any) -> tuple[FastColumns | None, Any | None, str | None]:
    """The columns and raw estimator when the fast path can be equivalent, else why not."""
    if pyfunc.loader_module != "mlflow.sklearn":
        return None, None, f"flavor {pyfunc.loader_module} is served by MLflow's pyfunc"
    conf = pyfunc.metadata.flavors.get("python_function", {})
    if conf.get("predict_fn", "predict") != "predict":
        return None, None, f"pyfunc predicts with {conf.get('predict_fn')}"
    schema = pyfunc.metadata.get_input_schema()
    if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
        return None, None, "no column signature"
    if pyfunc.metadata.get_params_schema() is not None:
        return None, None, "the signature has params"
    inputs = schema.inputs
    if any(getattr(spec.type, "name", None) not in _FAST_TYPES for spec in inputs):
        return None, None, "not every column is a double"
    if any(getattr(spec, "optional", False) for spec in inputs):
        return None, None, "optional columns"
    estimator = pyfunc.get_raw_model()
    if not hasattr(estimator, "predict"):
        return None, None, "the estimator has no predict"
    return FastColumns(tuple(schema.input_names())), estimator, None


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
