"""JSON cases for the models MLflow's pyfunc path serves: tensor signature, no signature, params.

From `tests/utils/test_proto_json_utils.py` (`parse_tf_serving_input` with and without a
schema: row and columnar instances, inputs of lists, scalars, mixed types; unequal
lengths), `tests/pyfunc/test_scoring_server.py` (`test_split_oriented_json_to_df`,
`test_records_oriented_json_to_df`: zip codes stay strings; `test_serving_model_with_schema`;
`test_serving_model_with_param_schema`: defaults, bad values 400, unknown params ignored)
and `pyfunc._validate_prediction_input` / `_enforce_params_schema`.
"""

from __future__ import annotations

from typing import Any

from tests.conformance.case import Case, columnar, dumps, records, split
from tests.conformance.catalog_columns import IRIS_ROWS

_PROTO = "tests/utils/test_proto_json_utils.py"
_TESTS = "tests/pyfunc/test_scoring_server.py"
_ENFORCE = "pyfunc._validate_prediction_input"


def tensor_cases() -> list[Case]:
    forms: list[tuple[str, Any]] = [
        ("instances rows", {"instances": IRIS_ROWS}),
        ("inputs rows", {"inputs": IRIS_ROWS}),
        ("inputs one row", {"inputs": IRIS_ROWS[:1]}),
        ("inputs integers", {"inputs": [[5, 3, 1, 0]]}),
        ("inputs numeric strings", {"inputs": [["5.1", "3.5", "1.4", "0.2"]]}),
        ("inputs booleans", {"inputs": [[True, False, True, False]]}),
        ("split without columns", {"dataframe_split": {"data": IRIS_ROWS}}),
        ("split with columns", {"dataframe_split": {"columns": list("abcd"), "data": IRIS_ROWS}}),
        ("records", {"dataframe_records": records(list("abcd"), IRIS_ROWS)}),
        ("inputs wrong width", {"inputs": [[5.1, 3.5]]}),
        ("inputs flat row", {"inputs": IRIS_ROWS[0]}),
        ("inputs 3-d", {"inputs": [IRIS_ROWS]}),
        ("inputs strings", {"inputs": [["a", "b", "c", "d"]]}),
        ("inputs nulls", {"inputs": [[None, 1.0, 1.0, 1.0]]}),
        ("inputs empty", {"inputs": []}),
        ("inputs object", {"inputs": {"a": [1.0]}}),
        ("instances records", {"instances": records(list("abcd"), IRIS_ROWS)}),
        ("instances ragged", {"instances": [IRIS_ROWS[0], IRIS_ROWS[1][:2]]}),
        ("inputs scalar", {"inputs": 1.0}),
    ]
    return [
        Case("tensor", "json-form", name, body=dumps(payload), source=_PROTO)
        for name, payload in forms
    ]


