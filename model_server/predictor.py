"""Loads the pinned MLflow version and predicts with it.

`load_pinned_model` is called once at start-up by the app. Models with the scikit-learn
flavor and an all-float column signature get the fast path: the raw estimator's
`predict` on a numpy matrix, skipping the pandas frame and pyfunc schema enforcement that
make `mlflow models serve` slow. Every other model is served through MLflow's own
pyfunc scoring code, so behaviour stays exactly MLflow's.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import numpy as np
import orjson
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from model_server.errors import InvalidInput, ModelLoadError, PredictionFailed
from model_server.inputs import ColumnLayout
from model_server.settings import ModelServerSettings

log = logging.getLogger(__name__)

_FAST_TYPES = frozenset({"double", "float"})


@dataclass
class LoadedModel:
    """The pinned version, ready to predict, and what `/model-info` reports about it."""

    name: str
    version: str
    run_id: str | None
    model_uri: str
    pyfunc: Any
    serving_input_example: str | None
    layout: ColumnLayout | None
    estimator: Any | None
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    load_seconds: float = 0.0

    @property
    def fast(self) -> bool:
        return self.estimator is not None and self.layout is not None

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Fast path: the estimator's own predict on a validated float matrix."""
        try:
            return np.asarray(self.estimator.predict(matrix))
        except ValueError as exc:
            raise InvalidInput(f"the model rejected the input: {exc}") from None
        except Exception as exc:
            raise PredictionFailed(f"prediction failed: {type(exc).__name__}: {exc}") from None

    def predict_frame(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Generic path: MLflow's pyfunc predict (schema enforcement included)."""
        from mlflow.exceptions import MlflowException

        try:
            if params:
                return self.pyfunc.predict(data, params=params)
            return self.pyfunc.predict(data)
        except MlflowException as exc:
            raise InvalidInput(exc.message) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInput(f"the model rejected the input: {exc}") from None
        except Exception as exc:
            raise PredictionFailed(f"prediction failed: {type(exc).__name__}: {exc}") from None

    def invocations(self, body: bytes, content_type: str) -> tuple[int, str, str]:
        """Answer `/invocations` with MLflow's own scoring code: (status, body, media type)."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc import scoring_server

        schema = self.pyfunc.metadata.get_input_schema()
        try:
            answer = scoring_server.invocations(body, content_type, self.pyfunc, schema)
        except MlflowException as exc:
            raise InvalidInput(exc.message.split("\n")[0]) from None
        return answer.status, answer.response, answer.mimetype


def predictions_json(raw_predictions: Any) -> Any:
    """What MLflow puts under `predictions` for any pyfunc output."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    out = StringIO()
    predictions_to_json(raw_predictions, out)
    return orjson.loads(out.getvalue())["predictions"]


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
            "registry unreachable, retrying model load: %s", state.outcome.exception()
        ),
    )
    return retrying(_load_once)(settings)


def _load_once(settings: ModelServerSettings) -> LoadedModel:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException, RestException

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
        pyfunc = mlflow.pyfunc.load_model(local_dir)
    except Exception as exc:
        raise ModelLoadError(
            f"{model_uri} does not load: {type(exc).__name__}: {_first_line(exc)}", permanent=True
        ) from None
    layout, estimator = _fast_path(pyfunc)
    return LoadedModel(
        name=settings.model_name,
        version=settings.model_version,
        run_id=version.run_id,
        model_uri=model_uri,
        pyfunc=pyfunc,
        serving_input_example=pyfunc.metadata.get_serving_input(local_dir),
        layout=layout,
        estimator=estimator,
        load_seconds=time.perf_counter() - started,
    )


def _fast_path(pyfunc: Any) -> tuple[ColumnLayout | None, Any | None]:
    """The column layout and raw estimator when the fast path is safe for this model."""
    if pyfunc.loader_module != "mlflow.sklearn":
        return None, None
    schema = pyfunc.metadata.get_input_schema()
    if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
        return None, None
    if pyfunc.metadata.get_params_schema() is not None:
        return None, None
    inputs = schema.inputs
    if any(getattr(spec.type, "name", None) not in _FAST_TYPES for spec in inputs):
        return None, None
    if any(getattr(spec, "optional", False) for spec in inputs):
        return None, None
    estimator = pyfunc.get_raw_model()
    if not hasattr(estimator, "predict"):
        return None, None
    return ColumnLayout(tuple(schema.input_names())), estimator


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
