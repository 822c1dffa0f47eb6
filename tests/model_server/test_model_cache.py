"""The local model cache: a re-pin starts from it without MLflow; a stale entry is redone."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from model_server import model_cache
from model_server.mlflow_protocol import SERVING_ENVIRONMENT_VARIABLE
from tests.support.iris import IrisVersions
from tests.support.model_servers import ModelServerProcess, spawn_iris_server

SPLIT = {"dataframe_split": {"columns": [
    "sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"
], "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}  # fmt: skip
CSV = (
    "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n"
    "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"
)


def _entry(path: Path, *, fingerprint: dict[str, str], columns: list[str] | None) -> None:
    (path / model_cache.MODEL_DIR).mkdir(parents=True)
    entry = model_cache.Entry(
        model_uri="models:/m/1",
        run_id="r",
        fingerprint=fingerprint,
        runtime=model_cache.runtime(),
        columns=columns,
        serving_input_example=None,
        slow_reason=None if columns else "flavor x",
        unbatched_reason=None,
        path=path,
    )
    model_cache.write(entry, {"an": "estimator"} if columns else None)


def test_an_entry_is_used_only_for_its_fingerprint_and_runtime(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1"
    _entry(path, fingerprint={"source": "a"}, columns=["x"])
    found = model_cache.lookup(path, {"source": "a"})
    assert found is not None and found.columns == ["x"]
    assert found.load_estimator() == {"an": "estimator"}
    assert model_cache.lookup(path, {"source": "b"}) is None
    meta = json.loads((path / model_cache.META).read_text())
    meta["runtime"]["scikit-learn"] = "0.0.1"
    (path / model_cache.META).write_text(json.dumps(meta))
    assert model_cache.lookup(path, {"source": "a"}) is None


def test_a_fast_entry_without_its_estimator_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1"
    _entry(path, fingerprint={"source": "a"}, columns=["x"])
    (path / model_cache.ESTIMATOR).unlink()
    assert model_cache.lookup(path, {"source": "a"}) is None


def test_publish_replaces_a_stale_entry(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1"
    _entry(path, fingerprint={"source": "old"}, columns=None)
    staging = tmp_path / "m" / ".1.new"
    _entry(staging, fingerprint={"source": "new"}, columns=None)
    assert model_cache.publish(staging, path, {"source": "new"}) == path
    assert not staging.exists()
    assert model_cache.lookup(path, {"source": "new"}) is not None
    assert [p.name for p in path.parent.iterdir()] == ["1"]  # nothing left behind


def test_publish_keeps_a_valid_entry_another_server_may_be_reading(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1"
    _entry(path, fingerprint={"source": "a"}, columns=["x"])
    first_meta = (path / model_cache.META).stat().st_ino
    staging = tmp_path / "m" / ".1.new"
    _entry(staging, fingerprint={"source": "a"}, columns=["x"])
    assert model_cache.publish(staging, path, {"source": "a"}) == path
    assert not staging.exists()
    assert (path / model_cache.META).stat().st_ino == first_meta


def test_entries_of_different_registries_live_apart(tmp_path: Path) -> None:
    one = model_cache.entry_dir(tmp_path, "iris/x", "1", {"tracking_uri": "http://a"})
    other = model_cache.entry_dir(tmp_path, "iris/x", "1", {"tracking_uri": "http://b"})
    assert one != other and one.parent == other.parent == tmp_path / "iris%2Fx" / "1"


def test_serving_environment_variable_is_mlflows() -> None:
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT

    assert _MLFLOW_IS_IN_SERVING_ENVIRONMENT.name == SERVING_ENVIRONMENT_VARIABLE


def _serve(iris: IrisVersions, cache: Path) -> tuple[ModelServerProcess, str]:
    server = spawn_iris_server(
        iris, iris.good, log_dir=cache.parent, env={"MODEL_SERVER_CACHE_DIR": str(cache)}
    )
    try:
        server.wait_ready()
    except Exception:
        server.stop()
        raise
    return server, server.url


def _log_of(server: ModelServerProcess) -> str:
    server.stop()
    return server.output()


@pytest.mark.timeout(300)
def test_a_restart_on_the_cache_serves_without_preparing_and_loads_mlflow_on_demand(
    iris: IrisVersions, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first, url = _serve(iris, cache)
    try:
        expected = httpx.post(f"{url}/invocations", json=SPLIT).json()
    finally:
        first_log = _log_of(first)
    assert "model cache hit" not in first_log
    assert len(list((cache / iris.model / iris.good).glob(f"*/{model_cache.META}"))) == 1

    second, url = _serve(iris, cache)
    try:
        info = httpx.get(f"{url}/model-info").json()
        assert info["fast_path"] is True
        assert info["mlflow_scoring_loaded"] is False  # the fast path needs none of MLflow
        assert httpx.post(f"{url}/invocations", json=SPLIT).json() == expected
        assert httpx.get(f"{url}/model-info").json()["mlflow_scoring_loaded"] is False
        # CSV is MLflow's to answer: its scoring code loads on this first use.
        answer = httpx.post(
            f"{url}/invocations", content=CSV, headers={"Content-Type": "text/csv"}, timeout=120
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == expected
        assert httpx.get(f"{url}/model-info").json()["mlflow_scoring_loaded"] is True
    finally:
        second_log = _log_of(second)
    assert "model cache hit" in second_log


@pytest.mark.timeout(300)
def test_a_stale_entry_is_prepared_again(iris: IrisVersions, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, _ = _serve(iris, cache)
    _log_of(first)
    [meta] = (cache / iris.model / iris.good).glob(f"*/{model_cache.META}")
    stale = json.loads(meta.read_text())
    stale["fingerprint"]["created"] = "0"  # as if the version had been deleted and re-made
    meta.write_text(json.dumps(stale))
    second, url = _serve(iris, cache)
    try:
        assert httpx.post(f"{url}/invocations", json=SPLIT).status_code == 200
    finally:
        log = _log_of(second)
    assert "model cache hit" not in log
    assert json.loads(meta.read_text())["fingerprint"]["created"] != "0"


def test_a_server_built_from_a_settings_object_prepares_into_an_empty_cache(
    iris: IrisVersions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preparing child reads the settings the app was given, not only our environment,
    and a token file (the chart's way) does not reach it as a second token."""
    from fastapi.testclient import TestClient

    from model_server.app import create_app
    from tests.model_server.conftest import settings_for, wait_ready

    for name in ("MODEL_NAME", "MODEL_VERSION", "MLFLOW_TRACKING_URI", "MODEL_SERVER_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "cache"
    token_file = tmp_path / "admin-token"  # as the chart mounts it
    token_file.write_text("s3cret-admin\n")
    app = create_app(
        settings_for(
            iris,
            iris.good,
            MODEL_SERVER_CACHE_DIR=str(cache),
            MODEL_SERVER_ADMIN_TOKEN_FILE=str(token_file),
        )
    )
    with TestClient(app) as client:
        wait_ready(client)
        assert client.post("/invocations", json=SPLIT).status_code == 200
    assert len(list((cache / iris.model / iris.good).glob(f"*/{model_cache.META}"))) == 1
