"""Every case sent to `mlflow models serve` and to ours: the same answer, or a listed difference.

The answers are compared as a client sees them (status, Content-Type, body bytes; JSON
fields in the failure message). A case listed in `differences.DIFFERENCES` must show
exactly the listed difference against MLflow's real answer; an unlisted difference fails,
and so does a listed one that no longer shows. Each JSON case MLflow answers 200 is sent
to our `/predict` as well, which must answer the same predictions under `prediction`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance.answers import Answer, same, send
from tests.conformance.case import Case
from tests.conformance.cases import ALL_CASES
from tests.conformance.differences import DIFFERENCES, Difference, check_difference
from tests.conformance.servers import ServerPair


@pytest.mark.parametrize("case", ALL_CASES, ids=[case.id for case in ALL_CASES])
def test_same_answer_as_mlflow_models_serve(
    case: Case, server_pairs: Callable[[str], ServerPair]
) -> None:
    pair = server_pairs(case.kind)
    theirs = send(pair.client("theirs"), case)
    ours = send(pair.client("ours"), case)
    listed = DIFFERENCES.get(case.id)
    if listed is not None:
        _check_listed_difference(pair, case, listed, theirs, ours)
        return
    problems = same(theirs, ours)
    assert not problems, f"{case.id}: unexplained difference\n  " + "\n  ".join(problems)
    if case.is_json_scoring and theirs.status == 200 and isinstance(theirs.json, dict):
        _check_predict_endpoint(pair, case, theirs)


def _check_listed_difference(
    pair: ServerPair, case: Case, listed: tuple[Difference, ...], theirs: Answer, ours: Answer
) -> None:
    def mlflow_with(content_type: str | None) -> Answer:
        return send(pair.client("theirs"), case, content_type=content_type)

    problems = check_difference(listed, theirs, ours, mlflow_with)
    kinds = ", ".join(d.kind for d in listed)
    assert not problems, f"{case.id}: listed as {kinds}, but\n  " + "\n  ".join(problems)


def _check_predict_endpoint(pair: ServerPair, case: Case, theirs: Answer) -> None:
    response = pair.client("ours").post(
        "/predict", content=case.body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, f"/predict refused {case.id}: {response.text[:300]}"
    predictions = theirs.json.get("predictions", theirs.json)
    # /predict answers strict JSON: a missing value MLflow writes as NaN is null there.
    assert response.json() == {"prediction": _nan_as_none(predictions)}


def _nan_as_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_nan_as_none(item) for item in value]
    if isinstance(value, dict):
        return {key: _nan_as_none(item) for key, item in value.items()}
    return value
