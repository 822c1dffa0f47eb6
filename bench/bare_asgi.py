"""The serving ceiling `bench/serving.py` compares against: decode JSON, predict, encode.

    python -m bench.bare_asgi --port P --model ESTIMATOR.pkl

A raw ASGI callable under uvicorn (uvloop + httptools, no access log, one worker): no
framework, no validation, no batching. `POST /invocations` takes the benchmark's single
`dataframe_split` body, builds the Fortran-ordered float matrix a pandas frame would hand
the estimator, calls the estimator's own `predict` once per request and answers
`{"predictions": [...]}` with MLflow's separators. `GET /ping` answers 200: the model is
loaded before the socket is bound, so the first 200 is "ready".

The estimator comes as a pickle the benchmark wrote from the registered model (the bench's
own file in its temp dir): loading it is the cheapest way a Python server can get the
model, which is what a ceiling should measure.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvicorn

_JSON_HEADERS = [(b"content-type", b"application/json")]


def make_app(estimator: Any) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            await _answer(send, 200, b"\n")
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            rows = orjson.loads(body)["dataframe_split"]["data"]
            matrix = np.asarray(rows, dtype=np.float64, order="F")
            predictions = estimator.predict(matrix)
        except Exception as exc:  # a ceiling, not a server: say what failed and move on
            await _answer(send, 400, orjson.dumps({"error": repr(exc)}))
            return
        items = orjson.dumps(predictions, option=orjson.OPT_SERIALIZE_NUMPY)
        await _answer(send, 200, b'{"predictions": ' + items.replace(b",", b", ") + b"}")

    return app


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", type=Path, required=True, help="pickled estimator")
    args = parser.parse_args()
    estimator = pickle.loads(args.model.read_bytes())  # the bench's own file
    estimator.predict(np.zeros((1, estimator.n_features_in_), order="F"))  # warm up
    uvicorn.run(
        make_app(estimator),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
