"""`TrafficRouter` on the live Service `R`: its selector `bluegreen.io/color` is the route.

Built by `controller.wiring` for the Kubernetes backend. A flip is one JSON patch of that
single selector key: `test` that it still names the color we flip away from, then `replace`
it. The API server applies both or neither (a failed `test` is 422), so a flip never
clobbers someone else's, while unrelated writes to the Service during a long stage (a
label, a load balancer's status, a Helm upgrade) no longer abort the release, as a
whole-object `resourceVersion` precondition would. The route's revision is reported for
information (`GET /status`), not used as the precondition.
"""

from __future__ import annotations

import logging

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from controller.domain import COLORS, Color, Route, other_color
from controller.errors import RouteConflict, RouterUnavailable
from controller.kubernetes.api import (
    COLOR_LABEL,
    JSON_PATCH,
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
        path = "/spec/selector/" + COLOR_LABEL.replace("~", "~0").replace("/", "~1")
        ops = [
            {"op": "test", "path": path, "value": other_color(to)},
            {"op": "replace", "path": path, "value": to},
        ]
        try:
            service = patch_object(
                f"switch Service {self._name} to {to}",
                self._core.patch_namespaced_service,
                self._name,
                self._namespace,
                ops,
                content_type=JSON_PATCH,
                unavailable=RouterUnavailable,
            )
        except ApiConflict:
            return self._after_conflict(to, expected_revision)
        except ApiException as exc:
            if exc.status == 422:  # the `test` failed: someone flipped it since we read it
                return self._after_conflict(to, expected_revision)
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
            f"Service {self._name} no longer routes to {other_color(to)} "
            f"(now {now.color}, revision {now.revision}; read at {expected_revision}); "
            f"not switching to {to}"
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
