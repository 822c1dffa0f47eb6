"""Builds the app's HTTP responses: JSON bodies (orjson), error bodies, scoring answers.

Called by the app's endpoints and exception handlers and by the middleware's 413 gate.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from model_server.mlflow_protocol import JSON, Answer


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type=JSON,
    )


def error_response(status_code: int, error_code: str, message: str) -> Response:
    """MLflow's error shape: `{"error_code": ..., "message": ...}`."""
    return json_response({"error_code": error_code, "message": message}, status_code)


def answer_response(answer: Answer) -> Response:
    return Response(content=answer.body, status_code=answer.status, media_type=answer.media_type)
