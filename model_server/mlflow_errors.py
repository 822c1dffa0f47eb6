"""MLflow's scoring errors as MLflow serializes them, minus the input echo and the stack trace.

Called by `mlflow_protocol.py` for every `MlflowException` MLflow's scoring code raises.
The answer keeps MLflow's status, `error_code`, `sqlstate`, `error_class` and message;
the deliberate differences (listed in `tests/conformance/differences.py`) are only:

- no `stack_trace` field: it leaks server paths and code. When MLflow's message names no
  reason (its "unexpected error while evaluating the model"), the exception's first line
  from that trace is appended instead, so the client still learns what is wrong;
- no echo of the input: MLflow repeats the whole request body after a JSON error (and in
  the repr of a UnicodeDecodeError), and the parsed frame or array in schema and
  conversion errors. Those segments are cut out; the rest is MLflow's, word for word.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Each pattern matches one of MLflow's message templates that embeds the input; the
# replacement keeps the template's words and drops the embedded data. Lazy matches stop
# at the template's own next words.
_ECHOES: tuple[tuple[re.Pattern[str], str], ...] = (
    # scoring_server._decode_json_input: "...Error: '{ex!r}'\nInput: \n{json_input}\n"
    (re.compile(r"\nInput: \n.*\Z", re.DOTALL), ""),
    # scoring_server.invocations: "Failed to predict data '{data}'. \nError: {message}"
    (
        re.compile(r"Failed to predict data '.*?'\. \nError: ", re.DOTALL),
        "Failed to predict data. \nError: ",
    ),
    # pyfunc._validate_prediction_input: "Failed to enforce schema of data '{data}' with schema"
    (
        re.compile(r"Failed to enforce schema of data '.*?' with schema '", re.DOTALL),
        "Failed to enforce schema of data with schema '",
    ),
    # models.utils: "Failed to enforce schema of data `{data}` with dtype `...`"
    (
        re.compile(r"Failed to enforce schema of data `.*?` with dtype `", re.DOTALL),
        "Failed to enforce schema of data with dtype `",
    ),
    # models.utils: "Failed to enforce schema of '{data}' with type '{obj}'"
    (
        re.compile(r"Failed to enforce schema of '.*?' with type '", re.DOTALL),
        "Failed to enforce schema with type '",
    ),
    # proto_json_utils.convert_data_type: "...for data `{data}` with spec `{spec}`."
    (re.compile(r" for data `.*?` with spec `", re.DOTALL), " with spec `"),
    # proto_json_utils._cast_schema_type: "Failed to convert data `{input_data}` to type"
    (
        re.compile(r"Failed to convert data `.*?` to type `", re.DOTALL),
        "Failed to convert data to type `",
    ),
)


def clean_error_body(exc: Any) -> str:
    """The JSON body MLflow would answer for `exc` (an `MlflowException`), cleaned."""
    payload = json.loads(exc.serialize_as_json())
    had_trace = payload.pop("stack_trace", None) is not None
    message = without_echo(str(payload.get("message", "")), exc)
    if had_trace:
        message = _with_reason(message, exc)
    payload["message"] = message
    return json.dumps(payload)


def without_echo(message: str, exc: BaseException) -> str:
    for pattern, replacement in _ECHOES:
        message = pattern.sub(replacement, message)
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        # Its repr holds the whole undecodable body; keep the encoding, place and reason.
        message = message.replace(f", {cause.object!r}, {cause.start}", f", {cause.start}", 1)
    return message


def _with_reason(message: str, exc: BaseException) -> str:
    original = exc.__cause__ or exc.__context__
    if original is None:
        return message
    text = str(original).strip()
    first_line = text.splitlines()[0] if text else ""
    if not first_line or first_line in message:
        return message
    reason = without_echo(first_line, original)
    return f"{message} Error: {type(original).__name__}: {reason}"
