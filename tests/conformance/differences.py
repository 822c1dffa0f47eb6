"""The one table of deliberate differences from `mlflow models serve`, and how each is checked.

Every case whose answers differ must be listed in `DIFFERENCES` (case id → kind of
difference); a listed case must show exactly that difference, checked against MLflow's
real answer, never a hand-written one. Anything else fails the side-by-side test.

Each kind below says where MLflow misbehaves (`why`) and what ours answers instead
(`ours`); `python -m tests.conformance.differences` prints them with their case counts
(the README's list).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tests.conformance.answers import Answer

ECHO_PHRASES = (
    "Failed to predict data '",
    "Failed to enforce schema of data '",
    "Failed to enforce schema of data `",
    "Failed to enforce schema of '",
    " for data `",
    "Failed to convert data `",
)
BODY_ECHO = "\nInput: \n"
# The repr of a UnicodeDecodeError holds the undecodable bytes: the whole body.
UNICODE_ERROR_ECHO = re.compile(r"UnicodeDecodeError\('[^']*', b['\"]")


def echoes_body(message: str) -> bool:
    return BODY_ECHO in message or UNICODE_ERROR_ECHO.search(message) is not None


@dataclass(frozen=True)
class Difference:
    kind: str
    why: str
    ours: str


NO_CONTENT_TYPE = Difference(
    "no-content-type",
    "MLflow's handler calls None.split: 500 and a dropped connection",
    "MLflow's own answer to an empty Content-Type (415, text/plain)",
)
DEEP_NESTING = Difference(
    "deep-nesting",
    "json.loads raises RecursionError, which MLflow does not catch: 500",
    "400 BAD_REQUEST in MLflow's words for JSON that does not parse",
)
BODY_ECHO_DIFF = Difference(
    "body-echo",
    "MLflow repeats the whole request body in errors about undecodable bodies",
    "the same error without the body",
)
DATA_ECHO = Difference(
    "data-echo",
    "MLflow prints the parsed frame or array into schema and conversion errors",
    "the same error with the printed data cut out",
)
STACK_TRACE = Difference(
    "stack-trace",
    "MLflow sends a stack_trace (server paths and code) with CSV and model errors",
    "no stack_trace; a message without a reason gets the exception's first line",
)
OVER_LIMIT = Difference(
    "over-limit",
    "MLflow reads bodies of any size",
    "413 PAYLOAD_TOO_LARGE over MODEL_SERVER_MAX_BODY_BYTES",
)
KINDS_OF_DIFFERENCE = (
    NO_CONTENT_TYPE,
    DEEP_NESTING,
    BODY_ECHO_DIFF,
    DATA_ECHO,
    STACK_TRACE,
    OVER_LIMIT,
)

# case id -> the deliberate differences it shows (one or more of the kinds above).
DIFFERENCES: dict[str, tuple[Difference, ...]] = {
    "columns/malformed json": (BODY_ECHO_DIFF,),
    "columns/unclosed object": (BODY_ECHO_DIFF,),
    "columns/truncated body": (BODY_ECHO_DIFF,),
    "columns/trailing garbage": (BODY_ECHO_DIFF,),
    "columns/two documents": (BODY_ECHO_DIFF,),
    "columns/empty body": (BODY_ECHO_DIFF,),
    "columns/whitespace body": (BODY_ECHO_DIFF,),
    "columns/single quotes": (BODY_ECHO_DIFF,),
    "columns/trailing comma": (BODY_ECHO_DIFF,),
    "columns/comment": (BODY_ECHO_DIFF,),
    "columns/invalid utf-8": (BODY_ECHO_DIFF,),
    "columns/latin-1 column name": (BODY_ECHO_DIFF,),
    "columns/nul bytes": (BODY_ECHO_DIFF,),
    "columns/csv invalid utf-8": (BODY_ECHO_DIFF,),
    "nosig/malformed json": (BODY_ECHO_DIFF,),
    "nosig/empty body": (BODY_ECHO_DIFF,),
    "nosig/invalid utf-8": (BODY_ECHO_DIFF,),
    "columns/content-type csv-type-json-body": (DATA_ECHO,),
    "columns/split without columns": (DATA_ECHO,),
    "columns/split duplicate columns": (DATA_ECHO,),
    "columns/split missing column": (DATA_ECHO,),
    "columns/split wrong names": (DATA_ECHO,),
    "columns/records of lists": (DATA_ECHO,),
    "columns/records empty": (DATA_ECHO,),
    "columns/records missing key": (DATA_ECHO,),
    "columns/instances tensor rows": (DATA_ECHO,),
    "columns/instances empty": (DATA_ECHO,),
    "columns/instances scalars": (DATA_ECHO,),
    "columns/instances records missing key": (DATA_ECHO,),
    "columns/inputs tensor rows": (DATA_ECHO,),
    "columns/inputs columnar unequal lengths": (DATA_ECHO,),
    "columns/inputs columnar missing column": (DATA_ECHO,),
    "columns/inputs empty object": (DATA_ECHO,),
    "columns/inputs scalar": (DATA_ECHO,),
    "columns/inputs string": (DATA_ECHO,),
    "columns/inputs null": (DATA_ECHO,),
    "columns/llm messages key": (DATA_ECHO,),
    "columns/llm prompt key": (DATA_ECHO,),
    "columns/llm input key with split": (DATA_ECHO,),
    "columns/escaped unicode column name": (DATA_ECHO,),
    "columns/nested 100 deep": (DATA_ECHO,),
    "columns/csv missing column": (DATA_ECHO,),
    "columns/csv no header": (DATA_ECHO,),
    "columns/csv semicolon separated": (DATA_ECHO,),
    "columns/csv tab separated": (DATA_ECHO,),
    "columns/csv duplicate header": (DATA_ECHO,),
    "columns/csv json body": (DATA_ECHO,),
    "regressor/split without columns": (DATA_ECHO,),
    "regressor/instances tensor rows": (DATA_ECHO,),
    "tensor/inputs wrong width": (DATA_ECHO,),
    "tensor/inputs flat row": (DATA_ECHO,),
    "tensor/inputs 3-d": (DATA_ECHO,),
    "tensor/inputs empty": (DATA_ECHO,),
    "tensor/instances records": (DATA_ECHO,),
    "tensor/inputs scalar": (DATA_ECHO,),
    "params/missing column": (DATA_ECHO,),
    "params/scale not a number": (DATA_ECHO,),
    "params/scale a numeric string": (DATA_ECHO,),
    "params/suffix a number": (DATA_ECHO,),
    "params/flag a string": (DATA_ECHO,),
    "params/flag a number": (DATA_ECHO,),
    "params/ids a scalar": (DATA_ECHO,),
    "params/ids strings": (DATA_ECHO,),
    "params/ids nested": (DATA_ECHO,),
    "params/params a list": (DATA_ECHO,),
    "params/params a string": (DATA_ECHO,),
    "columns/nested 5000 deep lists": (DEEP_NESTING,),
    "columns/nested 3000 deep objects": (DEEP_NESTING,),
    "nosig/nested 5000 deep lists": (DEEP_NESTING,),
    "columns/content-type missing": (NO_CONTENT_TYPE,),
    "nosig/content-type missing": (NO_CONTENT_TYPE,),
    "columns/body over our limit": (OVER_LIMIT,),
    "columns/content-type parquet-type-json-body": (STACK_TRACE,),
    "columns/split ragged rows": (STACK_TRACE,),
    "columns/split empty data": (STACK_TRACE,),
    "columns/split nulls": (STACK_TRACE,),
    "columns/split one null": (STACK_TRACE,),
    "columns/split NaN literal": (STACK_TRACE,),
    "columns/split Infinity literal": (STACK_TRACE,),
    "columns/records nulls": (STACK_TRACE,),
    "columns/csv header only": (STACK_TRACE,),
    "columns/csv empty body": (STACK_TRACE,),
    "columns/csv whitespace body": (STACK_TRACE,),
    "columns/csv non-numeric value": (STACK_TRACE,),
    "columns/csv empty field": (STACK_TRACE,),
    "columns/csv NA field": (STACK_TRACE,),
    "columns/csv ragged row": (STACK_TRACE,),
    "regressor/split nulls": (STACK_TRACE,),
    "tensor/csv header and rows": (STACK_TRACE,),
    "tensor/csv too few columns": (STACK_TRACE,),
    "tensor/inputs nulls": (STACK_TRACE,),
    "nosig/csv empty body": (STACK_TRACE,),
    "params/csv long column with float": (STACK_TRACE,),
}


Refetch = Callable[[str | None], Answer]


def check_difference(
    expected: tuple[Difference, ...], theirs: Answer, ours: Answer, mlflow_with: Refetch
) -> list[str]:
    """What is wrong with a listed case's answers; `mlflow_with(ct)` re-asks MLflow with `ct`."""
    kinds = {d.kind for d in expected}
    if "no-content-type" in kinds:
        return _no_content_type(theirs, ours, mlflow_with(""))
    if "deep-nesting" in kinds:
        return _deep_nesting(theirs, ours)
    if "over-limit" in kinds:
        return _over_limit(theirs, ours)
    return _clean_error(kinds, theirs, ours)


