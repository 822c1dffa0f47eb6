"""`TrafficRouter` over the local router's admin API (the controller's side of the flip)."""

from __future__ import annotations

from typing import Any

import httpx

from controller.domain import Color, Route
from controller.errors import RouteConflict, RouterUnavailable
from plumbing.auth import bearer_header
from plumbing.retry import retry_transient


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, RouterUnavailable)


class LocalProxyRouter:
    def __init__(self, *, url: str, token: str | None, timeout_s: float = 2.0) -> None:
        self._client = httpx.Client(base_url=url, headers=bearer_header(token), timeout=timeout_s)

    def current(self) -> Route:
        answer = retry_transient(_unavailable, attempts=4, first_wait_s=0.1, max_wait_s=1.0)(
            self._call, "GET", "/_bluegreen/route"
        )
        return Route(color=answer["color"], revision=answer["revision"])

    def switch(self, *, to: Color, expected_revision: str) -> Route:
        # Not retried blindly: a lost answer after a successful flip would turn a retry
        # into a conflict, so re-read and decide instead.
        try:
            answer = self._call(
                "PUT",
                "/_bluegreen/route",
                json={"color": to, "expected_revision": expected_revision},
            )
        except RouterUnavailable:
            now = self.current()
            if now.color == to:
                return now
            raise
        return Route(color=answer["color"], revision=answer["revision"])

    def _call(self, method: str, path: str, json: Any = None) -> dict[str, str]:
        try:
            answer = self._client.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise RouterUnavailable(f"router unreachable: {exc}") from None
        if answer.status_code == 409:
            raise RouteConflict(answer.json().get("detail", "route changed meanwhile"))
        if answer.status_code != 200:
            raise RouterUnavailable(f"router answered {answer.status_code}: {answer.text[:200]}")
        body: dict[str, str] = answer.json()
        return body
