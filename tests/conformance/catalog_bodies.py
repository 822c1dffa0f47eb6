"""Cases for bodies that are not clean JSON, for CSV, and for the body-size limit.

From `tests/pyfunc/test_scoring_server.py` (`..._malformed_json_input...`,
`..._invalid_csv_input_with_stacktrace...`: the empty CSV, `test_parse_with_schema_csv`) and
`scoring_server._decode_json_input` (UnicodeDecodeError, `json.loads` on bytes, which also
reads UTF-16/32 and a BOM), `parse_csv_input` (`pd.read_csv` with the signature's dtypes) and
`invocations` (UTF-8 decoding of CSV).
"""

from __future__ import annotations

from tests.conformance.case import CSV, Case, dumps, split
from tests.conformance.catalog_columns import IRIS_ROWS
from tests.support.model_kinds import IRIS_COLUMNS

_DECODE = "scoring_server._decode_json_input"
_CSV = "scoring_server.parse_csv_input"
_TESTS = "tests/pyfunc/test_scoring_server.py"


def json_syntax_cases() -> list[Case]:
    good = split(IRIS_COLUMNS, IRIS_ROWS[:1])
    bodies: list[tuple[str, bytes, str]] = [
        ("malformed json", b"this is,,,, not valid json", _TESTS),
        ("unclosed object", b"{oops", _DECODE),
        ("truncated body", good[:-5], _DECODE),
        ("trailing garbage", good + b" x", _DECODE),
        ("two documents", good + good, _DECODE),
        ("empty body", b"", _DECODE),
        ("whitespace body", b"  \n\t ", _DECODE),
        ("single quotes", good.replace(b'"', b"'"), _DECODE),
        ("trailing comma", good[:-2] + b",}}", _DECODE),
        ("comment", b"/* rows */ " + good, _DECODE),
        ("utf-8 bom", b"\xef\xbb\xbf" + good, _DECODE),
        ("utf-16 with bom", good.decode().encode("utf-16"), _DECODE),
        ("utf-16-le without bom", good.decode().encode("utf-16-le"), _DECODE),
        ("utf-32", good.decode().encode("utf-32"), _DECODE),
        (
            "invalid utf-8",
            b'{"dataframe_split": {"columns": ["\xff\xfe"], "data": [[1]]}}',
            _DECODE,
        ),
        ("latin-1 column name", split(["caf\u00e9"], [[1]]).replace(b"\\u00e9", b"\xe9"), _DECODE),
        (
            "escaped unicode column name",
            split(["caf\u00e9", *IRIS_COLUMNS[1:]], IRIS_ROWS[:1]),
            _DECODE,
        ),
        ("nul bytes", b"\x00" * 16, _DECODE),
        ("top-level NaN", b"NaN", _DECODE),
        (
            "duplicate keys",
            b'{"dataframe_split": {"columns": ["x"], "data": [[1]]}, '
            b'"dataframe_split": ' + good[len(b'{"dataframe_split": ') :],
            _DECODE,
        ),
        ("nested 100 deep", dumps({"inputs": [[[[[[[[[[1]]]]]]]]]] * 10}), _DECODE),
        ("nested 5000 deep lists", b"[" * 5000 + b"]" * 5000, _DECODE),
        ("nested 3000 deep objects", b'{"a":' * 3000 + b"1" + b"}" * 3000, _DECODE),
    ]
    cases = [
        Case("columns", "json-syntax", name, body=body, source=source)
        for name, body, source in bodies
    ]
    for name in (
        "malformed json",
        "empty body",
        "invalid utf-8",
        "utf-16 with bom",
        "nested 5000 deep lists",
    ):
        body = next(b for n, b, _ in bodies if n == name)
        cases.append(Case("nosig", "json-syntax", name, body=body, source=_DECODE))
    return cases


def _csv(*lines: str, end: str = "\n") -> bytes:
    return end.join(lines).encode() + end.encode()


