"""JSON cases for scikit-learn models with a column signature (the fast path's models).

From `tests/pyfunc/test_scoring_server.py` (malformed JSON, not-a-dict bodies, split and
records orientations swapped, `index` longer than the data, `instances` for sklearn,
`test_parse_with_schema`'s lossy casts), `tests/utils/test_proto_json_utils.py`
(`dataframe_from_parsed_json`, `parse_tf_serving_input`: instances/inputs, records and
columnar, `signature_name`, unequal lengths) and `scoring_server.infer_and_parse_data` /
`_parse_json_data` (exactly one format key, `params`, the LLM keys).
"""

from __future__ import annotations

from tests.conformance.case import Case, columnar, dumps, records, split
from tests.support.model_kinds import IRIS_COLUMNS, REGRESSOR_COLUMNS

_PARSE = "scoring_server.infer_and_parse_data"
_TESTS = "tests/pyfunc/test_scoring_server.py"
_PROTO = "tests/utils/test_proto_json_utils.py"

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]


def _valid_forms(kind: str, names: list[str], rows: list[list[float]]) -> list[Case]:
    """Forms MLflow answers 200 for: the fast path must give byte-identical answers."""
    one = rows[:1]
    ints = [[int(v) for v in row] for row in rows]
    forms: list[tuple[str, bytes, str]] = [
        ("split one row", split(names, one), _TESTS),
        ("split rows", split(names, rows), _TESTS),
        ("split integers", split(names, ints), _PROTO),
        ("split mixed ints and floats", split(names, [ints[0][:1] + rows[0][1:]]), _PROTO),
        ("split reordered columns", split(names[::-1], [r[::-1] for r in rows]), _PARSE),
        (
            "split rotated columns",
            split(names[1:] + names[:1], [r[1:] + r[:1] for r in rows]),
            _PARSE,
        ),
        ("split with index", split(names, rows, index=list(range(len(rows)))), _TESTS),
        ("split extra column", split([*names, "extra"], [[*r, 9.0] for r in rows]), _PARSE),
        ("split exponents", split(names, [[1e-5, 2.5e2, 1e16, -3e-300][: len(names)]]), _PROTO),
        ("split negative zero", split(names, [[-0.0] * len(names)]), _PROTO),
        (
            "split huge values",
            split(names, [[1e300, -1e300, 1.7e308, 5e-324][: len(names)]]),
            _PROTO,
        ),
        ("split ints beyond 2**53", split(names, [[9007199254740993] * len(names)]), _TESTS),
        ("split ints beyond 2**63", split(names, [[2**63 + 11] * len(names)]), _PROTO),
        ("split ints beyond 2**64", split(names, [[2**64 + 7] * len(names)]), _PROTO),
        (
            "split booleans",
            split(names, [[True, False] * (len(names) // 2) + [True] * (len(names) % 2)]),
            _TESTS,
        ),
        ("split all booleans", split(names, [[True] * len(names)]), _TESTS),
        ("split rows of ints and booleans", split(names, [ints[0], [False] * len(names)]), _TESTS),
        ("split numeric strings", split(names, [[str(v) for v in rows[0]]]), _TESTS),
        ("split 200 rows", split(names, rows * 67), _TESTS),
        ("records one row", dumps({"dataframe_records": records(names, one)}), _TESTS),
        ("records rows", dumps({"dataframe_records": records(names, rows)}), _TESTS),
        (
            "records keys in other order",
            dumps(
                {
                    "dataframe_records": [
                        dict(reversed(list(r.items()))) for r in records(names, rows)
                    ]
                }
            ),
            _PROTO,
        ),
        (
            "records extra key",
            dumps({"dataframe_records": [{**r, "extra": 1} for r in records(names, one)]}),
            _PARSE,
        ),
        ("records integers", dumps({"dataframe_records": records(names, ints)}), _PROTO),
        (
            "records booleans",
            dumps({"dataframe_records": records(names, [_booleans(rows[0])])}),
            _PROTO,
        ),
        ("instances records", dumps({"instances": records(names, rows)}), _PROTO),
        ("instances booleans", dumps({"instances": records(names, [_booleans(rows[0])])}), _PROTO),
        ("instances one record object", dumps({"instances": records(names, one)[0]}), _PROTO),
        ("inputs columnar", dumps({"inputs": columnar(names, rows)}), _PROTO),
        ("inputs columnar one row", dumps({"inputs": columnar(names, one)}), _PROTO),
        (
            "inputs columnar booleans",
            dumps({"inputs": columnar(names, [_booleans(rows[0])])}),
            _PROTO,
        ),
        ("inputs columnar scalars", dumps({"inputs": records(names, one)[0]}), _PROTO),
        ("inputs records", dumps({"inputs": records(names, rows)}), _PROTO),
        (
            "split plus unknown key",
            dumps({"dataframe_split": {"columns": names, "data": one}, "x": 1}),
            _PARSE,
        ),
        (
            "split plus params",
            dumps({"dataframe_split": {"columns": names, "data": one}, "params": {"a": 1}}),
            _PARSE,
        ),
    ]
    return [Case(kind, "json-form", name, body=body, source=source) for name, body, source in forms]


def _refused_forms(kind: str, names: list[str], rows: list[list[float]]) -> list[Case]:
    """Forms MLflow refuses: ours must refuse them with MLflow's status, code and words."""
    one = rows[:1]
    width = len(names)
    forms: list[tuple[str, bytes, str]] = [
        ("split without columns", split(None, one), _TESTS),
        ("split duplicate columns", split([names[0], *names[:-1]], one), _PARSE),
        ("split missing column", split(names[:-1], [r[:-1] for r in one]), _PARSE),
        ("split wrong names", split([f"c{i}" for i in range(width)], one), _PARSE),
        ("split rows too short", split(names, [r[:-1] for r in one]), _PROTO),
        ("split rows too long", split(names, [[*r, 1.0] for r in one]), _PROTO),
        ("split ragged rows", split(names, [rows[0], rows[1][:-1]]), _PROTO),
        ("split empty data", split(names, []), _PROTO),
        ("split empty row", split(names, [[]]), _PROTO),
        ("split flat data", split(names, rows[0]), _PROTO),
        ("split 3-d data", split(names, [one]), _PROTO),
        (
            "split index longer than data",
            split(names, rows, index=list(range(len(rows) + 2))),
            _TESTS,
        ),
        ("split unknown key", split(names, one, foo=1), _PROTO),
        ("split without data", dumps({"dataframe_split": {"columns": names}}), _PROTO),
        ("split as records", dumps({"dataframe_split": records(names, one)}), _TESTS),
        ("split as string", dumps({"dataframe_split": "abc"}), _PROTO),
        (
            "split columns a string",
            dumps({"dataframe_split": {"columns": names[0], "data": one}}),
            _PROTO,
        ),
        ("split non-numeric strings", split(names, [["abc"] * width]), _TESTS),
        ("split nulls", split(names, [[None] * width]), _TESTS),
        ("split one null", split(names, [[None, *rows[0][1:]]]), _TESTS),
        ("split nested values", split(names, [[[1.0]] * width]), _PROTO),
        ("split object values", split(names, [[{"v": 1}] * width]), _PROTO),
        ("split NaN literal", _with_literal(names, one[0], b"NaN"), _PROTO),
        ("split Infinity literal", _with_literal(names, one[0], b"-Infinity"), _PROTO),
        ("records as split", dumps({"dataframe_records": {"columns": names, "data": one}}), _TESTS),
        ("records of lists", dumps({"dataframe_records": one}), _PROTO),
        ("records empty", dumps({"dataframe_records": []}), _PROTO),
        ("records missing key", dumps({"dataframe_records": [{names[0]: 1.0}]}), _PARSE),
        (
            "records with null row",
            dumps({"dataframe_records": [*records(names, one), None]}),
            _PROTO,
        ),
        (
            "records numeric strings",
            dumps({"dataframe_records": records(names, [[str(v) for v in one[0]]])}),
            _PROTO,
        ),
        ("records nulls", dumps({"dataframe_records": records(names, [[None] * width])}), _PROTO),
        ("instances tensor rows", dumps({"instances": rows}), _TESTS),
        ("instances empty", dumps({"instances": []}), _PROTO),
        ("instances scalars", dumps({"instances": rows[0]}), _PROTO),
        ("instances records missing key", dumps({"instances": [{names[0]: 1.0}]}), _PROTO),
        (
            "instances records unequal",
            dumps({"instances": [*records(names, one), {names[0]: 2.0}]}),
            _PROTO,
        ),
        (
            "instances signature_name",
            dumps({"instances": records(names, one), "signature_name": "x"}),
            _PROTO,
        ),
        ("inputs tensor rows", dumps({"inputs": rows}), _PROTO),
        (
            "inputs columnar unequal lengths",
            dumps({"inputs": {**columnar(names, rows), names[0]: [1.0]}}),
            _PROTO,
        ),
        (
            "inputs columnar missing column",
            dumps({"inputs": columnar(names[:-1], [r[:-1] for r in rows])}),
            _PROTO,
        ),
        ("inputs empty object", dumps({"inputs": {}}), _PROTO),
        ("inputs scalar", dumps({"inputs": 5.1}), _PROTO),
        ("inputs string", dumps({"inputs": "abc"}), _PROTO),
        ("inputs null", dumps({"inputs": None}), _PROTO),
        ("inputs columnar strings", dumps({"inputs": {n: ["x"] for n in names}}), _PROTO),
        ("two formats", dumps({"dataframe_records": [], "dataframe_split": {"data": []}}), _TESTS),
        ("instances and inputs", dumps({"instances": rows, "inputs": rows}), _PROTO),
        ("no known format", dumps({"not": "a serialized dataframe"}), _TESTS),
        ("empty object", dumps({}), _PARSE),
        ("only params", dumps({"params": {"a": 1}}), _PARSE),
        (
            "llm messages key",
            dumps({"messages": [{"role": "user", "content": "hi"}]}),
            "serving_data_parser",
        ),
        ("llm prompt key", dumps({"prompt": "hi"}), "serving_data_parser"),
        (
            "llm input key with split",
            dumps({"input": "x", "dataframe_split": {"columns": names, "data": one}}),
            "serving_data_parser",
        ),
        (
            "params not an object",
            dumps({"dataframe_split": {"columns": names, "data": one}, "params": [1]}),
            _PARSE,
        ),
        ("top-level list of rows", dumps(rows), _TESTS),
        ("top-level list of records", dumps(records(names, rows)), _TESTS),
        ("top-level number", b"1", _TESTS),
        ("top-level string", b'"1"', _TESTS),
        ("top-level list of one", b"[1]", _TESTS),
        ("top-level null", b"null", _PARSE),
        ("top-level true", b"true", _PARSE),
    ]
    return [Case(kind, "json-form", name, body=body, source=source) for name, body, source in forms]


def column_model_cases() -> list[Case]:
    regressor_rows = [row[:3] for row in IRIS_ROWS]
    valid_for_regressor = {
        "split one row",
        "split rows",
        "split integers",
        "split reordered columns",
        "split exponents",
        "split huge values",
        "split 200 rows",
        "records rows",
        "instances records",
        "inputs columnar",
        "split booleans",
        "split numeric strings",
    }
    refused_for_regressor = {"split without columns", "split nulls", "instances tensor rows"}
    return [
        *_valid_forms("columns", IRIS_COLUMNS, IRIS_ROWS),
        *_refused_forms("columns", IRIS_COLUMNS, IRIS_ROWS),
        *[
            c
            for c in _valid_forms("regressor", REGRESSOR_COLUMNS, regressor_rows)
            if c.name in valid_for_regressor
        ],
        *[
            c
            for c in _refused_forms("regressor", REGRESSOR_COLUMNS, regressor_rows)
            if c.name in refused_for_regressor
        ],
    ]


def _booleans(row: list[float]) -> list[object]:
    """The row with every other value a JSON boolean."""
    return [value if index % 2 else index % 4 == 0 for index, value in enumerate(row)]


def _with_literal(names: list[str], row: list[float], literal: bytes) -> bytes:
    """A split body whose first value is a bare JSON extension literal (NaN, Infinity)."""
    return split(names, [["__literal__", *row[1:]]]).replace(b'"__literal__"', literal)