def _no_content_type(theirs: Answer, ours: Answer, theirs_empty: Answer) -> list[str]:
    from tests.conformance.answers import same

    problems = []
    if theirs.status is not None and theirs.status < 500:
        problems.append(f"MLflow no longer fails without a Content-Type: {theirs.describe()}")
    return problems + [f"vs MLflow with an empty type: {p}" for p in same(theirs_empty, ours)]


def _deep_nesting(theirs: Answer, ours: Answer) -> list[str]:
    problems = []
    if theirs.status is not None and theirs.status < 500:
        problems.append(f"MLflow now answers deep nesting: {theirs.describe()}")
    body = ours.json
    if ours.status != 400 or not isinstance(body, dict) or body.get("error_code") != "BAD_REQUEST":
        problems.append(f"ours is not a 400 BAD_REQUEST: {ours.describe()}")
    elif "RecursionError" not in body.get("message", ""):
        problems.append(f"ours does not say why: {body.get('message')!r}")
    return problems


def _over_limit(theirs: Answer, ours: Answer) -> list[str]:
    body = ours.json
    if ours.status != 413 or not isinstance(body, dict):
        return [f"ours is not a 413: {ours.describe()}"]
    if body.get("error_code") != "PAYLOAD_TOO_LARGE" or "limit" not in body.get("message", ""):
        return [f"ours does not say what the limit is: {body!r}"]
    if theirs.status != 200:
        return [f"MLflow no longer takes the body: {theirs.describe()}"]
    return []


