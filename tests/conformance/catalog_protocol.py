"""Cases for the protocol around the body: health and meta endpoints, Content-Type negotiation.

From `mlflow/pyfunc/scoring_server/__init__.py` (`init`: `/ping`, `/health`, `/version`,
`/invocations`; `invocations`: the `charset` and parameter checks, the three supported
types) and `tests/pyfunc/test_scoring_server.py` (`..._with_unsupported_content_type_code`,
`..._with_unrecognized_content_param`, the `charset=UTF-8` variants, `test_scoring_server_client`).
"""

from __future__ import annotations

from tests.conformance.case import CSV, JSON, Case, split
from tests.support.model_kinds import IRIS_COLUMNS, KINDS

_SERVER = "scoring_server.init"
_NEGOTIATION = "scoring_server.invocations (content type)"


# (method, path) every kind is asked: MLflow's endpoints, then wrong methods and paths.
_EVERY_KIND = [
    ("GET", "/ping"),
    ("GET", "/health"),
    ("GET", "/version"),
    ("POST", "/ping"),
    ("HEAD", "/ping"),
    ("DELETE", "/ping"),
    ("POST", "/health"),
    ("PUT", "/version"),
    ("GET", "/invocations"),
    ("PUT", "/invocations"),
    ("GET", "/no-such-path"),
]
# More wrong methods and paths, asked of one kind.
_ONE_KIND = [
    ("OPTIONS", "/ping"),
    ("PATCH", "/invocations"),
    ("GET", "/ping?x=1"),
    ("DELETE", "/invocations"),
    ("POST", "/no-such-path"),
]


def meta_cases() -> list[Case]:
    """Every kind: MLflow's endpoints and FastAPI's answers to wrong methods and paths."""
    asked = [(kind, m, p) for kind in KINDS for m, p in _EVERY_KIND]
    asked += [("columns", m, p) for m, p in _ONE_KIND]
    return [
        Case(
            kind,
            "meta",
            f"{method} {path}",
            method=method,
            path=path,
            content_type=None,
            source=_SERVER,
        )
        for kind, method, path in asked
    ]


# (name, Content-Type header) on a valid iris body.
_CONTENT_TYPES = [
    ("json", JSON),
    ("json-charset-utf-8", "application/json; charset=utf-8"),
    ("json-charset-UTF-8", "application/json; charset=UTF-8"),
    ("json-charset-no-space", "application/json;charset=utf-8"),
    ("json-charset-spaces", "application/json ;  charset=utf-8 "),
    ("json-leading-space", " application/json"),
    ("json-trailing-space", "application/json "),
    ("json-charset-utf8", "application/json; charset=utf8"),
    ("json-charset-latin-1", "application/json; charset=latin-1"),
    ("json-charset-utf-16", "application/json; charset=utf-16"),
    ("json-charset-quoted", 'application/json; charset="utf-8"'),
    ("json-format-pandas-split", "application/json; format=pandas-split"),
    ("json-format-pandas-records", "application/json; format=pandas-records"),
    ("json-unknown-param", "application/json; something=something"),
    ("json-charset-and-format", "application/json; charset=utf-8; format=pandas-split"),
    ("json-trailing-semicolon", "application/json;"),
    ("json-charset-trailing-semicolon", "application/json; charset=utf-8;"),
    ("json-param-without-value", "application/json; charset"),
    ("json-upper-case", "Application/JSON"),
    ("json-all-caps", "APPLICATION/JSON"),
    ("json-suffix-type", "application/vnd.api+json"),
    ("x-json", "application/x-json"),
    ("text-json", "text/json"),
    ("text-plain", "text/plain"),
    ("form-urlencoded", "application/x-www-form-urlencoded"),
    ("octet-stream", "application/octet-stream"),
    ("wildcard", "*/*"),
    ("two-types", "application/json, text/csv"),
    ("not-a-type", "not_a_supported_content_type"),
    ("empty", ""),
    ("missing", None),
    ("csv-type-json-body", CSV),
    ("parquet-type-json-body", "application/vnd.apache.parquet"),
]


def content_type_cases() -> list[Case]:
    body = split(IRIS_COLUMNS, [[5.1, 3.5, 1.4, 0.2]])
    cases = [
        Case(
            "columns",
            "content-type",
            f"content-type {name}",
            body=body,
            content_type=header,
            source=_NEGOTIATION,
        )
        for name, header in _CONTENT_TYPES
    ]
    csv_body = ",".join(IRIS_COLUMNS).encode() + b"\n5.1,3.5,1.4,0.2\n"
    for name, header in [
        ("csv-charset-utf-8", "text/csv; charset=utf-8"),
        ("csv-charset-latin-1", "text/csv; charset=latin-1"),
        ("csv-header-param", "text/csv; header=present"),
        ("csv-upper-case", "Text/CSV"),
    ]:
        cases.append(
            Case(
                "columns",
                "content-type",
                f"content-type {name}",
                body=csv_body,
                content_type=header,
                source=_NEGOTIATION,
            )
        )
    # The same negotiation in front of MLflow's pyfunc path (no fast path involved).
    nosig_body = split(["a"], [[1]])
    for name, header in [
        ("json", JSON),
        ("json-charset-latin-1", "application/json; charset=latin-1"),
        ("json-unknown-param", "application/json; format=pandas-split"),
        ("text-plain", "text/plain"),
        ("empty", ""),
        ("missing", None),
    ]:
        cases.append(
            Case(
                "nosig",
                "content-type",
                f"content-type {name}",
                body=nosig_body,
                content_type=header,
                source=_NEGOTIATION,
            )
        )
    return cases
