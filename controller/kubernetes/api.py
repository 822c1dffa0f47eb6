"""Kubernetes API plumbing shared by the adapters: the client, retries, error conversion.

Every `ApiException` is converted at this boundary:

- 5xx, 429 and connection errors are temporary: retried with bounded backoff, then
  `BackendUnavailable` (or the caller's own `DependencyUnavailable`);
- 409 means someone wrote first: `ApiConflict`, handled where it happens (re-read and
  re-apply, or `ReleaseInProgress` / `RouteConflict`);
- any other 4xx is permanent and never retried.

Writes that must not lose a race carry `metadata.resourceVersion` in the patch body: the
API server then applies them only if the object is still at that revision.

Every write names the field manager `bluegreen-controller`, so `metadata.managedFields`
says which fields the controller owns (the pins, the live selector's color, the color
replicas) and Helm 4's server-side apply, which renders none of them, never contests them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client import ApiClient, ApiException
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from controller.errors import BackendUnavailable, DependencyUnavailable
from plumbing.retry import retry_transient

log = logging.getLogger("bluegreen.kubernetes")

T = TypeVar("T")

COLOR_LABEL = "bluegreen.io/color"
VERSION_ANNOTATION = "bluegreen.io/model-version"
TARGET_REPLICAS_ANNOTATION = "bluegreen.io/target-replicas"
AUTOSCALED_ANNOTATION = "bluegreen.io/autoscaled"
PINNED_AT_ANNOTATION = "bluegreen.io/pinned-at"
PARKED_ANNOTATION = "bluegreen.io/parked-replicas"
"""On a standby scaled down after the warm window: `reconcile_replicas` leaves it so."""

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
REQUEST_TIMEOUT = (5.0, 15.0)  # (connect, read) seconds: a hung API server must not hang us
API_ATTEMPTS = 4
CONFLICT_ATTEMPTS = 5
FIELD_MANAGER = "bluegreen-controller"


def load_api_client() -> ApiClient:
    """In-cluster credentials inside a pod, the kubeconfig outside."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]  # the client's config module is untyped
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]  # the client's config module is untyped
    return ApiClient(configuration)


class ApiConflict(Exception):
    """A 409 from the API server: the object changed since we read it (or already exists)."""


def api_message(exc: ApiException) -> str:
    """The `message` of the API server's Status body, else the HTTP reason."""
    try:
        message = json.loads(exc.body or "").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or exc.reason or f"HTTP {exc.status}")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the API server is overloaded, restarting, or unreachable."""
    if isinstance(exc, ApiException):
        return exc.status is not None and (exc.status >= 500 or exc.status == 429)
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)


def call_api(
    what: str,
    fn: Callable[[], T],
    *,
    unavailable: type[DependencyUnavailable] = BackendUnavailable,
    attempts: int = API_ATTEMPTS,
) -> T:
    """Run one API call, retrying temporary failures; 409 becomes `ApiConflict`.

    After `attempts`, a temporary failure raises `unavailable`. Other `ApiException`s
    (404, 403, 422, ...) propagate unchanged for the caller to classify.
    """
    try:
        return retry_transient(is_transient, attempts=attempts, log=log, what=what)(fn)
    except ApiException as exc:
        if exc.status == 409:
            raise ApiConflict(api_message(exc)) from None
        if is_transient(exc):
            raise unavailable(
                f"{what}: Kubernetes API answered {exc.status}: {api_message(exc)}"
            ) from None
        raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise unavailable(f"{what}: Kubernetes API unreachable: {exc}") from None


def rejected(what: str, exc: ApiException) -> str:
    """One line for a permanent API refusal."""
    return f"{what}: Kubernetes API refused ({exc.status} {exc.reason}): {api_message(exc)}"


def read_object(
    what: str,
    read: Callable[..., T],
    name: str,
    namespace: str,
    *,
    unavailable: type[DependencyUnavailable] = BackendUnavailable,
    timeout: tuple[float, float] = REQUEST_TIMEOUT,
    attempts: int = API_ATTEMPTS,
) -> T | None:
    """`read_NAMESPACED_KIND(name, namespace)` with our timeout; None when it does not exist."""
    try:
        return call_api(
            what,
            lambda: read(name, namespace, _request_timeout=timeout),
            unavailable=unavailable,
            attempts=attempts,
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise unavailable(rejected(what, exc)) from None


def patch_object(
    what: str,
    patch: Callable[..., T],
    name: str,
    namespace: str,
    body: object,
    *,
    content_type: str = MERGE_PATCH,
    unavailable: type[DependencyUnavailable] = BackendUnavailable,
    timeout: tuple[float, float] = REQUEST_TIMEOUT,
    attempts: int = API_ATTEMPTS,
) -> T:
    """`patch_NAMESPACED_KIND(name, namespace, body)` as our field manager, through `call_api`."""
    return call_api(
        what,
        lambda: patch(
            name,
            namespace,
            body,
            field_manager=FIELD_MANAGER,
            _content_type=content_type,
            _request_timeout=timeout,
        ),
        unavailable=unavailable,
        attempts=attempts,
    )


def create_object(
    what: str,
    create: Callable[..., T],
    namespace: str,
    body: object,
    *,
    unavailable: type[DependencyUnavailable] = BackendUnavailable,
) -> T:
    """`create_NAMESPACED_KIND(namespace, body)` as our field manager, through `call_api`."""
    return call_api(
        what,
        lambda: create(
            namespace, body, field_manager=FIELD_MANAGER, _request_timeout=REQUEST_TIMEOUT
        ),
        unavailable=unavailable,
    )


def retry_on_conflict(attempts: int = CONFLICT_ATTEMPTS) -> Retrying:
    """Re-read and re-apply after a 409: someone else wrote the object in between."""
    return Retrying(
        retry=retry_if_exception_type(ApiConflict),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.05, max=0.5),
        reraise=True,
    )


class HasMetadata(Protocol):
    @property
    def metadata(self) -> client.V1ObjectMeta | None: ...


def metadata_of(obj: HasMetadata) -> client.V1ObjectMeta:
    """An object's metadata; the API always sends it, the client's types say it may not."""
    return obj.metadata or client.V1ObjectMeta()


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339, always six fractional digits, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
