"""What a color Deployment says about its rollout, and the JSON patch that pins a version.

Pure functions over the API's objects, used by `colors.DeploymentColorBackend`: the
readiness gate (stricter than `kubectl rollout status`), the progress-deadline verdict
(trusted only when it is not the one left over from an earlier rollout), the replicas the
chart asks for, and the pin patch.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from controller.errors import StageFailed
from controller.kubernetes.api import (
    AUTOSCALED_ANNOTATION,
    PARKED_ANNOTATION,
    PINNED_AT_ANNOTATION,
    TARGET_REPLICAS_ANNOTATION,
    VERSION_ANNOTATION,
    metadata_of,
)


def rollout_pending(deployment: client.V1Deployment, *, generation: int = 0) -> str | None:
    """Why the Deployment's rollout is not complete, or None when every replica is new and ready.

    Mirrors `kubectl rollout status`, stricter: old pods must be gone and a Deployment
    scaled to zero is never complete (it serves nothing).
    """
    wanted = spec_replicas(deployment)
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


def deadline_condition(deployment: client.V1Deployment) -> client.V1DeploymentCondition | None:
    """The `Progressing=False, ProgressDeadlineExceeded` condition, if the status has one."""
    status = deployment.status or client.V1DeploymentStatus()
    for condition in status.conditions or []:
        if (
            condition.type == "Progressing"
            and condition.status == "False"
            and condition.reason == "ProgressDeadlineExceeded"
        ):
            return condition
    return None


def condition_stamp(condition: client.V1DeploymentCondition | None) -> tuple[object, ...] | None:
    """What tells one deadline condition from another: its times and message."""
    if condition is None:
        return None
    return (condition.last_update_time, condition.last_transition_time, condition.message)


def progress_deadline_exceeded(
    deployment: client.V1Deployment, *, stale: tuple[object, ...] | None = None
) -> str | None:
    """The Deployment controller's verdict that this rollout gave up, or None.

    Only trusted once the controller observed the current generation, and never when it is
    the very condition seen before the pin (`stale`): re-pinning a version whose ReplicaSet
    timed out earlier keeps that old condition while `observedGeneration` moves on. Compared
    by identity, not by time, so no clock of ours meets the controller-manager's.
    """
    status = deployment.status or client.V1DeploymentStatus()
    if (status.observed_generation or 0) < (metadata_of(deployment).generation or 0):
        return None
    condition = deadline_condition(deployment)
    if condition is None or (stale is not None and condition_stamp(condition) == stale):
        return None
    return condition.message or "progress deadline exceeded"


def spec_replicas(deployment: client.V1Deployment) -> int:
    replicas = deployment.spec.replicas if deployment.spec else None
    return 1 if replicas is None else replicas  # the API server defaults it to 1


def pin_patch(
    deployment: dict[str, Any], *, container: str, model: str, version: str, pinned_at: str
) -> list[dict[str, Any]]:
    """JSON-patch ops that pin `version` into a Deployment (camelCase dict form).

    Sets MODEL_VERSION and MODEL_NAME in the model container only (other containers and env
    vars untouched), the version annotation on the Deployment and on the pod template, and
    `bluegreen.io/pinned-at` on the template: every pin is a new rollout (as `kubectl rollout
    restart`), so retrying a version whose rollout timed out starts over instead of being a
    no-op patch. Scales 0 replicas up and carries the resourceVersion read as the
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
    ops += _annotation_ops("/metadata", deployment["metadata"], {VERSION_ANNOTATION: version})
    ops += _annotation_ops(
        "/spec/template/metadata",
        deployment["spec"]["template"].get("metadata"),
        {VERSION_ANNOTATION: version, PINNED_AT_ANNOTATION: pinned_at},
    )
    ops += _env_ops(
        f"/spec/template/spec/containers/{index}",
        containers[index].get("env"),
        {"MODEL_VERSION": version, "MODEL_NAME": model},
    )
    if deployment["spec"].get("replicas") == 0 or parked(deployment):
        ops.append(
            {"op": "replace", "path": "/spec/replicas", "value": target_replicas(deployment)}
        )
    return ops + unpark_ops(deployment)


def parked(deployment: dict[str, Any]) -> bool:
    """Scaled down after the warm window (to 0, or to a few warm pods)."""
    return PARKED_ANNOTATION in (deployment["metadata"].get("annotations") or {})


def park_ops(deployment: dict[str, Any], replicas: int) -> list[dict[str, Any]]:
    return _annotation_ops("/metadata", deployment["metadata"], {PARKED_ANNOTATION: str(replicas)})


def unpark_ops(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    if not parked(deployment):
        return []
    return [{"op": "remove", "path": f"/metadata/annotations/{pointer(PARKED_ANNOTATION)}"}]


def _annotation_ops(
    path: str, metadata: dict[str, Any] | None, annotations: dict[str, str]
) -> list[dict[str, Any]]:
    if metadata is None:
        return [{"op": "add", "path": path, "value": {"annotations": annotations}}]
    if metadata.get("annotations") is None:
        return [{"op": "add", "path": f"{path}/annotations", "value": annotations}]
    return [
        {"op": "add", "path": f"{path}/annotations/{pointer(key)}", "value": value}
        for key, value in annotations.items()
    ]


def pointer(key: str) -> str:
    """A map key as one JSON-pointer segment."""
    return key.replace("~", "~0").replace("/", "~1")


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


def target_replicas(deployment: dict[str, Any]) -> int:
    """The replicas the chart asks for (its target-replicas annotation), else 1."""
    raw = (deployment["metadata"].get("annotations") or {}).get(TARGET_REPLICAS_ANNOTATION, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def autoscaled(deployment: dict[str, Any]) -> bool:
    """An HPA scales this color: the target is a floor, not the count."""
    annotations = deployment["metadata"].get("annotations") or {}
    return annotations.get(AUTOSCALED_ANNOTATION) == "true"
