"""Sends one case to a server and compares two answers; used by the side-by-side tests.

An `Answer` is what a client sees: status, Content-Type, body (or that the connection
dropped). `same` is the comparison every case without a listed deliberate difference must
pass: equal status, equal Content-Type and byte-identical bodies, with a readable diff of
the parsed JSON (`error_code`, `message`, predictions) when they are not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conformance.cases import Case


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer (connection dropped or reset)
    content_type: str | None
    body: bytes
    failure: str | None = None

    @property
    def json(self) -> Any:
        """The parsed body (MLflow writes NaN, which `json` reads), or None."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        if self.status is None:
            return f"no answer ({self.failure})"
        return f"{self.status} {self.content_type!r} {self.body[:600]!r}"


_AS_THE_CASE_SAYS: Any = object()


def send(client: httpx.Client, case: Case, *, content_type: Any = _AS_THE_CASE_SAYS) -> Answer:
    """Send `case` as is; `content_type` overrides the case's (None: no header at all)."""
    chosen = case.content_type if content_type is _AS_THE_CASE_SAYS else content_type
    headers = {} if chosen is None else {"content-type": chosen}
    try:
        response = client.request(case.method, case.path, content=case.body, headers=headers)
    except httpx.TransportError as exc:
        return Answer(None, None, b"", failure=f"{type(exc).__name__}: {exc}")
    return Answer(response.status_code, response.headers.get("content-type"), response.content)


def same(theirs: Answer, ours: Answer) -> list[str]:
    """What differs between the two answers; empty when they are the same."""
    problems = []
    if theirs.status != ours.status:
        problems.append(f"status: mlflow {theirs.status}, ours {ours.status}")
    if theirs.content_type != ours.content_type:
        problems.append(f"content-type: mlflow {theirs.content_type!r}, ours {ours.content_type!r}")
    if theirs.body != ours.body:
        left, right = theirs.json, ours.json
        if isinstance(left, dict) and isinstance(right, dict):
            for key in sorted(set(left) | set(right)):
                if left.get(key) != right.get(key):
                    problems.append(
                        f"{key}: mlflow {left.get(key)!r:.400}, ours {right.get(key)!r:.400}"
                    )
        if not problems or left == right:
            problems.append(f"body bytes: mlflow {theirs.body[:400]!r}, ours {ours.body[:400]!r}")
    return problems
