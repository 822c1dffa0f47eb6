"""Names the emulated-cluster tests (`tests/kubernetes/`) install their release under, and
the color backend on it."""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient

from controller.kubernetes.colors import DeploymentColorBackend

NAMESPACE = "bluegreen-test"
RELEASE = "bg"
IN_CLUSTER_COLOR_URL = "http://{release}-{color}.{namespace}.svc:80"


def color_backend(api: ApiClient, **options: Any) -> DeploymentColorBackend:
    """The Deployment color backend on the emulated release (`poll_interval` etc. in options)."""
    return DeploymentColorBackend(
        namespace=NAMESPACE,
        release=RELEASE,
        api_client=api,
        color_url_template=IN_CLUSTER_COLOR_URL,
        **options,
    )
