"""Local stacks for the tests: a real stack per test, its API token, what it serves.

The fixtures `stack` (model servers, router and controller as processes, `iris.good` live
on blue, green empty), `client` (its controller's API) and `state_dir` are registered by
`tests/conftest.py`; `make_stack` builds one for tests that start it their own way;
`wait_for_step` holds a test until a release it started is at a given step.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bluegreen.client import ControllerClient
from bluegreen.stack import LocalStack, StackPorts
from tests.support.iris import IrisVersions

TOKEN = "tok-9f2c41d7e0b5a8c3"  # distinctive, so a leak into logs is easy to find


def make_stack(
    iris: IrisVersions, state_dir: Path, *, tracking_uri: str | None = None
) -> LocalStack:
    return LocalStack(
        model=iris.model,
        state_dir=state_dir,
        ports=StackPorts.free(),
        tracking_uri=tracking_uri or iris.tracking_uri,
        token=TOKEN,
    )


def served_version(stack: LocalStack) -> str:
    answer = httpx.post(f"{stack.router_url}/predict", json=[[5.1, 3.5, 1.4, 0.2]], timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-model-version"]


def wait_for_step(
    client: ControllerClient, operation_id: str, step: str, *, timeout_s: float = 60.0
) -> None:
    """Until the release `operation_id` is at `step` (its latest step so far), so a test can
    strike (abort, kill, restart a dependency) while that step runs."""
    deadline = time.monotonic() + timeout_s
    while (client.operation(operation_id)["steps"] or [{}])[-1].get("name") != step:
        assert time.monotonic() < deadline, f"the release never reached its {step} step"
        time.sleep(0.05)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty state directory for a stack or a backend the test builds itself."""
    path = tmp_path / "state"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_stack(iris: IrisVersions, state_dir: Path) -> Iterator[LocalStack]:
    """A started stack, `iris.good` live on blue, green empty; stopped after the block."""
    local = make_stack(iris, state_dir)
    try:
        local.start(version=iris.good)
        yield local
    finally:
        local.stop()


@pytest.fixture
def stack(iris: IrisVersions, tmp_path: Path) -> Iterator[LocalStack]:
    """A stack of this test's own: `iris.good` live on blue, green empty."""
    with running_stack(iris, tmp_path / "state") as local:
        yield local


@pytest.fixture
def client(stack: LocalStack) -> Iterator[ControllerClient]:
    api = ControllerClient(stack.controller_url, token=TOKEN)
    yield api
    api.close()
