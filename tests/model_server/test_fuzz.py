"""Fuzz the model server's OpenAPI schema with schemathesis: no input makes it answer 5xx."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error

from tests.support.fuzz import fuzz_operations
from tests.support.model_servers import ModelServerProcess
from tests.support.models import IRIS_ROWS


@pytest.fixture(scope="module")
def model_server_schema(model_server: ModelServerProcess) -> schemathesis.BaseSchema:
    # A fast-path server loads MLflow's scoring code on the first request only MLflow can
    # answer (seconds on a busy machine): load it here, outside the fuzzer's 10 s timeout.
    first = httpx.post(
        f"{model_server.url}/invocations",
        content="not json",
        headers={"Content-Type": "application/json"},
        timeout=180,
    )
    assert first.status_code == 400, first.text
    return schemathesis.openapi.from_url(f"{model_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("model_server_schema")


@fuzz_operations(schema, max_examples=60)
def test_no_server_errors(case: schemathesis.Case, model_server: ModelServerProcess) -> None:
    case.call_and_validate(checks=[not_a_server_error])


def test_still_serving_after_the_fuzz(model_server: ModelServerProcess) -> None:
    assert httpx.post(f"{model_server.url}/predict", json=IRIS_ROWS).status_code == 200
