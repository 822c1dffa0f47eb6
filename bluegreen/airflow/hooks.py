"""`BluegreenHook`: an Airflow Connection of type `bluegreen` -> the controller client.

The Connection's host is the controller's URL (`http://iris-controller.ml.svc:80`; a bare
host takes the schema field, else `http`, and the port field); its password is the API
token. The hook hands out the project's own `ControllerClient`, which sends the token only
in the `Authorization` header: nothing here logs it, and Airflow masks Connection passwords.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from bluegreen.airflow import CONN_TYPE, DEFAULT_CONN_ID
from bluegreen.client import ControllerClient, ControllerError


class BluegreenHook(BaseHook):
    """Talks to one bluegreen controller, named by a Connection."""

    conn_name_attr = "bluegreen_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "bluegreen controller"

    def __init__(
        self, bluegreen_conn_id: str = DEFAULT_CONN_ID, *, timeout_s: float = 30.0
    ) -> None:
        super().__init__()
        self.bluegreen_conn_id = bluegreen_conn_id
        self.timeout_s = timeout_s

    def get_conn(self) -> ControllerClient:
        """A client for the controller (close it, or use it as a context manager)."""
        return self._client(self.get_connection(self.bluegreen_conn_id))

    async def aget_conn(self) -> ControllerClient:
        """The same client, with the Connection read the triggerer's (async) way."""
        return self._client(await self.aget_connection(self.bluegreen_conn_id))

    def test_connection(self) -> tuple[bool, str]:
        """The UI's "Test" button: read `/status` (a GET: the token is not needed for it)."""
        try:
            with self.get_conn() as client:
                status = client.status()
        except ControllerError as exc:
            return False, str(exc)
        live = status.get("live") or {}
        return True, (
            f"controller releases {status.get('model')!r}; "
            f"live: v{live.get('version')} on {live.get('color')}"
        )

    def _client(self, conn: Any) -> ControllerClient:
        return ControllerClient(
            controller_url(host=conn.host, port=conn.port, schema=conn.schema),
            token=conn.password or None,
            timeout_s=self.timeout_s,
        )


def controller_url(*, host: str | None, port: int | None = None, schema: str | None = None) -> str:
    """`scheme://host[:port]` from a Connection's fields; the host may carry scheme and port."""
    given = (host or "").strip().rstrip("/")
    if not given:
        raise ValueError(
            "the bluegreen Connection has no host: set it to the controller's URL, "
            "e.g. http://iris-controller.ml.svc:80"
        )
    if "://" not in given:
        given = f"{schema or 'http'}://{given}"
    return f"{given}:{port}" if port and urlsplit(given).port is None else given
