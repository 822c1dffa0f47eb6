"""The controller's own errors; `api.py` maps them to HTTP in one place.

    BluegreenError                      status
    ├── BadRequest                      400
    ├── Unauthorized                    401
    ├── PayloadTooLarge                 413
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
    │   ├── VerifyFailed                422  the smoke test failed (permanent: never retried)
    │   └── ShadowFailed                422  mirrored live traffic disagreed (the shadow gate)
    ├── DependencyUnavailable           503  MLflow, the router or the cluster is unreachable
    │   ├── RegistryUnavailable         503
    │   ├── RouterUnavailable           503
    │   ├── BackendUnavailable          503
    │   └── JournalUnavailable          503  the journal could not be read or written
    └── ReleaseAborted                  the failed step's status; carries the operation record

Transient errors (`DependencyUnavailable`, `RouteConflict` on re-read) are retried with
backoff where they happen; the others are permanent.
"""

from __future__ import annotations

from typing import Any


class BluegreenError(Exception):
    """Base of the tree; each subclass names its HTTP status and `error` code once."""

    status_code: int = 500
    error: str = "internal_error"

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status_code = status
        if code is not None:
            cls.error = code

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(BluegreenError, status=400, code="bad_request"): ...


class Unauthorized(BluegreenError, status=401, code="unauthorized"): ...


class PayloadTooLarge(BluegreenError, status=413, code="payload_too_large"): ...


class NotFound(BluegreenError, status=404, code="not_found"): ...


class VersionNotFound(NotFound, code="version_not_found"): ...


class OperationNotFound(NotFound, code="operation_not_found"): ...


class Conflict(BluegreenError, status=409, code="conflict"): ...


class ReleaseInProgress(Conflict, code="release_in_progress"): ...


class RollbackUnavailable(Conflict, code="rollback_unavailable"): ...


class RouteConflict(Conflict, code="route_conflict"): ...


class StepFailed(BluegreenError, code="step_failed"): ...


class StageFailed(StepFailed, status=502, code="stage_failed"): ...


class StageTimeout(StepFailed, status=504, code="stage_timeout"): ...


class VerifyFailed(StepFailed, status=422, code="verify_failed"): ...


class ShadowFailed(StepFailed, status=422, code="shadow_failed"): ...


class DependencyUnavailable(BluegreenError, status=503, code="dependency_unavailable"): ...


class RegistryUnavailable(DependencyUnavailable, code="registry_unavailable"): ...


class RouterUnavailable(DependencyUnavailable, code="router_unavailable"): ...


class BackendUnavailable(DependencyUnavailable, code="backend_unavailable"): ...


class JournalUnavailable(DependencyUnavailable, code="journal_unavailable"): ...


class ReleaseAborted(BluegreenError):
    """A release stopped before promote; live traffic was not touched."""

    def __init__(self, cause: BluegreenError, operation: dict[str, Any]) -> None:
        super().__init__(cause.detail)
        self.cause = cause
        self.operation = operation
        self.status_code = cause.status_code
        self.error = cause.error
