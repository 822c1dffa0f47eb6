"""The controller API: token checks, no secret in answers or logs, and a schemathesis fuzz."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error

from bluegreen.stack import LocalStack
from tests.support.fuzz import fuzz_operations
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN, running_stack


@pytest.fixture(scope="module")
def shared_stack(
    iris: IrisVersions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    with running_stack(iris, tmp_path_factory.mktemp("fuzz") / "state") as local:
        yield local


@pytest.mark.parametrize("path", ["/switch", "/rollback"])
@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic " + TOKEN, TOKEN, "Bearer"])
def test_mutating_calls_need_the_token(
    shared_stack: LocalStack, path: str, auth: str | None
) -> None:
    headers = {"authorization": auth} if auth else {}
    answer = httpx.post(
        f"{shared_stack.controller_url}{path}", json={"version": "1"}, headers=headers
    )
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"
    assert answer.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in answer.text


def test_reads_need_no_token(shared_stack: LocalStack) -> None:
    for path in ("/status", "/history", "/healthz", "/metrics"):
        assert httpx.get(f"{shared_stack.controller_url}{path}").status_code == 200


def test_router_flip_needs_the_token(shared_stack: LocalStack) -> None:
    route = httpx.get(f"{shared_stack.router_url}/_bluegreen/route").json()
    answer = httpx.put(
        f"{shared_stack.router_url}/_bluegreen/route",
        json={"color": "green", "expected_revision": route["revision"]},
    )
    assert answer.status_code == 401
    assert httpx.get(f"{shared_stack.router_url}/_bluegreen/route").json() == route


@pytest.fixture(scope="module")
def controller_schema(shared_stack: LocalStack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{shared_stack.controller_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("controller_schema")


@fuzz_operations(schema, max_examples=40)
def test_fuzz_without_token_no_server_error_and_no_mutation(
    case: schemathesis.Case, shared_stack: LocalStack
) -> None:
    before = httpx.get(f"{shared_stack.router_url}/_bluegreen/route").json()
    response = case.call_and_validate(checks=[not_a_server_error])
    if case.method.upper() not in ("GET", "HEAD", "OPTIONS"):
        # 401 on the mutating routes; 405 when the fuzzer tries a method a route lacks
        assert response.status_code in (401, 405), response.status_code
    assert httpx.get(f"{shared_stack.router_url}/_bluegreen/route").json() == before


@fuzz_operations(schema, max_examples=25)
def test_fuzz_with_token_no_server_error(case: schemathesis.Case, shared_stack: LocalStack) -> None:
    # A fuzzed switch really stages a model: allow for a busy 2-core machine.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error], timeout=120
    )


def test_token_never_in_logs_or_state(shared_stack: LocalStack) -> None:
    """Runs after the fuzz and releases above: every log and state file is free of it."""
    files = [p for p in Path(shared_stack.state_dir).rglob("*") if p.is_file()]
    assert any(p.name == "controller.log" for p in files)
    for path in files:
        if path.suffix in {".db", ".lock"} or "mlflow" in path.parts:
            continue
        assert TOKEN not in path.read_text(errors="replace"), path


def test_cli_status_switch_and_rollback(shared_stack: LocalStack, iris: IrisVersions) -> None:
    def bluegreen(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "bluegreen",
                *args,
                "--controller",
                shared_stack.controller_url,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={"BLUEGREEN_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        )

    status = bluegreen("status")
    assert status.returncode == 0, status.stderr
    assert "live" in status.stdout and "standby" in status.stdout
    release = bluegreen("switch", "--version", iris.third)
    assert release.returncode == 0, release.stdout + release.stderr
    for step in ("resolve", "stage", "verify", "promote"):
        assert step in release.stdout
    assert "promoted" in release.stdout
    back = bluegreen("rollback")
    assert back.returncode == 0 and "rolled_back" in back.stdout
    refused = bluegreen("switch", "--version", "999")
    assert refused.returncode == 1
    assert "version_not_found" in refused.stderr
    assert TOKEN not in status.stdout + release.stdout + back.stdout + refused.stderr
