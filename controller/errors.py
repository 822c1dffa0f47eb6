"""The controller's own errors; `api.py` maps them to HTTP in one place.

Each class names its HTTP status, its stable `error` code, and whether the same request
may succeed later (`retryable`, kopf's temporary/permanent split): the operation record
carries both, so an Airflow task stops retrying what will never work.

    BluegreenError                      status  retryable
    ├── BadRequest                      400     no
    ├── Unauthorized                    401     no
    ├── PayloadTooLarge                 413     no
    ├── NotFound                        404     no
    │   ├── VersionNotFound             404     no   resolve: no such version or alias
    │   └── OperationNotFound           404     no
    ├── Conflict                        409     yes  (temporary: someone else is acting)
    │   ├── ReleaseInProgress           409     yes  another release holds the lock
    │   ├── RollbackUnavailable         409     no   nothing ready to return to
    │   ├── RouteConflict               409     yes  the route changed under us
    │   ├── NotPaused                   409     no   promote without a paused release
    │   └── AbortedByRequest            409     no   an operator stopped the release
    ├── StepFailed                      (a release step could not complete)
    │   ├── StageFailed                 502     no   the version did not come up in the standby
    │   ├── StageTimeout                504     yes  ... not within the bounded wait
    │   ├── VerifyFailed                422     no   the smoke test failed
    │   ├── ShadowFailed                422     no   mirrored live traffic disagreed
    │   └── SchemaIncompatible          422     no   the new signature refuses live inputs
    ├── DependencyUnavailable           503     yes  MLflow, the router or the cluster is down
    │   ├── RegistryUnavailable         503     yes
    │   ├── RouterUnavailable           503     yes
    │   ├── BackendUnavailable          503     yes
    │   ├── ArtifactStoreUnavailable    503     yes  the artifact store (S3) does not answer
    │   └── JournalUnavailable          503     yes  the journal could not be read or written
    ├── ArtifactStoreRefused            502     no   the artifact store refused our credentials
    └── ReleaseAborted                  the cause's status and code; carries the record

Temporary errors are also retried with backoff where they happen (`plumbing/retry.py`);
an instance may override its class's `retryable` when its cause knows better.
"""

from __future__ import annotations

from typing import Any


class BluegreenError(Exception):
    """Base of the tree; each subclass names its HTTP status and `error` code once."""

    status_code: int = 500
    error: str = "internal_error"
    retryable: bool = False

    def __init_subclass__(
        cls,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status_code = status
        if code is not None:
            cls.error = code
        if retryable is not None:
            cls.retryable = retryable

    def __init__(self, detail: str, *, retryable: bool | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if retryable is not None:
            self.retryable = retryable


class BadRequest(BluegreenError, status=400, code="bad_request"): ...


class Unauthorized(BluegreenError, status=401, code="unauthorized"): ...


class PayloadTooLarge(BluegreenError, status=413, code="payload_too_large"): ...


class NotFound(BluegreenError, status=404, code="not_found"): ...


class VersionNotFound(NotFound, code="version_not_found"): ...


class OperationNotFound(NotFound, code="operation_not_found"): ...


class Conflict(BluegreenError, status=409, code="conflict", retryable=True): ...


class ReleaseInProgress(Conflict, code="release_in_progress"): ...


class RollbackUnavailable(Conflict, code="rollback_unavailable", retryable=False): ...


class RouteConflict(Conflict, code="route_conflict"): ...


class NotPaused(Conflict, code="not_paused", retryable=False): ...


class AbortedByRequest(Conflict, code="aborted", retryable=False): ...


class StageCancelled(AbortedByRequest):
    """A backend stopped waiting for a color because the release was aborted."""


class StepFailed(BluegreenError, code="step_failed"): ...


class StageFailed(StepFailed, status=502, code="stage_failed"): ...


class StageTimeout(StepFailed, status=504, code="stage_timeout", retryable=True): ...


class VerifyFailed(StepFailed, status=422, code="verify_failed"): ...


class ShadowFailed(StepFailed, status=422, code="shadow_failed"): ...


class SchemaIncompatible(StepFailed, status=422, code="schema_incompatible"): ...


class DependencyUnavailable(
    BluegreenError, status=503, code="dependency_unavailable", retryable=True
): ...


class RegistryUnavailable(DependencyUnavailable, code="registry_unavailable"): ...


class RouterUnavailable(DependencyUnavailable, code="router_unavailable"): ...


class BackendUnavailable(DependencyUnavailable, code="backend_unavailable"): ...


class JournalUnavailable(DependencyUnavailable, code="journal_unavailable"): ...


class ArtifactStoreUnavailable(DependencyUnavailable, code="artifact_store_unavailable"): ...


class ArtifactStoreRefused(BluegreenError, status=502, code="artifact_store_refused"):
    """The artifact store answered, and refused: wrong credentials or no permission."""


class ReleaseAborted(BluegreenError):
    """A release stopped before promote; live traffic was not touched."""

    def __init__(self, cause: BluegreenError, operation: dict[str, Any]) -> None:
        super().__init__(cause.detail, retryable=cause.retryable)
        self.cause = cause
        self.operation = operation
        self.status_code = cause.status_code
        self.error = cause.error
