"""The controller's own errors; `api.py` maps them to HTTP in one place.

    BluegreenError                      status
    ├── BadRequest                      400
    ├── Unauthorized                    401
    ├── NotFound                        404
    │   ├── VersionNotFound             404  resolve: no such version or alias
    │   └── OperationNotFound           404
    ├── Conflict                        409
    │   ├── ReleaseInProgress           409  another release holds the lock
    │   ├── RollbackUnavailable         409  nothing ready to return to
    │   └── RouteConflict               409  the route changed under us
    ├── StepFailed                      (a release step could not complete)
    │   ├── StageFailed                 502  the version did not come up in the standby
    │   ├── StageTimeout                504  ... not within the bounded wait
    │   └── VerifyFailed                422  the smoke test failed (permanent: never retried)
    ├── DependencyUnavailable           503  MLflow, the router or the cluster is unreachable
    │   ├── RegistryUnavailable         503
    │   └── RouterUnavailable           503
    └── ReleaseAborted                  the failed step's status; carries the operation record

Transient errors (`DependencyUnavailable`, `RouteConflict` on re-read) are retried with
backoff where they happen; the others are permanent.
"""

from __future__ import annotations

from typing import Any


class BluegreenError(Exception):
    status_code = 500
    error = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(BluegreenError):
    status_code = 400
    error = "bad_request"


class Unauthorized(BluegreenError):
    status_code = 401
    error = "unauthorized"


class NotFound(BluegreenError):
    status_code = 404
    error = "not_found"


class VersionNotFound(NotFound):
    error = "version_not_found"


class OperationNotFound(NotFound):
    error = "operation_not_found"


class Conflict(BluegreenError):
    status_code = 409
    error = "conflict"


class ReleaseInProgress(Conflict):
    error = "release_in_progress"


class RollbackUnavailable(Conflict):
    error = "rollback_unavailable"


class RouteConflict(Conflict):
    error = "route_conflict"


class StepFailed(BluegreenError):
    error = "step_failed"


class StageFailed(StepFailed):
    status_code = 502
    error = "stage_failed"


class StageTimeout(StepFailed):
    status_code = 504
    error = "stage_timeout"


class VerifyFailed(StepFailed):
    status_code = 422
    error = "verify_failed"


class DependencyUnavailable(BluegreenError):
    status_code = 503
    error = "dependency_unavailable"


class RegistryUnavailable(DependencyUnavailable):
    error = "registry_unavailable"


class RouterUnavailable(DependencyUnavailable):
    error = "router_unavailable"


class BackendUnavailable(DependencyUnavailable):
    error = "backend_unavailable"


class ReleaseAborted(BluegreenError):
    """A release stopped before promote; live traffic was not touched."""

    def __init__(self, cause: BluegreenError, operation: dict[str, Any]) -> None:
        super().__init__(cause.detail)
        self.cause = cause
        self.operation = operation
        self.status_code = cause.status_code
        self.error = cause.error
