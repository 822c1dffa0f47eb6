"""Kubernetes adapters: the color Deployments, the journal ConfigMap and the release Lease.

Built by `controller.wiring` when the backend is `kubernetes`; `router.kubernetes` shares
the API plumbing below. Every `ApiException` is converted here, at the boundary:

- 5xx, 429 and connection errors are temporary: retried with bounded backoff, then
  `BackendUnavailable` (or the caller's own `DependencyUnavailable`);
- 409 means someone wrote first: handled where it happens (re-read and re-apply, or
  `ReleaseInProgress` / `RouteConflict`);
- any other 4xx is permanent and never retried.

Writes that must not lose a race carry `metadata.resourceVersion` in the patch body: the
API server then applies them only if the object is still at that revision.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client import ApiClient, ApiException
from pydantic import ValidationError
from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from controller.errors import (
    BackendUnavailable,
    DependencyUnavailable,
    ReleaseInProgress,
    StageFailed,
    StageTimeout,
)
from controller.model import Color, Journal

log = logging.getLogger("bluegreen.kubernetes")

T = TypeVar("T")

COLOR_LABEL = "bluegreen.io/color"
VERSION_ANNOTATION = "bluegreen.io/model-version"
TARGET_REPLICAS_ANNOTATION = "bluegreen.io/target-replicas"
JOURNAL_KEY = "journal.json"
DEFAULT_COLOR_URL = "http://{release}-{color}.{namespace}.svc:80"

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
REQUEST_TIMEOUT = (5.0, 15.0)  # (connect, read) seconds: a hung API server must not hang us
API_ATTEMPTS = 4
CONFLICT_ATTEMPTS = 5


def load_api_client() -> ApiClient:
    """In-cluster credentials inside a pod, the kubeconfig outside."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return ApiClient(configuration)


# -- API plumbing ----------------------------------------------------------------------


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
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        before_sleep=lambda state: log.info(
            "%s failed (attempt %d), retrying: %s",
            what,
            state.attempt_number,
            state.outcome.exception() if state.outcome else "?",
        ),
        reraise=True,
    )
    try:
        return retrying(fn)
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


def read_optional(what: str, read: Callable[[], T]) -> T | None:
    """The object, or None when it does not exist (404); other refusals are permanent."""
    try:
        return call_api(what, read)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise BackendUnavailable(rejected(what, exc)) from None


def retry_on_conflict(attempts: int = CONFLICT_ATTEMPTS) -> Retrying:
    """Re-read and re-apply after a 409: someone else wrote the object in between."""
    return Retrying(
        retry=retry_if_exception_type(ApiConflict),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.05, max=0.5),
        reraise=True,
    )


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339, always six fractional digits, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- Deployments: one per color ----------------------------------------------------------


def rollout_pending(deployment: client.V1Deployment, *, generation: int = 0) -> str | None:
    """Why the Deployment's rollout is not complete, or None when every replica is new and ready.

    Mirrors `kubectl rollout status`, stricter: old pods must be gone and a Deployment
    scaled to zero is never complete (it serves nothing).
    """
    wanted = _spec_replicas(deployment)
    status = deployment.status or client.V1DeploymentStatus()
    target_generation = max(deployment.metadata.generation or 0, generation)
    if (status.observed_generation or 0) < target_generation:
        return f"waiting for the deployment controller to observe generation {target_generation}"
    if wanted == 0:
        return "scaled to 0 replicas"
    updated = status.updated_replicas or 0
    total = status.replicas or 0
    ready = status.ready_replicas or 0
    available = status.available_replicas or 0
    if updated < wanted:
        return f"{updated} of {wanted} replicas updated"
    if total > updated:
        return f"{total - updated} old replicas pending termination"
    if ready < wanted:
        return f"{ready} of {wanted} updated replicas ready"
    if available < wanted:
        return f"{available} of {wanted} updated replicas available"
    return None


def progress_deadline_exceeded(deployment: client.V1Deployment) -> str | None:
    """The Deployment controller's verdict that this rollout gave up, or None.

    Only trusted once the controller observed the current generation: before that the
    condition may still describe an earlier, failed rollout.
    """
    status = deployment.status or client.V1DeploymentStatus()
    if (status.observed_generation or 0) < (deployment.metadata.generation or 0):
        return None
    for condition in status.conditions or []:
        if (
            condition.type == "Progressing"
            and condition.status == "False"
            and condition.reason == "ProgressDeadlineExceeded"
        ):
            return condition.message or "progress deadline exceeded"
    return None


