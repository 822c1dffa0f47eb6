"""The one registry call a start makes: the pinned version's record, over MLflow's REST API.

Called by `loader.load_pinned_model` before anything else, without importing MLflow
(which costs a second and tens of MB in a server that may never need it): the record says
which cached preparation of the version is still valid (`model_cache.py`). Auth and TLS
follow MLflow's client variables (`MLFLOW_TRACKING_TOKEN`, `_USERNAME`/`_PASSWORD`,
`_INSECURE_TLS`, `_SERVER_CERT_PATH`, `_CLIENT_CERT_PATH`); a tracking URI that is not
HTTP(S) (a local store, Databricks) returns None and the MLflow-side loader decides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from model_server.errors import ModelLoadError

_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class VersionRecord:
    """What identifies the content of one registered version."""

    run_id: str | None
    source: str
    created: str

    def fingerprint(self) -> dict[str, str]:
        return {"run_id": self.run_id or "", "source": self.source, "created": self.created}


def get_version(tracking_uri: str, name: str, version: str) -> VersionRecord | None:
    """The version's record; `ModelLoadError` (permanent when it does not exist)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    url = tracking_uri.rstrip("/") + "/api/2.0/mlflow/model-versions/get"
    try:
        with httpx.Client(timeout=_TIMEOUT_S, **_client_options()) as client:
            response = client.get(url, params={"name": name, "version": version})
    except httpx.HTTPError as exc:
        raise ModelLoadError(f"registry unreachable: {exc}", permanent=False) from None
    if response.status_code >= 500:
        raise ModelLoadError(
            f"registry unreachable: {response.status_code} from {url}", permanent=False
        )
    body = _json_or_empty(response)
    if response.status_code != 200 or "model_version" not in body:
        message = body.get("message") or response.text[:200]
        raise ModelLoadError(
            f"models:/{name}/{version} is not in the registry: {message}", permanent=True
        )
    record = body["model_version"]
    return VersionRecord(
        run_id=record.get("run_id") or None,
        source=str(record.get("source", "")),
        created=str(record.get("creation_timestamp", "")),
    )


def _client_options() -> dict[str, Any]:
    env = os.environ.get
    options: dict[str, Any] = {}
    token = env("MLFLOW_TRACKING_TOKEN")
    user, password = env("MLFLOW_TRACKING_USERNAME"), env("MLFLOW_TRACKING_PASSWORD")
    if token:
        options["headers"] = {"Authorization": f"Bearer {token}"}
    elif user and password:
        options["auth"] = (user, password)
    if env("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        options["verify"] = False
    elif env("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        options["verify"] = env("MLFLOW_TRACKING_SERVER_CERT_PATH")
    if env("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        options["cert"] = env("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    return options


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
