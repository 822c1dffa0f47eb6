"""Prepares one pinned version for serving, in a child process: `python -m model_server.prepare`.

Started by `loader.load_pinned_model` when the model cache (`model_cache.py`) has no
valid entry for the version. It does what costs seconds and a hundred MB once: imports
MLflow, downloads the artifacts, loads the model with MLflow's own serving loader (skops
checks the file, which imports every scikit-learn estimator), decides whether the fast path
applies and proves it against MLflow's scoring code (`scoring.prove_fast_path`). Then it
writes the cache entry and exits, giving all that memory back: the server itself only
unpickles the proved estimator, and imports MLflow later only if a request needs MLflow's
own scoring code.

Its last line on stdout is JSON: `{"entry": PATH}` (exit 0) or `{"error": ..., "permanent":
...}` (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from model_server import model_cache
from model_server.errors import ModelLoadError
from model_server.mlflow_protocol import enter_serving_environment
from model_server.settings import ModelServerSettings
from model_server.signature_matrix import SignatureColumns
from plumbing.s3_failures import endpoint, refused_credentials, store_fault

# float (float32) columns are cast by MLflow before predicting; the fast path only builds
# float64 matrices, so it takes double columns only.
_FAST_TYPES = frozenset({"double"})


def prepare(settings: ModelServerSettings, path: Path, fingerprint: dict[str, str]) -> Path:
    """Prepare the entry at `path` (staged beside it, then moved in place); its final path."""
    from model_server.loaded_model import LoadedModel
    from model_server.scoring import prove_batch_invariance, prove_fast_path

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    model_uri = f"models:/{settings.model_name}/{settings.model_version}"
    pyfunc = _download_and_load(settings, model_uri, staging / model_cache.MODEL_DIR)
    columns, estimator, slow_reason = fast_path(pyfunc)
    local_dir = str(staging / model_cache.MODEL_DIR)
    model = LoadedModel(
        name=settings.model_name,
        version=settings.model_version,
        run_id=pyfunc.metadata.run_id,
        model_uri=model_uri,
        serving_input_example=pyfunc.metadata.get_serving_input(local_dir),
        columns=columns,
        estimator=estimator,
        slow_reason=slow_reason,
        model_dir=staging / model_cache.MODEL_DIR,
        pyfunc=pyfunc,
    )
    enter_serving_environment()  # as the server answers: type-hinted models check input then
    reason = prove_fast_path(model) if model.fast else None
    if reason is not None:
        model.disable_fast_path(reason)
    # Proved here too, on the estimator exactly as MLflow loaded it (its arrays' layout is
    # skops's, not the unpickled copy's): the server batches only if both proofs pass.
    unbatched = prove_batch_invariance(model) if model.fast else None
    entry = model_cache.Entry(
        model_uri=model_uri,
        run_id=model.run_id,
        fingerprint=fingerprint,
        runtime=model_cache.runtime(),
        columns=list(model.columns.names) if model.columns is not None else None,
        serving_input_example=model.serving_input_example,
        slow_reason=model.slow_reason,
        unbatched_reason=unbatched,
        path=staging,
    )
    model_cache.write(entry, model.estimator)
    return model_cache.publish(staging, path, fingerprint)


def _download_and_load(settings: ModelServerSettings, model_uri: str, dst: Path) -> Any:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    dst.mkdir()
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst))
    except Exception as exc:
        store_error = _store_error(exc, model_uri)
        if store_error is not None:
            raise store_error from None
        if not isinstance(exc, MlflowException | OSError):
            raise
        _raise_download_error(exc, model_uri)
    try:
        # MLflow's own loader for serving: it honours SERVING_MODEL_CONFIG as `models serve` does.
        load: Any = scoring_server.load_model_with_mlflow_config
        return load(str(dst))
    except FileNotFoundError as exc:  # the version's files are there only in part
        missing = Path(exc.filename).name if exc.filename else "a file"
        raise ModelLoadError(
            f"{model_uri} does not load: {missing} is missing from its artifacts (deleted from "
            "the artifact store?); register the version again",
            permanent=True,
        ) from None
    except Exception as exc:
        raise ModelLoadError(
            f"{model_uri} does not load: {type(exc).__name__}: {_first_line(exc)}", permanent=True
        ) from None


def _store_error(exc: BaseException, model_uri: str) -> ModelLoadError | None:
    """The artifact store's failure, worded for the user; None when the store is not the cause."""
    failure = store_fault(exc)
    if failure is None:
        return None
    if failure.kind == "refused":
        where = "in the model server's environment"
        return ModelLoadError(
            refused_credentials(failure, subject=f"for {model_uri}", where=where),
            permanent=True,
        )
    return ModelLoadError(
        f"the artifact store at {endpoint()} does not answer ({failure.code}) for {model_uri}",
        permanent=False,
    )


def _raise_download_error(exc: BaseException, model_uri: str) -> NoReturn:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" and "artifact" not in str(exc).lower():
            raise ModelLoadError(
                f"{model_uri} is not in the registry: {_first_line(exc)}", permanent=True
            ) from None
        raise ModelLoadError(
            f"artifacts of {model_uri} cannot be downloaded: {_first_line(exc)}", permanent=True
        ) from None
    raise ModelLoadError(
        f"artifacts of {model_uri} unreachable: {_first_line(exc)}", permanent=False
    ) from None


def fast_path(pyfunc: Any) -> tuple[SignatureColumns | None, Any | None, str | None]:
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
    return SignatureColumns(tuple(schema.input_names())), estimator, None


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def run(argv: list[str] | None = None) -> dict[str, object]:
    """One preparation from its command line; the result line's object (see the docstring)."""
    parser = argparse.ArgumentParser(prog="python -m model_server.prepare")
    parser.add_argument("--entry", type=Path, required=True)
    parser.add_argument("--fingerprint", required=True, help="JSON object")
    args = parser.parse_args(argv)
    try:
        path = prepare(ModelServerSettings(), args.entry, json.loads(args.fingerprint))
    except ModelLoadError as exc:
        return {"error": str(exc), "permanent": exc.permanent}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "permanent": True}
    return {"entry": str(path)}


def main(argv: list[str] | None = None) -> int:
    result = run(argv)
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
