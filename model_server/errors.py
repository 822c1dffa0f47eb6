"""The model server's own errors, each carrying the HTTP status it maps to.

Raised across `model_server` and mapped to HTTP by the app's exception handlers. Errors of
MLflow's scoring protocol on `/invocations` are not these: they are MLflow's own
(`mlflow_protocol.py`, `mlflow_errors.py`).

ModelServerError
├── InvalidInput        400  the body is not something we can predict on
├── UnsupportedMedia    415  wrong Content-Type on /predict
├── PayloadTooLarge     413  body over the configured limit
├── NotReady            503  the model is not loaded yet
├── Unauthorized        401  admin call without the right token
└── PredictionFailed    500  the model itself raised on valid input
ModelLoadError               the pinned version cannot be served (process exits)
"""

from __future__ import annotations


class ModelServerError(Exception):
    status_code = 500
    error_code = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ModelServerError):
    status_code = 400
    error_code = "BAD_REQUEST"


class UnsupportedMedia(ModelServerError):
    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"


class PayloadTooLarge(ModelServerError):
    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"


class NotReady(ModelServerError):
    status_code = 503
    error_code = "NOT_READY"


class Unauthorized(ModelServerError):
    status_code = 401
    error_code = "UNAUTHORIZED"


class PredictionFailed(ModelServerError):
    status_code = 500
    error_code = "PREDICTION_FAILED"


class ModelLoadError(Exception):
    """The pinned version cannot be loaded; `permanent` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent
