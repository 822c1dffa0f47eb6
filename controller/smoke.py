"""The smoke test of a staged color, over its own endpoint (never the live route).

Called by the engine's verify step: `/model-info` must name the target version, and
`/predict` with the version's serving input example (or a golden file) must answer 200
with one prediction per input row, the expected values when a golden file gives them,
within the latency budget. A failure here is permanent: it is never retried.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx
import orjson

from controller.domain import Golden, ResolvedVersion, input_rows
from controller.errors import BackendUnavailable, VerifyFailed

_TRIES = 3
_SETTLE_S = 3.0  # a pod just listed ready may refuse for a moment: retry connects only


class HttpSmokeTester:
    def __init__(
        self,
        *,
        latency_budget_ms: float = 500.0,
        timeout_s: float = 10.0,
        model_server_token: str | None = None,
    ) -> None:
        self._budget_ms = latency_budget_ms
        self._timeout = timeout_s
        self._token = model_server_token

    def verify(self, endpoint: str, *, target: ResolvedVersion, golden: Golden | None) -> str:
        payload, expected = _smoke_input(target, golden)
        try:
            rows = input_rows(payload)
        except ValueError as exc:
            raise VerifyFailed(f"the smoke-test input {exc}") from None
        with httpx.Client(base_url=endpoint, timeout=self._timeout) as client:
            info = _get_json(client, "/model-info")
            if str(info.get("version")) != target.version or info.get("model_name") != target.model:
                raise VerifyFailed(
                    f"{endpoint} serves {info.get('model_name')} v{info.get('version')}, "
                    f"expected {target.model} v{target.version}"
                )
            latencies = []
            for _ in range(_TRIES):
                started = time.perf_counter()
                answer = _post(client, "/predict", payload)
                latencies.append((time.perf_counter() - started) * 1000)
                predictions = _check_answer(answer, target=target, rows=rows)
        if expected is not None and not _same(predictions, expected):
            raise VerifyFailed(
                f"predictions {_short(predictions)} differ from the golden {_short(expected)}"
            )
        median_ms = statistics.median(latencies)
        if median_ms > self._budget_ms:
            raise VerifyFailed(
                f"/predict took {median_ms:.0f} ms (median of {_TRIES}), "
                f"over the {self._budget_ms:.0f} ms budget"
            )
        source = "golden file" if golden is not None else "serving input example"
        return (
            f"v{target.version}: {rows} rows from the {source}, {_TRIES}x 200, "
            f"median {median_ms:.1f} ms"
        )

    def announce(self, endpoint: str, *, live: bool) -> None:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            httpx.put(
                f"{endpoint}/serving-state", json={"live": live}, headers=headers, timeout=2.0
            ).raise_for_status()
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{endpoint}: {exc}") from None


def _smoke_input(target: ResolvedVersion, golden: Golden | None) -> tuple[Any, list[Any] | None]:
    if golden is not None:
        return golden.inputs, golden.expected
    if target.serving_input_example is None:
        raise VerifyFailed(
            f"models:/{target.model}/{target.version} has no serving input example and no golden "
            "file was given: log the model with input_example=..., or pass a golden file"
        )
    return orjson.loads(target.serving_input_example), None


def _get_json(client: httpx.Client, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + _SETTLE_S
    while True:
        try:
            answer = client.get(path)
            break
        except httpx.ConnectError as exc:  # not answered at all: the endpoint may lag
            if time.monotonic() >= deadline:
                raise VerifyFailed(f"GET {path} failed: {exc}") from None
            time.sleep(0.25)
        except httpx.HTTPError as exc:
            raise VerifyFailed(f"GET {path} failed: {exc}") from None
    if answer.status_code != 200:
        raise VerifyFailed(f"GET {path} answered {answer.status_code}: {answer.text[:200]}")
    body = answer.json()
    if not isinstance(body, dict):
        raise VerifyFailed(f"GET {path} answered {body!r}, not a JSON object")
    return body


def _post(client: httpx.Client, path: str, payload: Any) -> httpx.Response:
    try:
        return client.post(path, json=payload)
    except httpx.HTTPError as exc:
        raise VerifyFailed(f"POST {path} failed: {exc}") from None


def _check_answer(answer: httpx.Response, *, target: ResolvedVersion, rows: int) -> list[Any]:
    if answer.status_code != 200:
        raise VerifyFailed(f"/predict answered {answer.status_code}: {answer.text[:300]}")
    served = answer.headers.get("x-model-version")
    if served != target.version:
        raise VerifyFailed(f"/predict was answered by v{served}, not v{target.version}")
    predictions = answer.json().get("prediction")
    if not isinstance(predictions, list) or len(predictions) != rows:
        count = len(predictions) if isinstance(predictions, list) else "no"
        raise VerifyFailed(f"/predict returned {count} predictions for {rows} rows")
    return predictions


def _same(got: list[Any], expected: list[Any]) -> bool:
    if len(got) != len(expected):
        return False
    for a, b in zip(got, expected, strict=True):
        if isinstance(a, float) or isinstance(b, float):
            if not isinstance(a, int | float) or not isinstance(b, int | float):
                return False
            if abs(a - b) > 1e-6 * max(1.0, abs(b)):
                return False
        elif a != b:
            return False
    return True


def _short(values: list[Any]) -> str:
    text = str(values)
    return text if len(text) <= 80 else text[:77] + "..."
