"""`TrafficRouter` on the live Service `R`: its selector `bluegreen.io/color` is the route.

Built by `controller.wiring` for the Kubernetes backend. The route's revision is the
Service's `metadata.resourceVersion`; a flip is one merge patch of that single selector
key carrying the revision read before, so the API server refuses it (409) when anyone
changed the Service meanwhile, and we report `RouteConflict` instead of clobbering.
"""

from __future__ import annotations

import logging

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from controller.domain import COLORS, Color, Route
from controller.errors import RouteConflict, RouterUnavailable
from controller.kubernetes.api import (
    COLOR_LABEL,
    REQUEST_TIMEOUT,
    ApiConflict,
    call_api,
    metadata_of,
    patch_object,
    rejected,
)

log = logging.getLogger("bluegreen.kubernetes.service_router")


class ServiceSelectorRouter:
    def __init__(self, *, namespace: str, release: str, api_client: ApiClient) -> None:
        self._namespace = namespace
        self._name = release
        self._core = client.CoreV1Api(api_client)

    def current(self) -> Route:
        service = self._read()
        color = (service.spec.selector or {}).get(COLOR_LABEL) if service.spec else None
        if color not in COLORS:
            raise RouterUnavailable(
                f"Service {self._name} selects {COLOR_LABEL}={color!r}, not blue or green"
            )
        live: Color = "blue" if color == "blue" else "green"
        return Route(color=live, revision=metadata_of(service).resource_version or "")

    def switch(self, *, to: Color, expected_revision: str) -> Route:
        before = self.current()
        if before.color == to:
            log.info("Service %s already routes to %s; nothing to switch", self._name, to)
            return before
        body = {
            "metadata": {"resourceVersion": expected_revision},
            "spec": {"selector": {COLOR_LABEL: to}},
        }
        try:
            service = patch_object(
                f"switch Service {self._name} to {to}",
                self._core.patch_namespaced_service,
                self._name,
                self._namespace,
                body,
                unavailable=RouterUnavailable,
            )
        except ApiConflict:
            return self._after_conflict(to, expected_revision)
        except ApiException as exc:
            raise RouterUnavailable(rejected(f"switch Service {self._name}", exc)) from None
        log.info("switched from %s to %s (Service %s)", before.color, to, self._name)
        return Route(color=to, revision=metadata_of(service).resource_version or "")

    def _after_conflict(self, to: Color, expected_revision: str) -> Route:
        now = self.current()
        if now.color == to:
            # Our own write may have landed before a retried request lost its answer; either
            # way traffic is where we wanted it.
            log.info("Service %s already routes to %s after a conflict", self._name, to)
            return now
        raise RouteConflict(
            f"Service {self._name} changed since revision {expected_revision} "
            f"(now {now.revision}, routing to {now.color}); not switching to {to}"
        )

    def _read(self) -> client.V1Service:
        try:
            return call_api(
                f"read Service {self._name}",
                lambda: self._core.read_namespaced_service(
                    self._name, self._namespace, _request_timeout=REQUEST_TIMEOUT
                ),
                unavailable=RouterUnavailable,
            )
        except ApiException as exc:
            raise RouterUnavailable(rejected(f"read Service {self._name}", exc)) from None
