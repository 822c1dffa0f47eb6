"""A small client of the controller API, used by the CLI, the demo and the tests."""

from __future__ import annotations

from typing import Any

import httpx

from plumbing.auth import bearer_header


class ControllerError(Exception):
    """The controller answered an error: its `error`, `detail` and any operation record."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('error', 'error')}: {body.get('detail', '')}")
        self.status = status
        self.body = body


class ControllerClient:
    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 600.0) -> None:
        self._http = httpx.Client(base_url=url, headers=bearer_header(token), timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def status(self) -> dict[str, Any]:
        return _object(self._call("GET", "/status"))

    def switch(
        self,
        *,
        version: str | None = None,
        alias: str | None = None,
        wait: bool = True,
        **analysis: Any,
    ) -> dict[str, Any]:
        """`analysis`: `shadow_s`, `min_agreement`, `bake_s`, `analysis` (thresholds), `pause`."""
        body: dict[str, Any] = {"version": version} if version is not None else {"alias": alias}
        body.update({k: v for k, v in analysis.items() if v is not None})
        return _object(self._call("POST", "/switch", json=body, params={"wait": str(wait).lower()}))

    def rollback(self, *, version: str | None = None) -> dict[str, Any]:
        body = {"version": version} if version is not None else None
        return _object(self._call("POST", "/rollback", json=body))

    def promote(self, *, wait: bool = True) -> dict[str, Any]:
        return _object(self._call("POST", "/promote", params={"wait": str(wait).lower()}))

    def abort(self) -> dict[str, Any]:
        return _object(self._call("POST", "/abort"))

    def operation(self, operation_id: str) -> dict[str, Any]:
        return _object(self._call("GET", f"/operations/{operation_id}"))

    def history(self, limit: int = 20) -> list[dict[str, Any]]:
        answer = self._call("GET", "/history", params={"limit": limit})
        if not isinstance(answer, list):
            raise ControllerError(200, {"error": "bad_answer", "detail": "history is not a list"})
        return [_object(item) for item in answer]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self._http.request(method, path, **kwargs)
        if answer.status_code >= 400:
            try:
                body = answer.json()
            except ValueError:
                body = {"error": "http_error", "detail": answer.text[:300]}
            raise ControllerError(answer.status_code, body)
        return answer.json()


def _object(value: Any) -> dict[str, Any]:
    """A JSON object from the controller; anything else is a broken answer."""
    if not isinstance(value, dict):
        raise ControllerError(200, {"error": "bad_answer", "detail": f"not an object: {value!r}"})
    return value
