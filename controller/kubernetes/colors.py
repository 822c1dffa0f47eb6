"""`ColorBackend` on the Deployments `R-blue` and `R-green`: pin a version, wait for its rollout.

Pinning is one JSON patch of the model container's env and the version annotations,
conditional on the Deployment's resourceVersion; readiness is the rollout of that
generation, complete, with no old pods left, and then every one of those pods listed ready
in the color's EndpointSlices (they lag the rollout by about a second). The controller owns
the colors' `spec.replicas` (the chart never renders it): it keeps each color at the
chart's target, and scales the standby to the live color's count before a flip.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from controller.domain import COLORS, Color
from controller.errors import BackendUnavailable, StageCancelled, StageFailed, StageTimeout
from controller.kubernetes.api import (
    JSON_PATCH,
    VERSION_ANNOTATION,
    ApiConflict,
    metadata_of,
    micro_time,
    patch_object,
    read_object,
    rejected,
    retry_on_conflict,
)
from controller.kubernetes.endpoints import EndpointSlices
from controller.kubernetes.rollout import (
    autoscaled,
    condition_stamp,
    deadline_condition,
    park_ops,
    parked,
    pin_patch,
    progress_deadline_exceeded,
    rollout_pending,
    spec_replicas,
    target_replicas,
    unpark_ops,
)
from controller.ports import Cancel

log = logging.getLogger("bluegreen.kubernetes.colors")


@dataclass(frozen=True)
class _Rollout:
    """One rollout to wait for: the pin it must keep, the generation that carries it, the
    progress-deadline condition seen before it began (not its failure), the stage's bound."""

    version: str
    generation: int
    stale: tuple[object, ...] | None
    deadline: float
    timeout: float


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
        pod_endpoints: bool = True,
        settle_s: float = 30.0,
    ) -> None:
        self._namespace = namespace
        self._release = release
        self._api = api_client
        self._apps = client.AppsV1Api(api_client)
        self._url_template = color_url_template
        self._container = container_name
        self._poll = poll_interval
        self._slices = EndpointSlices(namespace=namespace, api_client=api_client)
        self._pod_endpoints = pod_endpoints
        self._settle_s = settle_s

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
        if deployment is None or spec_replicas(deployment) == 0:
            return None
        return (metadata_of(deployment).annotations or {}).get(VERSION_ANNOTATION) or None

    def is_ready(self, color: Color) -> bool:
        deployment = self._read(color)
        return deployment is not None and rollout_pending(deployment) is None

    def pin(
        self, color: Color, *, model: str, version: str, timeout: float, cancel: Cancel = None
    ) -> None:
        deadline = time.monotonic() + timeout
        name = self.deployment_name(color)
        stale = condition_stamp(deadline_condition(self._read_required(color)))
        try:
            generation = retry_on_conflict()(self._patch_pin, color, model=model, version=version)
        except ApiConflict:
            raise StageFailed(
                f"could not pin v{version} into {name}: it kept changing under us (409)"
            ) from None
        log.info(
            "pinned v%s into %s (generation %d); waiting for the rollout", version, name, generation
        )
        self._roll_out(color, _Rollout(version, generation, stale, deadline, timeout), cancel)

    def scale_down(self, color: Color, *, replicas: int = 0) -> None:
        """To `replicas`, without waiting, marked parked so `reconcile_replicas` leaves it so;
        the next `pin` (or `match_replicas`) brings it back like the live color."""
        current = self._read_required(color)
        if spec_replicas(current) <= replicas:
            return
        try:
            self._scale(color, current, replicas, park=True)
        except StageFailed as exc:
            raise BackendUnavailable(exc.detail) from None

    def ready_endpoints(self, color: Color) -> list[str]:
        """Base URLs of every ready pod of the color; [] when pods are not reachable from here
        (a controller outside the cluster) or the slices list none yet."""
        if not self._pod_endpoints:
            return []
        return self._slices.ready_urls(self.deployment_name(color))

    def match_replicas(
        self, color: Color, *, like: Color, timeout: float, cancel: Cancel = None
    ) -> str | None:
        """Scale `color` up to `like`'s replicas (the live color, autoscaled past the floor)
        and wait for the new pods; None when nothing needed doing."""
        wanted = spec_replicas(self._read_required(like))
        current = self._read_required(color)
        have = spec_replicas(current)
        if have >= wanted:
            return None
        generation = self._scale(color, current, wanted)
        deadline = time.monotonic() + timeout
        version = (metadata_of(current).annotations or {}).get(VERSION_ANNOTATION) or ""
        stale = condition_stamp(deadline_condition(current))
        self._roll_out(color, _Rollout(version, generation, stale, deadline, timeout), cancel)
        return f"{self.deployment_name(color)} scaled from {have} to {wanted} replicas like {like}"

    def reconcile_replicas(self) -> None:
        """Keep each color at the chart's target (`bluegreen.io/target-replicas`): exactly,
        or at least when an HPA scales it. A color scaled to 0 by hand stays parked."""
        for color in COLORS:
            deployment = self._read(color)
            if deployment is None:
                continue
            raw = self._api.sanitize_for_serialization(deployment)  # type: ignore[no-untyped-call]  # the client's serializer is untyped
            have, target = spec_replicas(deployment), target_replicas(raw)
            if have == 0 or parked(raw) or have == target or (autoscaled(raw) and have > target):
                continue
            try:
                self._scale(color, deployment, target)
            except (ApiConflict, StageFailed) as exc:
                log.info("not scaling %s now (next round): %s", self.deployment_name(color), exc)

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
        ops = pin_patch(
            current,
            container=self._container,
            model=model,
            version=version,
            pinned_at=micro_time(datetime.now(UTC)),
        )
        return self._json_patch(f"pin v{version} into Deployment {name}", name, ops)

    def _scale(
        self, color: Color, current: client.V1Deployment, replicas: int, *, park: bool = False
    ) -> int:
        """Set `spec.replicas`, conditional on the revision read, parked or not (see
        `rollout.parked`); returns the generation."""
        name = self.deployment_name(color)
        raw = self._api.sanitize_for_serialization(current)  # type: ignore[no-untyped-call]  # the client's serializer is untyped
        ops: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": metadata_of(current).resource_version,
            },
            {"op": "replace", "path": "/spec/replicas", "value": replicas},
            *(park_ops(raw, replicas) if park else unpark_ops(raw)),
        ]
        generation = self._json_patch(f"scale Deployment {name} to {replicas}", name, ops)
        log.info("scaled %s to %d replicas", name, replicas)
        return generation

    def _json_patch(self, what: str, name: str, ops: list[dict[str, Any]]) -> int:
        """Apply a JSON patch to a Deployment; a refusal fails the stage. The new generation."""
        try:
            patched = patch_object(
                what,
                self._apps.patch_namespaced_deployment,
                name,
                self._namespace,
                ops,
                content_type=JSON_PATCH,
            )
        except ApiException as exc:
            raise StageFailed(rejected(what, exc)) from None
        return int(metadata_of(patched).generation or 0)

    def _settle(self, color: Color, *, deadline: float) -> None:
        """Wait (bounded) until the color's EndpointSlices list every replica ready: the smoke
        test and the live notice then reach every pod, not a refused connection."""
        if not self._pod_endpoints:
            return
        wanted = spec_replicas(self._read_required(color))
        until = min(deadline, time.monotonic() + self._settle_s)
        while True:
            try:
                ready = len(self.ready_endpoints(color))
            except BackendUnavailable as exc:
                log.info("EndpointSlices of %s unreadable: %s", color, exc.detail)
                ready = 0
            if ready >= wanted:
                return
            if time.monotonic() >= until:
                log.warning(
                    "%s: %d of %d pods in the EndpointSlices after the rollout; going on",
                    self.deployment_name(color),
                    ready,
                    wanted,
                )
                return
            time.sleep(self._poll)

    def _roll_out(self, color: Color, rollout: _Rollout, cancel: Cancel) -> None:
        """Wait until the rollout is done, then for the color's EndpointSlices to list it."""
        self._wait_rolled_out(color, rollout, cancel)
        self._settle(color, deadline=rollout.deadline)

    def _wait_rolled_out(self, color: Color, rollout: _Rollout, cancel: Cancel) -> None:
        name, version = self.deployment_name(color), rollout.version
        while True:
            deployment = self._read_required(color)
            pinned = (metadata_of(deployment).annotations or {}).get(VERSION_ANNOTATION)
            if pinned != version:
                raise StageFailed(f"{name} was re-pinned to v{pinned} while staging v{version}")
            pending = rollout_pending(deployment, generation=rollout.generation)
            if pending is None:
                return
            failure = progress_deadline_exceeded(deployment, stale=rollout.stale)
            if failure is not None:
                raise StageFailed(f"{name} did not come up with v{version}: {failure}")
            remaining = rollout.deadline - time.monotonic()
            if remaining <= 0:
                raise StageTimeout(
                    f"{name} not ready with v{version} within {rollout.timeout:g} s: {pending}"
                )
            if (cancel or threading.Event()).wait(min(self._poll, remaining)):
                # The Deployment keeps its pin and finishes rolling out: the standby then
                # holds that version, as `pinned_version` says.
                raise StageCancelled(f"{name} left rolling out v{version}")
