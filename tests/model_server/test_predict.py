"""The model server's contract, on the real app with a model loaded from a real MLflow server."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.support.iris import IrisVersions
from tests.support.models import IRIS_CLASSES, IRIS_COLUMNS, IRIS_ROWS

JSON = {"content-type": "application/json"}


def test_predict_bare_rows(served: TestClient, iris: IrisVersions) -> None:
    answer = served.post("/predict", json=IRIS_ROWS)
    assert answer.status_code == 200
    assert answer.json() == {"prediction": IRIS_CLASSES}
    assert answer.headers["x-model-name"] == "iris"
    assert answer.headers["x-model-version"] == iris.good
    assert answer.headers["x-serving-color"] == "green"


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}},
        {"dataframe_split": {"columns": IRIS_COLUMNS[::-1], "data": [r[::-1] for r in IRIS_ROWS]}},
        {"dataframe_records": [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in IRIS_ROWS]},
        {"instances": [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in IRIS_ROWS]},
        {"inputs": {c: [r[i] for r in IRIS_ROWS] for i, c in enumerate(IRIS_COLUMNS)}},
        [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in IRIS_ROWS],
    ],
    ids=["split", "split-reordered", "records", "instances", "inputs-columns", "bare-records"],
)
def test_predict_every_scoring_format(served: TestClient, payload: object) -> None:
    answer = served.post("/predict", json=payload)
    assert answer.status_code == 200, answer.text
    assert answer.json()["prediction"] == IRIS_CLASSES


def test_invocations_answers_predictions(served: TestClient) -> None:
    answer = served.post(
        "/invocations", json={"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
    )
    assert answer.status_code == 200
    assert answer.json() == {"predictions": IRIS_CLASSES}


def test_invocations_csv_goes_through_mlflow(served: TestClient) -> None:
    csv = ",".join(IRIS_COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in IRIS_ROWS)
    answer = served.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": IRIS_CLASSES}


BAD_BODIES = {
    "malformed-json": (b'{"dataframe_split": [', 400, "not valid JSON"),
    "empty-body": (b"", 400, "empty"),
    "null": (b"null", 400, "got null"),
    "a-string": (b'"hello"', 400, "got a string"),
    "a-number": (b"42", 400, "got a number"),
    "empty-list": (b"[]", 400, "no rows"),
    "empty-row": (b"[[]]", 400, "the model expects 4"),
    "wrong-width": (b"[[5.1, 3.5]]", 400, "rows have 2 values; the model expects 4"),
    "ragged-rows": (b"[[5.1, 3.5, 1.4, 0.2], [1.0]]", 400, "must all have 4 values"),
    "non-numeric": (b'[["a", 3.5, 1.4, 0.2]]', 400, "numbers only"),
    "null-value": (b"[[null, 3.5, 1.4, 0.2]]", 400, "numbers only"),
    "boolean": (b"[[true, false, true, false]]", 400, "numbers only"),
    "flat-row": (b"[5.1, 3.5, 1.4, 0.2]", 400, "list of rows"),
    "nested-too-deep": (b"[[[5.1, 3.5, 1.4, 0.2]]]", 400, "3-dimensional"),
    "huge-number": (b"[[1e400, 3.5, 1.4, 0.2]]", 400, ""),
    # Scoring-format objects are answered by MLflow's own parsing, in MLflow's words.
    "unknown-format": (b'{"rows": [[1, 2, 3, 4]]}', 400, "exactly one of the input fields"),
    "two-formats": (b'{"instances": [[1,2,3,4]], "inputs": [[1,2,3,4]]}', 400, "exactly one"),
    "wrong-columns": (
        b'{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, 3, 4]]}}',
        400,
        "Model is missing inputs",
    ),
    "split-without-data": (b'{"dataframe_split": {"columns": ["a"]}}', 400, "'data' field"),
    "records-not-objects": (b'{"dataframe_records": [[1, 2, 3, 4]]}', 400, "missing inputs"),
    "records-missing-column": (
        b'{"dataframe_records": [{"sepal length (cm)": 1}]}',
        400,
        "Model is missing inputs",
    ),
    "invalid-utf8": (b"[[\xff\xfe]]", 400, "not valid JSON"),
}


@pytest.mark.parametrize("endpoint", ["/predict", "/invocations"])
@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_input_is_a_clear_4xx(served: TestClient, endpoint: str, name: str) -> None:
    body, status, message = BAD_BODIES[name]
    answer = served.post(endpoint, content=body, headers=JSON)
    assert 400 <= answer.status_code < 500, answer.text
    if endpoint == "/predict":
        assert answer.status_code == status
        assert message in answer.json()["message"]
    assert answer.json()["error_code"]
    # the worker survived: the next good request is served
    assert served.post("/predict", json=IRIS_ROWS[:1]).status_code == 200


def test_wrong_content_type_is_415(served: TestClient) -> None:
    answer = served.post("/predict", content=b"[[1,2,3,4]]", headers={"content-type": "text/plain"})
    assert answer.status_code == 415
    assert "application/json" in answer.json()["message"]
    answer = served.post("/invocations", content=b"x", headers={"content-type": "image/png"})
    assert answer.status_code == 415


def test_over_limit_body_is_413(served: TestClient) -> None:
    big = b"[" + b",".join([b"[5.1,3.5,1.4,0.2]"] * 5000) + b"]"  # ~90 KB > 64 KiB limit
    answer = served.post("/predict", content=big, headers=JSON)
    assert answer.status_code == 413
    assert "limit" in answer.json()["message"]


def test_over_limit_chunked_body_is_413(served: TestClient) -> None:
    def chunks():  # no Content-Length: the limit must hold while streaming
        yield b"["
        for _ in range(5000):
            yield b"[5.1,3.5,1.4,0.2],"
        yield b"[5.1,3.5,1.4,0.2]]"

    answer = served.post("/predict", content=chunks(), headers=JSON)
    assert answer.status_code == 413


def test_model_info(served: TestClient, iris: IrisVersions) -> None:
    info = served.get("/model-info").json()
    assert info["model_name"] == "iris"
    assert info["version"] == iris.good
    assert info["model_uri"] == f"models:/iris/{iris.good}"
    assert info["color"] == "green"
    assert len(info["run_id"]) == 32
    assert info["loaded_at"].endswith("+00:00")
    assert info["fast_path"] is True


def test_health_and_readiness(served: TestClient) -> None:
    assert served.get("/healthz").json() == {"status": "ok"}
    assert served.get("/readyz").status_code == 200


def test_mlflow_health_and_version_endpoints(served: TestClient) -> None:
    """`mlflow models serve`'s /ping, /health and /version (compared side by side in
    tests/conformance); here: they exist on the in-process app too."""
    import mlflow

    for path in ("/ping", "/health"):
        answer = served.get(path)
        assert (answer.status_code, answer.text) == (200, "\n")
        assert served.post(path).status_code == 405
    version = served.get("/version")
    assert (version.status_code, version.text) == (200, mlflow.__version__)


def test_invocations_without_content_type_is_415_not_500(served: TestClient) -> None:
    """MLflow itself answers 500 and drops the connection here (a deliberate difference)."""
    answer = served.post("/invocations", content=b'{"inputs": [[1, 2, 3, 4]]}')
    assert answer.status_code == 415
    assert "Got ''" in answer.text
    assert served.post("/predict", json=IRIS_ROWS[:1]).status_code == 200


def test_metrics_are_labelled_with_color_and_version(
    served: TestClient, iris: IrisVersions
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = served.get("/metrics").text
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    identity = {"model": "iris", "color": "green", "version": iris.good}
    counted = (
        "bluegreen_model_requests_total",
        frozenset({**identity, "endpoint": "/predict", "status": "200"}.items()),
    )
    before = samples().get(counted, 0.0)
    served.post("/predict", json=IRIS_ROWS)
    after = samples()
    assert after[counted] == before + 1
    assert after[("bluegreen_model_load_seconds", frozenset(identity.items()))] > 0
    assert after[("bluegreen_model_ready", frozenset(identity.items()))] == 1
    assert any(name == "bluegreen_model_request_duration_seconds_count" for name, _ in after)
    assert any(name == "bluegreen_model_batch_rows_count" for name, _ in after)


def test_serving_state_needs_the_token_and_closes_keepalive(served: TestClient) -> None:
    assert served.put("/serving-state", json={"live": False}).status_code == 401
    wrong = {"authorization": "Bearer nope"}
    assert served.put("/serving-state", json={"live": False}, headers=wrong).status_code == 401
    auth = {"authorization": "Bearer s3cret-admin"}
    try:
        assert served.put("/serving-state", json={"live": False}, headers=auth).json() == {
            "live": False
        }
        assert served.post("/predict", json=IRIS_ROWS).headers["connection"] == "close"
    finally:
        served.put("/serving-state", json={"live": True}, headers=auth)
    assert "connection" not in served.post("/predict", json=IRIS_ROWS).headers


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/serving-state", b'{"live": "not a bool"}'),
        ("PUT", "/shadow/mirror", b'{"target": 7}'),
        ("PUT", "/shadow/mirror", b"{not json"),
        ("DELETE", "/shadow/mirror", b""),
        ("POST", "/shadow/compare", b"[]"),
    ],
)
def test_control_calls_without_the_token_are_refused_before_the_body_is_read(
    served: TestClient, method: str, path: str, body: bytes
) -> None:
    """A caller without the token learns nothing of what a body should hold: 401, not 422."""
    headers = {"content-type": "application/json"}
    answer = served.request(method, path, content=body, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error_code"] == "UNAUTHORIZED"
    assert "body" not in answer.text
    wrong = served.request(
        method, path, content=body, headers={**headers, "authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    # With the token the same body is judged on its merits (not a 401).
    right = served.request(
        method, path, content=body, headers={**headers, "authorization": "Bearer s3cret-admin"}
    )
    assert right.status_code != 401
