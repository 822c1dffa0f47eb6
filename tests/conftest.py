"""Session fixtures, one module per resource, and the cost markers of every test.

Fixtures (each module in `tests/support/` says what it starts):
- `mlflow_server`, `iris`: a real MLflow server with the iris versions registered;
- `model_server`: a real model server serving the good iris version;
- `stack`, `client`, `state_dir`: a real local stack per test, its controller's API, an
  empty state directory;
- `postgres`, `object_store`, `mlflow_s3`, `iris_s3`: MLflow as users run it, on Debian's
  PostgreSQL and a real S3 store (SeaweedFS), with the iris versions registered on it.

Markers, by what a test costs (`pytest -m unit` runs in well under a minute):
- `unit`: in this process only: no server, no child process, no cluster;
- `process`: real processes on this machine (MLflow, model servers, router, controller,
  helm, Airflow);
- `cluster`: a real Kubernetes node or control plane (minutes; the node helper's tier).
A test marked explicitly keeps its mark; others are marked by folder and by the fixtures
they use (any test that needs the MLflow server is `process`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.support.mlflow_server",
    "tests.support.model_servers",
    "tests.support.local_stack",
    "tests.support.postgres",
    "tests.support.object_store",
    "tests.support.mlflow_s3",
]

COSTS = ("unit", "process", "cluster")
_TESTS = Path(__file__).parent
_CLUSTER = ("cluster/", "node/", "sandbox/", "kubernetes/test_end_to_end.py")
# Folders whose tests start processes themselves (helm, kmock's server, routers, stacks).
_PROCESS = (
    "airflow/",
    "chart/",
    "cli/",
    "image/",
    "page/",
    "prometheus/",
    "conformance/",
    "kubernetes/",
    "local_stack/",
    "object_store/",
    "release/",
    "router/",
    "security/",
    "test_demo.py",
)
_PROCESS_FIXTURES = frozenset({"mlflow_server", "mlflow_s3", "object_store", "postgres"})
_UNIT_FILES = (  # in folders above, but in process only
    "conformance/test_fast_path.py",
)


def _cost(item: pytest.Item) -> str:
    where = Path(str(item.path)).relative_to(_TESTS).as_posix()
    if where.startswith(_CLUSTER):
        return "cluster"
    if _PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "process"
    if where.startswith(_UNIT_FILES):
        return "unit"
    if where.startswith(_PROCESS):
        return "process"
    return "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(cost) for cost in COSTS):
            item.add_marker(getattr(pytest.mark, _cost(item)))
