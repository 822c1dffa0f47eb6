"""Session fixture: one kube-sandbox for the tests of the sandbox itself.

The fixture builds the binaries if the cache lacks them (minutes on a fresh machine), starts
the sandbox in a temporary folder with this interpreter's folder on the pods' PATH (so pods
run ``python3`` from the project's venv), and stops it at the end, failing if anything was
left behind.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from kube_sandbox import fixture, teardown  # noqa: E402
from kube_sandbox.layout import Layout, State  # noqa: E402

from tests.sandbox import helpers  # noqa: E402

PODS_PATH = [str(Path(sys.executable).parent)]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On a machine without the binaries, the first sandbox test pays the cold build."""
    from kube_sandbox import build

    if not build.is_built():
        first = next((i for i in items if "tests/sandbox/" in str(i.fspath)), None)
        if first is not None:
            first.add_marker(pytest.mark.timeout(3600))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fixture.Sandbox]:
    d = tmp_path_factory.mktemp("kube-sandbox")
    t0 = time.monotonic()
    fixture.build()
    t1 = time.monotonic()
    sb = fixture.up(d, path=PODS_PATH, image_env={"PYTHONUNBUFFERED": "1"})
    print(f"\nkube-sandbox: build check {t1 - t0:.1f} s, up {time.monotonic() - t1:.1f} s")
    try:
        yield sb
    finally:
        sb.down()
        left = teardown.leftovers(Layout(sb.dir), State.load(Layout(sb.dir).state_json))
        assert not any(left.values()), f"left behind by down: {left}"


@pytest.fixture(scope="session")
def kube(sandbox: fixture.Sandbox) -> helpers.Kube:
    return helpers.Kube(sandbox)


@pytest.fixture
def ns(kube: helpers.Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    name = helpers.namespace_name(request.node.name)
    kube.create_namespace(name)
    yield name
    kube.delete_namespace(name)
