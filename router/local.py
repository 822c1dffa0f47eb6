"""`TrafficRouter` over the local router's admin API (used by the controller on one machine)."""

from __future__ import annotations

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from controller.errors import RouteConflict, RouterUnavailable
from controller.model import Color, Route

_retry_unavailable = retry(
    retry=retry_if_exception_type(RouterUnavailable),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.1, max=1),
    reraise=True,
)


class LocalProxyRouter:
    def __init__(self, *, url: str, token: str | None, timeout_s: float = 2.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=url, headers=headers, timeout=timeout_s)

    @_retry_unavailable
    def current(self) -> Route:
        answer = self._call("GET", "/_bluegreen/route")
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

    def _call(self, method: str, path: str, **kwargs: object) -> dict[str, str]:
        try:
            answer = self._client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise RouterUnavailable(f"router unreachable: {exc}") from None
        if answer.status_code == 409:
            raise RouteConflict(answer.json().get("detail", "route changed meanwhile"))
        if answer.status_code != 200:
            raise RouterUnavailable(f"router answered {answer.status_code}: {answer.text[:200]}")
        return answer.json()
