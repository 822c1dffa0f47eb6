"""`plumbing.s3_failures` tells an S3 outage, a refusal and a missing file apart, from
botocore's own exceptions and from MLflow's text that lists its download threads' errors."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from mlflow.exceptions import MlflowException

from controller.artifact_store import store_error
from controller.errors import ArtifactStoreRefused, ArtifactStoreUnavailable
from plumbing.s3_failures import StoreFailure, classify

SECRET = "s3cr3t-value-9a8b7c"


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "ListObjectsV2",
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_client_error("InvalidAccessKeyId", 403), StoreFailure("refused", "InvalidAccessKeyId")),
        (
            _client_error("SignatureDoesNotMatch", 403),
            StoreFailure("refused", "SignatureDoesNotMatch"),
        ),
        (_client_error("403", 403), StoreFailure("refused", "403")),
        (_client_error("NoSuchKey", 404), StoreFailure("missing", "NoSuchKey")),
        (_client_error("404", 404), StoreFailure("missing", "404")),
        (_client_error("InternalError", 500), StoreFailure("unavailable", "InternalError")),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            StoreFailure("unavailable", "EndpointConnectionError"),
        ),
        (NoCredentialsError(), StoreFailure("refused", "NoCredentialsError")),
        (ValueError("not about the store"), None),
    ],
)
def test_botocore_errors(exc: BaseException, expected: StoreFailure | None) -> None:
    assert classify(exc) == expected


def test_a_wrapped_cause_is_found() -> None:
    try:
        try:
            raise _client_error("AccessDenied", 403)
        except ClientError as inner:
            raise MlflowException("download failed") from inner
    except MlflowException as outer:
        assert classify(outer) == StoreFailure("refused", "AccessDenied")


def test_mlflow_download_failures_as_text() -> None:
    text = (
        "The following failures occurred while downloading one or more artifacts from "
        "s3://mlflow/1/abc/artifacts:\n##### File model.pkl #####\nAn error occurred "
        "(SignatureDoesNotMatch) when calling the GetObject operation: denied"
    )
    assert classify(MlflowException(text)) == StoreFailure("refused", "SignatureDoesNotMatch")
    down = '##### File model.pkl #####\nCould not connect to the endpoint URL: "http://x"'
    assert classify(MlflowException(down)) == StoreFailure("unavailable", "EndpointConnectionError")


def test_controller_words_them_without_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    refused = store_error(_client_error("InvalidAccessKeyId", 403), what="MLmodel of models:/m/1")
    assert isinstance(refused, ArtifactStoreRefused) and refused.retryable is False
    assert "AWS_SECRET_ACCESS_KEY" in refused.detail and SECRET not in refused.detail
    assert "http://127.0.0.1:8333" in refused.detail
    down = store_error(EndpointConnectionError(endpoint_url="http://x"), what="MLmodel")
    assert isinstance(down, ArtifactStoreUnavailable) and down.retryable is True
    assert down.status_code == 503
    assert store_error(_client_error("NoSuchKey", 404), what="MLmodel") is None