def _clean_error(kinds: set[str], theirs: Answer, ours: Answer) -> list[str]:
    """Same error as MLflow's, with only the echo and the stack trace taken out."""
    problems: list[str] = []
    left, right = theirs.json, ours.json
    if (theirs.status, theirs.content_type) != (ours.status, ours.content_type):
        problems.append(
            f"status/type: mlflow {theirs.status} {theirs.content_type!r}, "
            f"ours {ours.status} {ours.content_type!r}"
        )
    if not isinstance(left, dict) or not isinstance(right, dict):
        return [*problems, f"not JSON errors: mlflow {theirs.describe()}, ours {ours.describe()}"]
    if not 400 <= (ours.status or 0) < 500:
        problems.append(f"ours is not a 4xx: {ours.status}")
    trace = left.get("stack_trace")
    if ("stack-trace" in kinds) != (trace is not None):
        problems.append(
            f"stack-trace listed={'stack-trace' in kinds} but MLflow sent one={trace is not None}"
        )
    if "stack_trace" in right:
        problems.append("ours sends a stack_trace")
    for key in set(left) | set(right):
        if key not in ("message", "stack_trace") and left.get(key) != right.get(key):
            problems.append(f"{key}: mlflow {left.get(key)!r}, ours {right.get(key)!r}")
    theirs_message, ours_message = str(left.get("message", "")), str(right.get("message", ""))
    echoes = [p for p in ECHO_PHRASES if p in theirs_message]
    if ("data-echo" in kinds) != bool(echoes):
        problems.append(f"data-echo listed={'data-echo' in kinds} but MLflow echoes={echoes}")
    if ("body-echo" in kinds) != echoes_body(theirs_message):
        problems.append(
            f"body-echo listed={'body-echo' in kinds} but MLflow echoes the body="
            f"{echoes_body(theirs_message)}"
        )
    if any(p in ours_message for p in ECHO_PHRASES) or echoes_body(ours_message):
        problems.append(f"ours still echoes the input: {ours_message!r:.300}")
    kept, appended = _split_appended_reason(ours_message, theirs_message, trace)
    if not _is_cut_from(kept, theirs_message):
        problems.append(
            f"ours is not MLflow's message with parts cut out: ours {kept!r:.300}, "
            f"mlflow {theirs_message!r:.300}"
        )
    if appended and not (trace and appended.split(": ", 1)[-1] in trace):
        problems.append(f"ours appends {appended!r}, which is not in MLflow's stack trace")
    return problems


def _split_appended_reason(ours: str, theirs: str, trace: str | None) -> tuple[str, str]:
    """Ours may end with " Error: Type: first line" taken from the trace MLflow sent."""
    if trace and not theirs.endswith(ours) and " Error: " in ours:
        head, _, tail = ours.rpartition(" Error: ")
        if _is_cut_from(head, theirs):
            return head, tail
    return ours, ""


def _is_cut_from(short: str, long: str) -> bool:
    """`short` is `long` with some stretches deleted (a character subsequence, in order)."""
    remaining = iter(long)
    return all(char in remaining for char in short) and len(short) <= len(long)


def summary() -> str:
    """The kinds with their case counts, as the README lists them."""
    lines = []
    for difference in KINDS_OF_DIFFERENCE:
        n = sum(difference in listed for listed in DIFFERENCES.values())
        lines.append(f"- {difference.kind} ({n} cases): {difference.why}; ours: {difference.ours}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary())
