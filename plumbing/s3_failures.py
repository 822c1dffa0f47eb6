"""What a failed read of an `s3://` artifact root means: the store is down, refuses us, or
the file is not there.

MLflow reads an S3 artifact root itself with boto3 when the tracking server does not proxy
artifacts (`--no-serve-artifacts`), and lets botocore's errors through: raised as they are
(a listing), or, from its download threads, inside an `MlflowException` whose message lists
them. The controller (`controller/artifact_store.py`) and the model server
(`model_server/prepare.py`) both take the store's fault from `store_fault` and word it for
their user (a refusal through `refused_credentials`). Nothing here repeats a request's
signature or a key: only error codes and class names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["unavailable", "refused", "missing"]

_REFUSED_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
    }
)
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_UNAVAILABLE_NAMES = (
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)
# How botocore words a ClientError: "An error occurred (CODE) when calling the OP operation".
_CODE_IN_TEXT = re.compile(r"An error occurred \(([A-Za-z0-9]+)\) when calling")

CREDENTIAL_VARIABLES = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"


@dataclass(frozen=True)
class StoreFailure:
    """`kind` of failure and its `code` (an S3 error code or a botocore error's class)."""

    kind: Kind
    code: str


def endpoint() -> str:
    """The S3 endpoint clients here use, for messages."""
    return os.environ.get("MLFLOW_S3_ENDPOINT_URL") or "the S3 endpoint"


def classify(exc: BaseException) -> StoreFailure | None:
    """The store's failure behind `exc`, or None when `exc` is not about the store."""
    for cause in _chain(exc):
        found = _one(cause)
        if found is not None:
            return found
    return _from_text(str(exc))


def store_fault(exc: BaseException) -> StoreFailure | None:
    """The store's failure behind `exc` when the store is to blame (down, or refusing our
    credentials); None otherwise, a missing file included: what its absence means is the
    caller's to say."""
    failure = classify(exc)
    return None if failure is None or failure.kind == "missing" else failure


def refused_credentials(failure: StoreFailure, *, subject: str, where: str) -> str:
    """One line for a refusal: which store, what was being read (`subject`), the code, and
    which variables to check `where`."""
    return (
        f"the artifact store at {endpoint()} refused the credentials {subject} "
        f"({failure.code}): check {CREDENTIAL_VARIABLES} {where}"
    )


def _one(exc: BaseException) -> StoreFailure | None:
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return StoreFailure("refused", name)
    if name in _UNAVAILABLE_NAMES:
        return StoreFailure("unavailable", name)
    response = getattr(exc, "response", None)
    if name == "ClientError" and isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return _by_code(code or str(status), status)
    return None


def _by_code(code: str, status: int) -> StoreFailure | None:
    if code in _MISSING_CODES or status == 404:
        return StoreFailure("missing", code)
    if code in _REFUSED_CODES or status == 403:
        return StoreFailure("refused", code)
    if status >= 500 or code in ("500", "502", "503", "504", "SlowDown", "ServiceUnavailable"):
        return StoreFailure("unavailable", code)
    return None


def _from_text(text: str) -> StoreFailure | None:
    """From an `MlflowException` that lists its download threads' errors as text."""
    for name in _UNAVAILABLE_NAMES:
        if name in text or "Could not connect to the endpoint URL" in text:
            return StoreFailure("unavailable", name)
    match = _CODE_IN_TEXT.search(text)
    if match is not None:
        code = match.group(1)
        return _by_code(code, int(code) if code.isdigit() else 0)
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and its causes and contexts, each once."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return seen
