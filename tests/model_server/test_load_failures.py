"""A version that cannot be served never turns ready: the process says why and exits non-zero."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from model_server.main import EXIT_CANNOT_SERVE
from tests.support.iris import IrisVersions
from tests.support.model_servers import spawn_iris_server


def _run_to_exit(
    iris: IrisVersions, version: str, logs: Path, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Start a model server that is expected to give up: its exit code and its output."""
    server = spawn_iris_server(iris, version, log_dir=logs, env=env)
    return server.wait_exit(), server.output()


def test_unknown_version_exits_with_one_line_reason(iris: IrisVersions, tmp_path: Path) -> None:
    code, out = _run_to_exit(iris, "999", tmp_path)
    assert code == EXIT_CANNOT_SERVE
    reasons = [line for line in out.splitlines() if "cannot serve models:/iris/999" in line]
    assert len(reasons) == 1
    assert "not in the registry" in reasons[0]


def test_missing_artifacts_exit_with_reason(iris: IrisVersions, tmp_path: Path) -> None:
    code, out = _run_to_exit(iris, iris.broken, tmp_path)
    assert code == EXIT_CANNOT_SERVE
    assert f"cannot serve models:/iris/{iris.broken}" in out


def test_unreachable_registry_gives_up_after_the_retry_window(
    iris: IrisVersions, tmp_path: Path
) -> None:
    code, out = _run_to_exit(
        iris,
        iris.good,
        tmp_path,
        env={
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
            "MODEL_SERVER_LOAD_RETRY_SECONDS": "2",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        },
    )
    assert code == EXIT_CANNOT_SERVE
    assert "registry unreachable" in out


@pytest.mark.parametrize("version", ["latest", "Production", "0", "-1", "1.5", "@champion"])
def test_version_must_be_a_number(iris: IrisVersions, version: str, tmp_path: Path) -> None:
    code, out = _run_to_exit(iris, version, tmp_path)
    assert code == 2
    assert "MODEL_VERSION must be a registry version number" in out


def test_not_ready_while_loading(iris: IrisVersions, tmp_path: Path) -> None:
    """Readiness is 503 until the model is loaded; health is 200 as soon as the process is up."""
    server = spawn_iris_server(iris, iris.slow, log_dir=tmp_path)
    url = server.url
    try:
        saw_not_ready = False
        for _ in range(600):
            try:
                before = httpx.get(f"{url}/readyz", timeout=1)
            except httpx.HTTPError:
                continue
            health = httpx.get(f"{url}/healthz")
            predict = httpx.post(f"{url}/predict", json=[[1, 2, 3, 4]])
            ping = httpx.get(f"{url}/ping")
            ready = httpx.get(f"{url}/readyz")
            if before.status_code == 503 and ready.status_code == 503:  # loading throughout
                saw_not_ready = True
                assert health.status_code == 200
                assert predict.status_code == 503, predict.text
                # MLflow's health check, as its scoring server decides: 404 without a model.
                assert (ping.status_code, ping.text) == (404, "\n")
            if ready.status_code == 200:
                break
        assert saw_not_ready
        assert ready.status_code == 200
        assert (httpx.get(f"{url}/ping").status_code, httpx.get(f"{url}/health").status_code) == (
            200,
            200,
        )
    finally:
        server.stop()
