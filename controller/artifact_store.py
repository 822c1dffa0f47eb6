"""A failed read of the artifact store, as the controller's errors (for `mlflow_registry.py`).

`plumbing.s3_failures` says which failure it is; this words it for whoever started the
release: a store that does not answer is `ArtifactStoreUnavailable` (retryable), one that
refuses the credentials is `ArtifactStoreRefused` (not retryable until they change), and a
missing file is None: the caller decides what its absence means.
"""

from __future__ import annotations

from controller.errors import ArtifactStoreRefused, ArtifactStoreUnavailable, BluegreenError
from plumbing.s3_failures import endpoint, refused_credentials, store_fault

_WHERE = "in the controller's environment (on Kubernetes: the Secret mlflow.existingSecret names)"


def store_error(exc: BaseException, *, what: str) -> BluegreenError | None:
    """The controller error for a failed read of `what`, or None when the store is not the
    cause (or the file is simply missing)."""
    failure = store_fault(exc)
    if failure is None:
        return None
    if failure.kind == "refused":
        return ArtifactStoreRefused(
            refused_credentials(failure, subject=f"reading {what}", where=_WHERE)
        )
    return ArtifactStoreUnavailable(
        f"the artifact store at {endpoint()} does not answer (reading {what}: {failure.code}); "
        "the release can be retried once it is back"
    )
