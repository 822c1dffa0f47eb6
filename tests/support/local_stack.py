"""Local stacks for the tests: a real stack per test, its API token, what it serves."""

from __future__ import annotations

from pathlib import Path

import httpx

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
