"""Loads the pinned version in the background, proves the fast path, warms up, turns ready.

Started by the app's lifespan (`app.py`). On success the state gets its model and scorer
(readiness flips to 200); on failure it records one line saying why and calls
`on_load_failure`, which ends the process (`main.py`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

from model_server.batching import AdaptiveBatcher
from model_server.errors import ModelLoadError, ModelServerError
from model_server.loaded_model import LoadedModel
from model_server.mlflow_protocol import JSON, enter_serving_environment
from model_server.scoring import Scorer, prove_batch_invariance
from model_server.settings import ModelServerSettings
from model_server.state import ServingState

log = logging.getLogger("bluegreen.model_server")

Loader = Callable[[ModelServerSettings], LoadedModel]


async def load_and_warm(
    state: ServingState, loader: Loader, on_load_failure: Callable[[str], None] | None
) -> None:
    settings = state.settings
    what = f"cannot serve models:/{settings.model_name}/{settings.model_version}"
    try:
        model = await asyncio.to_thread(loader, settings)
        enter_serving_environment()
        # The fast path was proved against MLflow's scoring code when the version was
        # prepared (`prepare.py`); a model off it needs MLflow's code from the start.
        if not model.fast:
            log.warning("fast path off for %s: %s", model.model_uri, model.slow_reason)
            await asyncio.to_thread(model.mlflow_model)
        batcher = None
        if model.fast:
            # The preparing child's proof (on MLflow's own load) is in `unbatched_reason`;
            # this one is on the estimator this process predicts with.
            unbatchable = model.unbatched_reason or await asyncio.to_thread(
                prove_batch_invariance, model
            )
            if unbatchable is not None:
                log.warning("batching off for %s: %s", model.model_uri, unbatchable)
                model.unbatched_reason = unbatchable
            batcher = AdaptiveBatcher(
                model.predict_matrix,
                # One request's rows per call: never merged with a neighbour's.
                max_rows=settings.max_batch_rows if unbatchable is None else 1,
                on_batch=state.metrics.observe_batch,
            )
            batcher.start()
        await _warm_up(model, Scorer(model, batcher))
        scorer = Scorer(
            model,
            batcher,
            on_path=state.metrics.observe_path,
            max_rows=settings.max_rows,
            on_answered=state.answered,
        )
    except (ModelLoadError, ModelServerError) as exc:
        _fail(state, f"{what}: {exc}", on_load_failure)
        return
    except Exception as exc:
        _fail(state, f"{what}: {type(exc).__name__}: {exc}", on_load_failure)
        return
    # MLflow, pandas and scikit-learn leave millions of long-lived objects behind; a full
    # collection walking them stalls every request for 100+ ms (the p99 in bench/).
    # Freezing moves them out of the collector's sight; new garbage is still collected.
    gc.collect()
    gc.freeze()
    state.model, state.scorer = model, scorer
    state.metrics.loaded(model.load_seconds)
    log.info(
        "ready: %s (%s) as %s in %.1f s",
        model.model_uri,
        "fast path" if model.fast else f"MLflow's scoring code: {model.slow_reason}",
        settings.color,
        model.load_seconds,
    )


async def stop(state: ServingState) -> None:
    if state.scorer is not None:
        state.scorer.decoder.stop()
        if state.scorer.batcher is not None:
            await state.scorer.batcher.stop()


async def _warm_up(model: LoadedModel, scorer: Scorer) -> None:
    """One real prediction before turning ready, with the model's own serving example."""
    example = model.serving_input_example
    if not example:
        return
    answer = await scorer.invocations(example.encode(), JSON)
    if answer.status != 200:
        raise ModelServerError(f"warm-up prediction on the serving example failed: {answer.body!r}")


def _fail(state: ServingState, reason: str, on_load_failure: Callable[[str], None] | None) -> None:
    state.load_error = reason.replace("\n", " ")
    log.error(state.load_error)
    if on_load_failure is not None:
        on_load_failure(state.load_error)