def csv_cases() -> list[Case]:
    header = ",".join(IRIS_COLUMNS)
    rows = [",".join(str(v) for v in row) for row in IRIS_ROWS]
    quoted = ",".join(f'"{c}"' for c in IRIS_COLUMNS)
    bodies: list[tuple[str, bytes]] = [
        ("header and one row", _csv(header, rows[0])),
        ("header and rows", _csv(header, *rows)),
        ("pandas to_csv with index", _csv("," + header, *[f"{i},{r}" for i, r in enumerate(rows)])),
        (
            "reordered columns",
            _csv(
                ",".join(IRIS_COLUMNS[::-1]),
                *[",".join(str(v) for v in row[::-1]) for row in IRIS_ROWS],
            ),
        ),
        ("extra column", _csv(header + ",extra", *[r + ",1" for r in rows])),
        ("missing column", _csv(",".join(IRIS_COLUMNS[:3]), *[r.rsplit(",", 1)[0] for r in rows])),
        ("no header", _csv(*rows)),
        (
            "quoted header and values",
            _csv(quoted, *[",".join(f'"{v}"' for v in r.split(",")) for r in rows]),
        ),
        ("crlf line ends", _csv(header, *rows, end="\r\n")),
        ("no final newline", _csv(header, *rows)[:-1]),
        ("header only", _csv(header)),
        ("empty body", b""),
        ("whitespace body", b"   \n  \n"),
        ("blank lines between rows", _csv(header, rows[0], "", rows[1])),
        ("non-numeric value", _csv(header, "x,3.5,1.4,0.2")),
        ("empty field", _csv(header, ",3.5,1.4,0.2")),
        ("NA field", _csv(header, "NA,3.5,1.4,0.2")),
        ("integers", _csv(header, "5,3,1,0")),
        ("scientific notation", _csv(header, "5.1e0,3.5E0,1.4e-0,2e-1")),
        ("spaces around values", _csv(header, " 5.1 , 3.5 ,1.4,0.2")),
        ("semicolon separated", _csv(";".join(IRIS_COLUMNS), rows[0].replace(",", ";"))),
        ("tab separated", _csv("\t".join(IRIS_COLUMNS), rows[0].replace(",", "\t"))),
        ("ragged row", _csv(header, rows[0], "1.0,2.0")),
        ("too many fields", _csv(header, rows[0] + ",9,9")),
        ("duplicate header", _csv(",".join([IRIS_COLUMNS[0], *IRIS_COLUMNS[:3]]), rows[0])),
        ("utf-8 bom", b"\xef\xbb\xbf" + _csv(header, rows[0])),
        ("invalid utf-8", _csv(header, rows[0]) + b"\xff\xfe\n"),
        ("300 rows", _csv(header, *(rows * 100))),
        ("json body", split(IRIS_COLUMNS, IRIS_ROWS[:1])),
    ]
    cases = [
        Case("columns", "csv", f"csv {name}", body=body, content_type=CSV, source=_CSV)
        for name, body in bodies
    ]
    # (kind, name, source, body): CSV for the other model kinds.
    others = [
        (
            "nosig",
            "mixed types",
            _TESTS,
            _csv("zip,cost,count,flag", "95120,10.45,-8,true", "95128,23.0,-1,false"),
        ),
        ("nosig", "empty field", _CSV, _csv("a,b", "1,", ",x")),
        ("nosig", "empty body", _TESTS, b""),
        ("tensor", "header and rows", _CSV, _csv("a,b,c,d", *rows)),
        ("tensor", "too few columns", _CSV, _csv("a,b", "1,2")),
        ("params", "typed columns", _TESTS, _csv("x,n,label", "1.5,1,a", "2,2,007")),
        ("params", "long column with float", _CSV, _csv("x,n,label", "1.5,1.5,a")),
    ]
    cases += [
        Case(kind, "csv", f"csv {name}", content_type=CSV, source=source, body=body)
        for kind, name, source, body in others
    ]
    return cases


def limit_cases() -> list[Case]:
    from tests.conformance.servers import OURS_MAX_BODY_BYTES

    rows = IRIS_ROWS * (OURS_MAX_BODY_BYTES // 60)
    body = split(IRIS_COLUMNS, rows)
    assert len(body) > OURS_MAX_BODY_BYTES
    return [Case("columns", "limits", "body over our limit", body=body, source="ours")]
