"""A real local stack per test: model servers, router and controller as processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controller.client import ControllerClient
from controller.stack import LocalStack, StackPorts
from tests.conftest import IrisVersions

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


@pytest.fixture
def stack(iris: IrisVersions, tmp_path: Path) -> Iterator[LocalStack]:
    """`iris.good` live on blue, green empty."""
    local = make_stack(iris, tmp_path / "state")
    try:
        local.start(version=iris.good)
        yield local
    finally:
        local.stop()


@pytest.fixture
def client(stack: LocalStack) -> Iterator[ControllerClient]:
    api = ControllerClient(stack.controller_url, token=TOKEN)
    yield api
    api.close()


def served_version(stack: LocalStack) -> str:
    answer = httpx.post(f"{stack.router_url}/predict", json=[[5.1, 3.5, 1.4, 0.2]], timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-model-version"]
