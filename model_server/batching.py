"""Adaptive batching: concurrent requests share one predict call.

The model's per-call overhead dwarfs its per-row cost, so merging rows from requests
that arrive together multiplies throughput. Unlike a fixed batch window, this batcher
never waits: a lone request is predicted at once, and whatever arrives while a predict
runs forms the next batch. Called by the app's fast path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from model_server.errors import ModelServerError

Predict = Callable[[np.ndarray], np.ndarray]

# Batches up to this many rows are predicted on the event loop itself. A small model's
# predict on a few rows holds the GIL for tens of microseconds: handing it to a thread
# costs more (two wake-ups, on a busy machine two trips through the OS scheduler) and
# gains no parallelism. Larger batches go to the predict thread, where numpy and BLAS
# release the GIL and the loop keeps reading requests meanwhile.
INLINE_MAX_ROWS = 32


class AdaptiveBatcher:
    """Queues matrices, predicts them in merged batches of at most `max_rows` rows."""

    def __init__(
        self,
        predict: Predict,
        *,
        max_rows: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self._max_rows = max_rows
        self._on_batch = on_batch
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        # One thread: the event loop keeps parsing requests while the model predicts.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((matrix, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            rows = len(batch[0][0])
            while rows < self._max_rows and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                rows += len(item[0])
            await self._predict_batch(loop, batch)

    async def _predict_batch(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]],
    ) -> None:
        if self._on_batch is not None:
            self._on_batch(sum(len(matrix) for matrix, _ in batch))
        merged = batch[0][0] if len(batch) == 1 else np.concatenate([m for m, _ in batch])
        try:
            if len(merged) <= INLINE_MAX_ROWS:
                predictions = self._predict(merged)
            else:
                predictions = await loop.run_in_executor(self._executor, self._predict, merged)
        except ModelServerError as exc:
            if len(batch) == 1:
                _settle(batch[0][1], error=exc)
                return
            # One bad request must not fail its neighbours: retry each on its own.
            for matrix, future in batch:
                try:
                    _settle(
                        future,
                        value=await loop.run_in_executor(self._executor, self._predict, matrix),
                    )
                except ModelServerError as single_exc:
                    _settle(future, error=single_exc)
            return
        except Exception as exc:  # the future must always be settled, or a client hangs
            for _, future in batch:
                _settle(future, error=exc)
            return
        start = 0
        for matrix, future in batch:
            end = start + len(matrix)
            _settle(future, value=predictions[start:end])
            start = end


def _settle(
    future: asyncio.Future[np.ndarray],
    *,
    value: np.ndarray | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():  # the client went away and its request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)  # type: ignore[arg-type]
