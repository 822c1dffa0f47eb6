"""A real local stack per test: model servers, router and controller as processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bluegreen.client import ControllerClient
from bluegreen.stack import LocalStack
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN, make_stack


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
