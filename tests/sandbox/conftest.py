"""Session fixture: one kube-sandbox for the tests of the sandbox itself.

The fixture builds the binaries if the cache lacks them (minutes on a fresh machine), starts
the sandbox in a temporary folder with this interpreter's folder on the pods' PATH (so pods
run ``python3`` from the project's venv), and stops it at the end, failing if anything was
left behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kube_sandbox import fixture

from tests.sandbox import helpers
from tests.support.sandbox import mark_cold_build, running_sandbox


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_cold_build(items, "sandbox")


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fixture.Sandbox]:
    with running_sandbox(
        tmp_path_factory.mktemp("kube-sandbox"), image_env={"PYTHONUNBUFFERED": "1"}
    ) as sb:
        yield sb


@pytest.fixture(scope="session")
def kube(sandbox: fixture.Sandbox) -> helpers.Kube:
    return helpers.Kube(sandbox)


@pytest.fixture
def ns(kube: helpers.Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    name = helpers.namespace_name(request.node.name)
    kube.create_namespace(name)
    yield name
    kube.delete_namespace(name)