def nosig_cases() -> list[Case]:
    zips = [["95120", 10.45, -8], ["95128", 23.0, -1], ["95128", 12.1, 1000]]
    forms: list[tuple[str, bytes, str]] = [
        (
            "split zip codes stay strings",
            split(["zip", "cost", "count"], zips, index=[0, 1, 2]),
            _TESTS,
        ),
        (
            "records zip codes stay strings",
            dumps({"dataframe_records": records(["zip", "cost", "score"], zips)}),
            _TESTS,
        ),
        ("split without columns", split(None, [[1, "a"], [2, "b"]]), _PROTO),
        ("split mixed column", split(["v"], [[1], ["a"], [None], [True], [1.5]]), _PROTO),
        ("split booleans and nulls", split(["b", "n"], [[True, None], [False, 1]]), _PROTO),
        (
            "split unicode strings",
            split(["s"], [["caf\u00e9"], ["\u65e5\u672c"], ["\U0001f600"]]),
            _PROTO,
        ),
        ("split datetime strings", split(["t"], [["2021-01-01 00:00:00"], ["2021-02-02"]]), _TESTS),
        ("split big integers", split(["i"], [[2**62], [2**63 + 1], [-(2**63)]]), _TESTS),
        ("split nested lists", split(["l"], [[[1, 2]], [[3]]]), _PROTO),
        ("records missing keys", dumps({"dataframe_records": [{"a": 1}, {"b": "x"}]}), _PROTO),
        ("records nested objects", dumps({"dataframe_records": [{"a": {"b": 1}}]}), _PROTO),
        ("instances list of lists", dumps({"instances": [[1, 2], [3, 4]]}), _PROTO),
        (
            "instances records",
            dumps({"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}),
            _PROTO,
        ),
        ("instances records unequal", dumps({"instances": [{"a": 1, "b": 2}, {"a": 3}]}), _PROTO),
        ("instances one object", dumps({"instances": {"a": [1, 2], "b": [3]}}), _PROTO),
        ("instances strings", dumps({"instances": ["a", "b"]}), _PROTO),
        ("inputs list of lists", dumps({"inputs": [[1, 2], [3, 4]]}), _PROTO),
        ("inputs ragged lists", dumps({"inputs": [[1, 2], [3]]}), _PROTO),
        ("inputs columnar", dumps({"inputs": {"a": [1, 2], "b": ["x", "y"]}}), _PROTO),
        ("inputs scalar", dumps({"inputs": 3}), _PROTO),
        ("inputs string", dumps({"inputs": "hello"}), _PROTO),
        ("inputs null", dumps({"inputs": None}), _PROTO),
        ("inputs nested object", dumps({"inputs": {"a": {"b": [1]}}}), _PROTO),
        (
            "params without a params schema",
            dumps({"inputs": [[1]], "params": {"p": 1}}),
            "pyfunc._validate_params",
        ),
        ("split empty data", split(["a"], []), _PROTO),
    ]
    return [
        Case("nosig", "json-form", name, body=body, source=source) for name, body, source in forms
    ]


def params_cases() -> list[Case]:
    rows = [[1.5, 1, "a"], [2.0, 2, "b"]]
    names = ["x", "n", "label"]
    frame = {"columns": names, "data": rows}

    def with_params(params: Any, **form: Any) -> bytes:
        payload = form or {"dataframe_split": frame}
        return dumps({**payload, "params": params})

    forms: list[tuple[str, str, bytes]] = [
        ("json-form", "no params", dumps({"dataframe_split": frame})),
        ("json-form", "records", dumps({"dataframe_records": records(names, rows)})),
        ("json-form", "instances records", dumps({"instances": records(names, rows)})),
        ("json-form", "inputs columnar", dumps({"inputs": columnar(names, rows)})),
        ("json-form", "long column given floats", split(names, [[1.5, 1.0, "a"]])),
        ("json-form", "long column given a fraction", split(names, [[1.5, 1.5, "a"]])),
        ("json-form", "long column given strings", split(names, [[1.5, "3", "a"]])),
        ("json-form", "double column given strings", split(names, [["1.5", 1, "a"]])),
        ("json-form", "string column given numbers", split(names, [[1.5, 1, 7]])),
        ("json-form", "string column given null", split(names, [[1.5, 1, None]])),
        ("json-form", "missing column", split(names[:2], [r[:2] for r in rows])),
        ("json-form", "extra column", split([*names, "z"], [[*r, 0] for r in rows])),
        (
            "params",
            "all params",
            with_params({"scale": 2.0, "suffix": "!", "flag": True, "ids": [3]}),
        ),
        ("params", "some params", with_params({"scale": 3})),
        ("params", "empty params", with_params({})),
        ("params", "null params", with_params(None)),
        ("params", "unknown param ignored", with_params({"invalid_param": "value"})),
        ("params", "scale not a number", with_params({"scale": "invalid_value1"})),
        ("params", "scale a numeric string", with_params({"scale": "2.5"})),
        ("params", "suffix a number", with_params({"suffix": 5})),
        ("params", "flag a string", with_params({"flag": "true"})),
        ("params", "flag a number", with_params({"flag": 1})),
        ("params", "ids a scalar", with_params({"ids": 3})),
        ("params", "ids strings", with_params({"ids": ["a"]})),
        ("params", "ids nested", with_params({"ids": [[1]]})),
        ("params", "params a list", with_params([1, 2])),
        ("params", "params a string", with_params("scale=2")),
        (
            "params",
            "params with records",
            with_params({"scale": 2.0}, dataframe_records=records(names, rows)),
        ),
        (
            "params",
            "params with inputs",
            with_params({"suffix": "?"}, inputs=columnar(names, rows)),
        ),
    ]
    source = {"json-form": _ENFORCE, "params": _TESTS}
    return [
        Case("params", klass, name, body=body, source=source[klass]) for klass, name, body in forms
    ]
