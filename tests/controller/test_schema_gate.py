"""The schema gate: a new version must accept what the live one accepts, checked at resolve."""

from __future__ import annotations

import json

import pytest

from controller.domain.signature import input_changes, parse_inputs
from controller.errors import ReleaseAborted
from tests.support.engine_fakes import World

pytestmark = pytest.mark.unit


def cols(*specs: tuple[str, str] | tuple[str, str, bool]) -> list[dict[str, object]]:
    return [
        {"name": s[0], "type": s[1], "required": s[2] if len(s) > 2 else True}  # type: ignore[misc]
        for s in specs
    ]


LIVE = cols(("sepal", "double"), ("petal", "double"), ("count", "long"))


@pytest.mark.parametrize(
    ("new", "problems"),
    [
        (LIVE, []),
        (cols(("sepal", "double"), ("petal", "double"), ("count", "double")), []),  # widened
        (
            cols(
                ("sepal", "double"), ("petal", "double"), ("count", "long"), ("x", "string", False)
            ),
            [],
        ),
        (
            cols(("sepal", "double"), ("count", "long")),
            ["column 'petal' (double) was dropped or renamed"],
        ),
        (
            cols(("sepal", "float"), ("petal", "double"), ("count", "long")),
            ["column 'sepal' narrowed from double to float"],
        ),
        (
            cols(("sepal", "double"), ("petal", "string"), ("count", "integer")),
            [
                "column 'petal' narrowed from double to string",
                "column 'count' narrowed from long to integer",
            ],
        ),
        (
            cols(("sepal", "double"), ("petal", "double"), ("count", "long"), ("x", "string")),
            ["column 'x' (string) is new and required"],
        ),
    ],
    ids=[
        "same",
        "widened",
        "optional-added",
        "dropped",
        "narrowed",
        "two-changes",
        "required-added",
    ],
)
def test_column_changes(new, problems) -> None:
    assert input_changes(LIVE, new) == problems


def test_tensor_dtype_and_shape() -> None:
    live = [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]
    same = [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]
    narrower = [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]
    assert input_changes(live, same) == []
    changes = input_changes(live, narrower)
    assert len(changes) == 2 and "dtype changed" in changes[0] and "shape changed" in changes[1]


def test_no_signature_is_nothing_to_compare() -> None:
    assert parse_inputs(None) is None and parse_inputs("not json") is None
    assert input_changes(None, LIVE) == [] and input_changes(LIVE, None) == []


def test_the_engine_refuses_before_staging_unless_allowed() -> None:
    world = World()
    world.registry.signatures = {
        "1": json.dumps(LIVE),
        "2": json.dumps(cols(("sepal", "double"), ("count", "long"))),
    }
    engine = world.engine()
    with pytest.raises(ReleaseAborted) as caught:
        engine.switch(version="2")
    op = caught.value.operation
    assert (caught.value.status_code, op["error"], op["failed_step"]) == (
        422,
        "schema_incompatible",
        "resolve",
    )
    assert "'petal'" in op["reason"] and op["retryable"] is False
    assert world.backend.pins == 0  # nothing was loaded
    assert engine.switch(version="2", allow_schema_change=True).status == "promoted"
