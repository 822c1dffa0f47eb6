"""Every ready pod of one color, from the EndpointSlices of its Service `R-<color>`.

A ClusterIP Service hands each connection to one pod, so a notice or a smoke test sent
through it reaches one pod of many. `DeploymentColorBackend.ready_endpoints` lists the
pods themselves here instead: the endpoints the EndpointSlice controller marks ready and
not terminating, at their `http` port, as base URLs (`http://10.1.2.3:8080`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from controller.errors import BackendUnavailable
from controller.kubernetes.api import REQUEST_TIMEOUT, call_api, rejected

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PORT_NAME = "http"


class EndpointSlices:
    """Lists the ready endpoints of one Service (verb `list` on endpointslices)."""

    def __init__(self, *, namespace: str, api_client: ApiClient) -> None:
        self._namespace = namespace
        self._discovery = client.DiscoveryV1Api(api_client)
        self._api = api_client

    def ready_urls(self, service: str) -> list[str]:
        what = f"list EndpointSlices of Service {service}"
        try:
            answer = call_api(
                what,
                lambda: self._discovery.list_namespaced_endpoint_slice(
                    self._namespace,
                    label_selector=f"{SERVICE_NAME_LABEL}={service}",
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )
        except ApiException as exc:
            raise BackendUnavailable(rejected(what, exc)) from None
        slices: list[dict[str, Any]] = self._api.sanitize_for_serialization(answer.items)  # type: ignore[no-untyped-call]  # the client's serializer is untyped
        urls: set[str] = set()
        for one in slices:
            labels = (one.get("metadata") or {}).get("labels") or {}
            if labels.get(SERVICE_NAME_LABEL) != service:
                continue  # the label selector is the server's job; do not trust it blindly
            urls.update(slice_urls(one))
        return sorted(urls)


def slice_urls(endpoint_slice: dict[str, Any]) -> list[str]:
    """Base URLs of the ready, not terminating endpoints of one slice (camelCase dict)."""
    ports = endpoint_slice.get("ports") or []
    port = next((p.get("port") for p in ports if p.get("name") == PORT_NAME), None)
    if port is None and len(ports) == 1:
        port = ports[0].get("port")
    if port is None:
        return []
    urls = []
    for endpoint in endpoint_slice.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        # An unset `ready` means ready (the API's documented default); terminating pods go.
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        for address in (endpoint.get("addresses") or [])[:1]:  # all addresses are one pod
            urls.append(f"http://{_host(address)}:{port}")
    return urls


def _host(address: str) -> str:
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:  # addressType FQDN
        return address
