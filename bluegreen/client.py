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


class ControllerUnreachable(ControllerError):
    """No answer from the controller at all: nothing listens there, or it hung up."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            0,
            {
                "error": "controller_unreachable",
                "detail": f"no controller answers at {url} ({problem}); start the local stack "
                "with `bluegreen up --model NAME`, or point at a running controller with "
                "--controller URL or BLUEGREEN_CONTROLLER",
            },
        )
        self.url = url


class ControllerClient:
    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 600.0) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, headers=bearer_header(token), timeout=timeout_s)

    def __enter__(self) -> ControllerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        """`analysis`: `shadow_s`, `shadow_max_rps`, `min_agreement`, `bake_s`, `analysis`
        (thresholds), `pause`."""
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
        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # refused, reset, timed out, bad address
            raise ControllerUnreachable(self.url, _problem(exc)) from None
        if answer.status_code >= 400:
            try:
                body = answer.json()
            except ValueError:
                body = {"error": "http_error", "detail": answer.text[:300]}
            raise ControllerError(answer.status_code, body)
        try:
            return answer.json()
        except ValueError:  # something else answers there (a proxy page, another service)
            raise ControllerError(
                answer.status_code,
                {
                    "error": "not_a_controller",
                    "detail": f"{self.url}{path} answered {answer.status_code} without JSON; "
                    "is --controller pointing at the controller?",
                },
            ) from None


def _problem(exc: httpx.TransportError) -> str:
    """A transport error in a few words: httpx's message is sometimes empty."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:160]


def _object(value: Any) -> dict[str, Any]:
    """A JSON object from the controller; anything else is a broken answer."""
    if not isinstance(value, dict):
        raise ControllerError(200, {"error": "bad_answer", "detail": f"not an object: {value!r}"})
    return value
