"""A schemathesis run over the router, in front of a real model server, finds no
server error, with and without the admin token; and no fuzzed request target leaves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.support.fuzz import fuzz_operations, fuzz_settings
from tests.support.http_servers import Canary, raw_request, status_of
from tests.support.model_servers import ModelServerProcess
from tests.support.router_process import RouterProcess, router_process

ADMIN = "router-fuzz-admin-token"


@pytest.fixture(scope="module")
def router(
    model_server: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RouterProcess]:
    logs: Path = tmp_path_factory.mktemp("fuzz-router")
    with router_process(
        model_server.url, logs, ROUTER_ADMIN_TOKEN=ADMIN, ROUTER_STATE_FILE=str(logs / "route.json")
    ) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def router_schema(router: RouterProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{router.url}/_bluegreen/openapi.json")


schema = schemathesis.pytest.from_fixture("router_schema")


@fuzz_operations(schema, max_examples=60)
def test_fuzz_without_token_no_server_error(case: schemathesis.Case, router: RouterProcess) -> None:
    before = httpx.get(f"{router.url}/_bluegreen/route").json()
    response = case.call_and_validate(checks=[not_a_server_error])
    if case.method.upper() == "PUT" and case.path == "/_bluegreen/route":
        assert response.status_code in (400, 401), response.status_code
    assert httpx.get(f"{router.url}/_bluegreen/route").json() == before


@fuzz_operations(schema, max_examples=40)
def test_fuzz_with_token_no_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {ADMIN}"}, checks=[not_a_server_error]
    )


_TARGET_BYTES = st.sampled_from(
    [b"/", b"//", b"\\", b".", b"..", b"%2F", b"%2e", b"@", b":", b"?", b"#", b"127.0.0.1",
     b"http:", b"predict", b"a", b"%00", b";", b"~", b"*"]
)  # fmt: skip


@fuzz_settings(max_examples=300)
@given(parts=st.lists(_TARGET_BYTES, min_size=1, max_size=8))
def test_fuzzed_targets_never_leave_the_router(router: RouterProcess, parts: list[bytes]) -> None:
    with Canary() as canary:
        target = b"".join(parts).replace(b"127.0.0.1", b"127.0.0.1:%d" % canary.port)
        answer = raw_request(
            router.port, b"GET " + target + b" HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
        )
    assert canary.connections == 0, target
    assert 0 < status_of(answer) < 500, (target, answer)