def _spec_replicas(deployment: client.V1Deployment) -> int:
    replicas = deployment.spec.replicas if deployment.spec else None
    return 1 if replicas is None else replicas  # the API server defaults it to 1


def pin_patch(
    deployment: dict[str, Any], *, container: str, model: str, version: str
) -> list[dict[str, Any]]:
    """JSON-patch ops that pin `version` into a Deployment (camelCase dict form).

    Sets MODEL_VERSION and MODEL_NAME in the model container only (other containers and env
    vars untouched), the version annotation on the Deployment and on the pod template (so
    the pods roll), scales 0 replicas up, and carries the resourceVersion read as the
    precondition. Raises `StageFailed` when the model container is missing.
    """
    name = deployment["metadata"]["name"]
    containers = deployment["spec"]["template"]["spec"].get("containers") or []
    index = next((i for i, c in enumerate(containers) if c.get("name") == container), None)
    if index is None:
        raise StageFailed(f"Deployment {name} has no container named {container!r}")
    revision = deployment["metadata"].get("resourceVersion")
    ops: list[dict[str, Any]] = (
        [{"op": "replace", "path": "/metadata/resourceVersion", "value": revision}]
        if revision
        else []
    )
    ops += _annotation_ops("/metadata", deployment["metadata"], version)
    ops += _annotation_ops(
        "/spec/template/metadata", deployment["spec"]["template"].get("metadata"), version
    )
    ops += _env_ops(
        f"/spec/template/spec/containers/{index}",
        containers[index].get("env"),
        {"MODEL_VERSION": version, "MODEL_NAME": model},
    )
    if deployment["spec"].get("replicas") == 0:
        ops.append(
            {"op": "replace", "path": "/spec/replicas", "value": _target_replicas(deployment)}
        )
    return ops


def _annotation_ops(
    path: str, metadata: dict[str, Any] | None, version: str
) -> list[dict[str, Any]]:
    key = VERSION_ANNOTATION.replace("~", "~0").replace("/", "~1")  # JSON-pointer escaping
    if metadata is None:
        return [
            {"op": "add", "path": path, "value": {"annotations": {VERSION_ANNOTATION: version}}}
        ]
    if metadata.get("annotations") is None:
        return [
            {"op": "add", "path": f"{path}/annotations", "value": {VERSION_ANNOTATION: version}}
        ]
    return [{"op": "add", "path": f"{path}/annotations/{key}", "value": version}]


def _env_ops(
    path: str, env: list[dict[str, Any]] | None, wanted: dict[str, str]
) -> list[dict[str, Any]]:
    if env is None:
        entries = [{"name": k, "value": v} for k, v in wanted.items()]
        return [{"op": "add", "path": f"{path}/env", "value": entries}]
    ops: list[dict[str, Any]] = []
    positions = {entry.get("name"): i for i, entry in enumerate(env)}
    for key, value in wanted.items():
        entry = {"name": key, "value": value}  # a whole entry: drops any valueFrom
        if key in positions:
            ops.append({"op": "replace", "path": f"{path}/env/{positions[key]}", "value": entry})
        else:
            ops.append({"op": "add", "path": f"{path}/env/-", "value": entry})
    return ops


def _target_replicas(deployment: dict[str, Any]) -> int:
    """What an empty color scales to: the chart's target-replicas annotation, else 1."""
    raw = (deployment["metadata"].get("annotations") or {}).get(TARGET_REPLICAS_ANNOTATION, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


class DeploymentColorBackend:
    """`ColorBackend` on the Deployments `R-blue` and `R-green`."""

    def __init__(
        self,
        *,
        namespace: str,
        release: str,
        api_client: ApiClient,
        color_url_template: str | Mapping[str, str] = DEFAULT_COLOR_URL,
        container_name: str = "model-server",
        poll_interval: float = 0.5,
    ) -> None:
        self._namespace = namespace
        self._release = release
        self._api = api_client
        self._apps = client.AppsV1Api(api_client)
        self._url_template = color_url_template
        self._container = container_name
        self._poll = poll_interval

    def deployment_name(self, color: Color) -> str:
        return f"{self._release}-{color}"

    def endpoint(self, color: Color) -> str:
        """The color's own Service; a per-color mapping serves controllers outside the cluster
        (e.g. through two `kubectl port-forward`s), where `*.svc` names do not resolve."""
        template = (
            self._url_template if isinstance(self._url_template, str) else self._url_template[color]
        )
        return template.format(release=self._release, color=color, namespace=self._namespace)

    def pinned_version(self, color: Color) -> str | None:
        deployment = self._read(color)
        if deployment is None or _spec_replicas(deployment) == 0:
            return None
        return (deployment.metadata.annotations or {}).get(VERSION_ANNOTATION) or None

    def is_ready(self, color: Color) -> bool:
        deployment = self._read(color)
        return deployment is not None and rollout_pending(deployment) is None

    def pin(self, color: Color, *, model: str, version: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        name = self.deployment_name(color)
        try:
            generation = retry_on_conflict()(self._patch_pin, color, model=model, version=version)
        except ApiConflict:
            raise StageFailed(
                f"could not pin v{version} into {name}: it kept changing under us (409)"
            ) from None
        log.info(
            "pinned v%s into %s (generation %d); waiting for the rollout", version, name, generation
        )
        self._wait_rolled_out(
            color, version=version, generation=generation, deadline=deadline, timeout=timeout
        )

    # -- internals -----------------------------------------------------------------------

    def _read(self, color: Color) -> client.V1Deployment | None:
        """The Deployment, or None when it does not exist."""
        name = self.deployment_name(color)
        return read_optional(
            f"read Deployment {name}",
            lambda: self._apps.read_namespaced_deployment(
                name, self._namespace, _request_timeout=REQUEST_TIMEOUT
            ),
        )

    def _read_required(self, color: Color) -> client.V1Deployment:
        deployment = self._read(color)
        if deployment is None:
            raise StageFailed(
                f"Deployment {self.deployment_name(color)} not found in namespace {self._namespace}"
            )
        return deployment

    def _patch_pin(self, color: Color, *, model: str, version: str) -> int:
        """One read-modify-write of the Deployment; returns the generation to wait for."""
        name = self.deployment_name(color)
        current = self._api.sanitize_for_serialization(self._read_required(color))
        ops = pin_patch(current, container=self._container, model=model, version=version)
        try:
            patched = call_api(
                f"pin v{version} into Deployment {name}",
                lambda: self._apps.patch_namespaced_deployment(
                    name,
                    self._namespace,
                    ops,
                    _content_type=JSON_PATCH,
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )
        except ApiException as exc:
            raise StageFailed(rejected(f"pin v{version} into Deployment {name}", exc)) from None
        return int(patched.metadata.generation or 0)

    def _wait_rolled_out(
        self, color: Color, *, version: str, generation: int, deadline: float, timeout: float
    ) -> None:
        name = self.deployment_name(color)
        while True:
            deployment = self._read_required(color)
            pinned = (deployment.metadata.annotations or {}).get(VERSION_ANNOTATION)
            if pinned != version:
                raise StageFailed(f"{name} was re-pinned to v{pinned} while staging v{version}")
            pending = rollout_pending(deployment, generation=generation)
            if pending is None:
                return
            failure = progress_deadline_exceeded(deployment)
            if failure is not None:
                raise StageFailed(f"{name} did not come up with v{version}: {failure}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StageTimeout(
                    f"{name} not ready with v{version} within {timeout:g} s: {pending}"
                )
            time.sleep(min(self._poll, remaining))


# -- the journal: one ConfigMap --------------------------------------------------------


class ConfigMapJournal:
    """`JournalStore` in the ConfigMap `R-journal`, key `journal.json`.

    Each save is one patch (atomic) conditional on the resourceVersion we last saw. A
    conflict means another writer slipped in (the release lock should prevent it): we log
    it, re-read and re-apply our whole document, as the lock holder's view wins.
    """

    def __init__(self, *, namespace: str, release: str, api_client: ApiClient) -> None:
        self._namespace = namespace
        self._name = f"{release}-journal"
        self._core = client.CoreV1Api(api_client)
        self._revision: str | None = None
        self._guard = threading.Lock()  # the revision we hold is per store, not per thread

    def load(self, model: str) -> Journal:
        with self._guard:
            config_map = self._read() or self._create(Journal(model=model))
            self._revision = config_map.metadata.resource_version
        text = (config_map.data or {}).get(JOURNAL_KEY)
        if not text:
            return Journal(model=model)
        try:
            journal = Journal.model_validate_json(text)
        except ValidationError as exc:
            raise BackendUnavailable(
                f"ConfigMap {self._name} holds an unreadable {JOURNAL_KEY}: {exc.errors()[:1]}"
            ) from None
        if journal.model != model:
            log.warning(
                "journal %s was kept for model %r, not %r: starting a new one",
                self._name,
                journal.model,
                model,
            )
            return Journal(model=model)
        return journal

    def save(self, journal: Journal) -> None:
        text = journal.model_dump_json()
        with self._guard:
            try:
                retry_on_conflict()(self._write, text)
            except ApiConflict:
                raise BackendUnavailable(
                    f"could not save the journal: ConfigMap {self._name} kept changing (409)"
                ) from None

    def _write(self, text: str) -> None:
        if self._revision is None:
            self._revision = self._current_revision()
        body = {
            "metadata": {"resourceVersion": self._revision},
            "data": {JOURNAL_KEY: text},
        }
        try:
            saved = call_api(
                f"save the journal in ConfigMap {self._name}",
                lambda: self._core.patch_namespaced_config_map(
                    self._name,
                    self._namespace,
                    body,
                    _content_type=MERGE_PATCH,
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )
        except ApiConflict:
            log.warning("journal %s changed under us; re-applying ours", self._name)
            self._revision = None  # re-read before the next attempt
            raise
        except ApiException as exc:
            if exc.status == 404:  # deleted under us: put it back with our document
                self._revision = None
                self._revision = self._create_raw(text).metadata.resource_version
                return
            raise BackendUnavailable(rejected(f"save ConfigMap {self._name}", exc)) from None
        self._revision = saved.metadata.resource_version

    def _current_revision(self) -> str | None:
        config_map = self._read()
        return None if config_map is None else config_map.metadata.resource_version

    def _read(self) -> client.V1ConfigMap | None:
        return read_optional(
            f"read ConfigMap {self._name}",
            lambda: self._core.read_namespaced_config_map(
                self._name, self._namespace, _request_timeout=REQUEST_TIMEOUT
            ),
        )

    def _create(self, journal: Journal) -> client.V1ConfigMap:
        """Create the ConfigMap; if another controller just did, read theirs."""
        try:
            return self._create_raw(journal.model_dump_json())
        except ApiConflict:
            existing = self._read()
            if existing is None:
                raise BackendUnavailable(
                    f"ConfigMap {self._name} both exists and does not (409, then 404)"
                ) from None
            return existing

    def _create_raw(self, text: str) -> client.V1ConfigMap:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self._name,
                "labels": {"app.kubernetes.io/component": "journal"},
            },
            "data": {JOURNAL_KEY: text},
        }
        try:
            return call_api(
                f"create ConfigMap {self._name}",
                lambda: self._core.create_namespaced_config_map(
                    self._namespace, body, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiException as exc:
            raise BackendUnavailable(rejected(f"create ConfigMap {self._name}", exc)) from None


# -- the release lock: one Lease -------------------------------------------------------


class LeaseLock:
    """`ReleaseLock` on the coordination.k8s.io/v1 Lease `R-release-lock`.

    Taken when absent, released (empty holder) or expired (renewTime + duration in the
    past: a dead controller does not hold it forever); renewed in the background while
    held; released on exit. Every take-over is conditional on the resourceVersion read,
    so of two controllers racing for it exactly one wins.
    """

    def __init__(
        self,
        *,
        namespace: str,
        release: str,
        api_client: ApiClient,
        lease_seconds: int = 30,
        identity: str | None = None,
    ) -> None:
        self._namespace = namespace
        self._name = f"{release}-release-lock"
        self._coordination = client.CoordinationV1Api(api_client)
        self._seconds = lease_seconds
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    @contextmanager
    def hold(self, holder: str) -> Iterator[str]:
        me = f"{self.identity}/{holder}"
        self._acquire(me)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew_until, args=(me, stop), name=f"lease-{holder}", daemon=True
        )
        renewer.start()
        try:
            yield me
        finally:
            stop.set()
            renewer.join(timeout=REQUEST_TIMEOUT[1])
            self._release(me)

    # -- acquire -------------------------------------------------------------------------

    def _acquire(self, me: str) -> None:
        lease = self._read()
        if lease is None:
            self._create(me)
            return
        holder = lease.spec.holder_identity if lease.spec else None
        if holder and not self._expired(lease):
            raise ReleaseInProgress(self._held_message(lease))
        if holder:
            log.warning("taking over lease %s from %s: it expired", self._name, holder)
        transitions = (lease.spec.lease_transitions or 0) if lease.spec else 0
        now = micro_time(datetime.now(UTC))
        body = {
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": {
                "holderIdentity": me,
                "acquireTime": now,
                "renewTime": now,
                "leaseDurationSeconds": self._seconds,
                "leaseTransitions": transitions + 1,
            },
        }
        try:
            self._patch(body, what="take")
        except ApiConflict:  # someone else took it between our read and our write
            raise ReleaseInProgress(self._held_message(self._read())) from None

    def _create(self, me: str) -> None:
        now = micro_time(datetime.now(UTC))
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self._name},
            "spec": {
                "holderIdentity": me,
                "acquireTime": now,
                "renewTime": now,
                "leaseDurationSeconds": self._seconds,
                "leaseTransitions": 0,
            },
        }
        try:
            call_api(
                f"create Lease {self._name}",
                lambda: self._coordination.create_namespaced_lease(
                    self._namespace, body, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiConflict:  # another controller created it first: it holds the lock
            raise ReleaseInProgress(self._held_message(self._read())) from None
        except ApiException as exc:
            raise BackendUnavailable(rejected(f"create Lease {self._name}", exc)) from None

    def _expired(self, lease: client.V1Lease) -> bool:
        spec = lease.spec
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:  # held without any time: we cannot tell when it ends
            return True
        seconds = spec.lease_duration_seconds or self._seconds
        return renewed + timedelta(seconds=seconds) < datetime.now(UTC)

    def _held_message(self, lease: client.V1Lease | None) -> str:
        if lease is None or lease.spec is None or not lease.spec.holder_identity:
            return f"another release is in progress (lease {self._name} changed under us)"
        spec = lease.spec
        renewed = spec.renew_time or spec.acquire_time
        until = (
            renewed + timedelta(seconds=spec.lease_duration_seconds or self._seconds)
            if renewed
            else None
        )
        return (
            f"another release is in progress: lease {self._name} is held by "
            f"{spec.holder_identity}" + (f" until {until.isoformat()}" if until else "")
        )

    # -- renew and release ---------------------------------------------------------------

    def _renew_until(self, me: str, stop: threading.Event) -> None:
        while not stop.wait(self._seconds / 3):
            try:
                if not self._renew(me):
                    return
            except (DependencyUnavailable, ApiConflict) as exc:
                log.warning("could not renew lease %s (will retry): %s", self._name, exc)

    def _renew(self, me: str) -> bool:
        """Push renewTime forward; False when the lease is no longer ours."""
        lease = self._read()
        holder = lease.spec.holder_identity if lease and lease.spec else None
        if lease is None or holder != me:
            log.error("lost lease %s to %s while holding it", self._name, holder or "nobody")
            return False
        body = {
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": {"renewTime": micro_time(datetime.now(UTC))},
        }
        self._patch(body, what="renew")
        return True

    def _release(self, me: str) -> None:
        """Clear the holder if it is still us; a failure only delays the next release."""
        try:
            lease = self._read()
            if lease is None or lease.spec is None or lease.spec.holder_identity != me:
                return
            body = {
                "metadata": {"resourceVersion": lease.metadata.resource_version},
                "spec": {"holderIdentity": None},
            }
            self._patch(body, what="release")
        except (DependencyUnavailable, ApiConflict) as exc:
            log.warning(
                "could not release lease %s; it expires in %d s: %s", self._name, self._seconds, exc
            )

    def _read(self) -> client.V1Lease | None:
        return read_optional(
            f"read Lease {self._name}",
            lambda: self._coordination.read_namespaced_lease(
                self._name, self._namespace, _request_timeout=REQUEST_TIMEOUT
            ),
        )

    def _patch(self, body: dict[str, Any], *, what: str) -> None:
        try:
            call_api(
                f"{what} Lease {self._name}",
                lambda: self._coordination.patch_namespaced_lease(
                    self._name,
                    self._namespace,
                    body,
                    _content_type=MERGE_PATCH,
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )
        except ApiException as exc:
            raise BackendUnavailable(rejected(f"{what} Lease {self._name}", exc)) from None
