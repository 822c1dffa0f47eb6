"""`ColorBackend` on the Deployments `R-blue` and `R-green`: pin a version, wait for its rollout.

Pinning is one JSON patch of the model container's env and the version annotations,
conditional on the Deployment's resourceVersion; readiness is the rollout of that
generation, complete, with no old pods left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from controller.domain import Color
from controller.errors import StageFailed, StageTimeout
from controller.kubernetes.api import (
    JSON_PATCH,
    TARGET_REPLICAS_ANNOTATION,
    VERSION_ANNOTATION,
    ApiConflict,
    metadata_of,
    patch_object,
    read_object,
    rejected,
    retry_on_conflict,
)

log = logging.getLogger("bluegreen.kubernetes.colors")


def rollout_pending(deployment: client.V1Deployment, *, generation: int = 0) -> str | None:
    """Why the Deployment's rollout is not complete, or None when every replica is new and ready.

    Mirrors `kubectl rollout status`, stricter: old pods must be gone and a Deployment
    scaled to zero is never complete (it serves nothing).
    """
    wanted = _spec_replicas(deployment)
    status = deployment.status or client.V1DeploymentStatus()
    target_generation = max(metadata_of(deployment).generation or 0, generation)
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
    if (status.observed_generation or 0) < (metadata_of(deployment).generation or 0):
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
        color_url_template: str | Mapping[str, str],
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
        return (metadata_of(deployment).annotations or {}).get(VERSION_ANNOTATION) or None

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
        return read_object(
            f"read Deployment {name}", self._apps.read_namespaced_deployment, name, self._namespace
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
        current: dict[str, Any] = self._api.sanitize_for_serialization(  # type: ignore[no-untyped-call]  # the client's serializer is untyped
            self._read_required(color)
        )
        ops = pin_patch(current, container=self._container, model=model, version=version)
        try:
            patched = patch_object(
                f"pin v{version} into Deployment {name}",
                self._apps.patch_namespaced_deployment,
                name,
                self._namespace,
                ops,
                content_type=JSON_PATCH,
            )
        except ApiException as exc:
            raise StageFailed(rejected(f"pin v{version} into Deployment {name}", exc)) from None
        return int(metadata_of(patched).generation or 0)

    def _wait_rolled_out(
        self, color: Color, *, version: str, generation: int, deadline: float, timeout: float
    ) -> None:
        name = self.deployment_name(color)
        while True:
            deployment = self._read_required(color)
            pinned = (metadata_of(deployment).annotations or {}).get(VERSION_ANNOTATION)
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
