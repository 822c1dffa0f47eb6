"""The model server's own errors, each carrying the HTTP status it maps to.

Raised across `model_server` and mapped to HTTP by the app's exception handlers. Errors of
MLflow's scoring protocol on `/invocations` are not these: they are MLflow's own
(`mlflow_protocol.py`, `mlflow_errors.py`).

ModelServerError
├── InvalidInput        400  the body is not something we can predict on
├── UnsupportedMedia    415  wrong Content-Type on /predict
├── PayloadTooLarge     413  body (or rows) over the configured limit
├── NotReady            503  the model is not loaded yet
├── Unauthorized        401  admin call without the right token
├── PredictionFailed    500  the model itself raised on valid input
└── ClientGone          499  the client disconnected before its body was complete
ModelLoadError               the pinned version cannot be served (process exits)
"""

from __future__ import annotations


class ModelServerError(Exception):
    """Base of the tree; each subclass names its HTTP status and MLflow-style code once."""

    status_code: int = 500
    error_code: str = "INTERNAL_ERROR"

    def __init_subclass__(cls, *, status: int, code: str) -> None:
        super().__init_subclass__()
        cls.status_code, cls.error_code = status, code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ModelServerError, status=400, code="BAD_REQUEST"): ...


class UnsupportedMedia(ModelServerError, status=415, code="UNSUPPORTED_MEDIA_TYPE"): ...


class PayloadTooLarge(ModelServerError, status=413, code="PAYLOAD_TOO_LARGE"): ...


class NotReady(ModelServerError, status=503, code="NOT_READY"): ...


class Unauthorized(ModelServerError, status=401, code="UNAUTHORIZED"): ...


class PredictionFailed(ModelServerError, status=500, code="PREDICTION_FAILED"): ...


class ClientGone(ModelServerError, status=499, code="CLIENT_CLOSED_REQUEST"):
    """The client left before its body arrived: counted as 499 (nginx's code), not a 5xx."""


class ModelLoadError(Exception):
    """The pinned version cannot be loaded; `permanent` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent
