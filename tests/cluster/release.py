"""One install of the real chart with the real helm in the sandbox, and what tests read of it.

``ChartRelease`` runs ``helm install/upgrade/rollback`` (helm v4, which applies server-side,
or helm v3, which merges three-way on the client) in a namespace of its own, reads the
objects the chart made and the controller changed (the live Service's selector, each
color's pin and replicas), and opens the controller's API at its Service's ClusterIP
(kube-proxy's rules work on the host too) with the token from the chart's Secret.
``sandbox_values`` holds the values the tier needs over the chart's defaults: where MLflow
is, and probe periods short enough for a test (the conftest adds the local image).
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kube_sandbox.fixture import Sandbox

from bluegreen.client import ControllerClient
from tests.support.chart import CHART
from tests.support.kube import Kube, wait_for

COLOR_LABEL = "bluegreen.io/color"
VERSION_ANNOTATION = "bluegreen.io/model-version"
HELM_TIMEOUT = "4m"
# The project's image from the node's containerd (imported from podman's store, no registry).
LOCAL_IMAGE = {"repository": "localhost/bluegreen", "tag": "dev", "pullPolicy": "Never"}


def sandbox_values(*, tracking_uri: str, model: str, version: str) -> dict[str, Any]:
    """Values over the chart's defaults: MLflow on the host address, fast probes, short waits.

    The containers run what the chart renders (`bluegreen serve ...`) from the image, so no
    command override is needed.
    """
    return {
        "mlflow": {"trackingUri": tracking_uri},
        "model": {"name": model},
        "blue": {"version": version},
        "modelServer": {
            "progressDeadlineSeconds": 60,
            "terminationGracePeriodSeconds": 10,
            "startupProbe": {"periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 120},
            "readinessProbe": {
                "periodSeconds": 1,
                "timeoutSeconds": 3,
                "failureThreshold": 2,
                "successThreshold": 1,
            },
            "livenessProbe": {"periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 6},
        },
        "controller": {"stageTimeoutSeconds": 120},
    }


@dataclass
class ChartRelease:
    sandbox: Sandbox
    kube: Kube
    helm: Path
    namespace: str
    name: str
    workdir: Path
    helm_major: int = 4
    _clients: list[ControllerClient] = field(default_factory=list)

    def _wait(self) -> list[str]:
        # helm v4 names its wait strategy; v3's --wait is a plain flag.
        return ["--wait=watcher" if self.helm_major >= 4 else "--wait", "--timeout", HELM_TIMEOUT]

    # -- helm ------------------------------------------------------------------------------

    def run_helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.helm), *args, "--namespace", self.namespace]
        done = subprocess.run(
            cmd, env=self.sandbox.env(), capture_output=True, text=True, timeout=300
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd[:3])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done

    def values_file(self, values: dict[str, Any], tag: str) -> Path:
        path = self.workdir / f"{self.name}-{tag}-values.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    def install(self, values: dict[str, Any]) -> None:
        self.run_helm(
            "install",
            self.name,
            str(CHART),
            "-f",
            str(self.values_file(values, "install")),
            *self._wait(),
        )
        self.wait_controller_ready()

    def install_warm(self, values: dict[str, Any], replicas: int = 2) -> None:
        """Install, then wait until both colors have ``replicas`` ready pods (before the first
        release green is a warm copy of the live version, never versionless)."""
        self.install(values)
        self.wait_color_ready("blue", replicas)
        self.wait_color_ready("green", replicas)

    def upgrade(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run_helm(
            "upgrade",
            self.name,
            str(CHART),
            "--reuse-values",
            *args,
            *self._wait(),
            check=check,
        )

    def rollback(self, revision: int, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run_helm(
            "rollback",
            self.name,
            str(revision),
            *self._wait(),
            check=check,
        )

    def uninstall(self) -> None:
        self.run_helm("uninstall", self.name, "--wait", "--timeout", "2m", check=False)
        for c in self._clients:
            c.close()

    # -- what the chart made and the controller changed -------------------------------------

    def deployment(self, color: str) -> Any:
        return self.kube.apps.read_namespaced_deployment(f"{self.name}-{color}", self.namespace)

    def pinned(self, color: str) -> str:
        return str((self.deployment(color).metadata.annotations or {}).get(VERSION_ANNOTATION, ""))

    def replicas(self, color: str) -> int:
        return int(self.deployment(color).spec.replicas or 0)

    def live_color(self) -> str:
        svc = self.kube.core.read_namespaced_service(self.name, self.namespace)
        return str(svc.spec.selector[COLOR_LABEL])

    def ready_pods(self, color: str) -> list[Any]:
        return self.kube.ready_pods(self.namespace, f"{COLOR_LABEL}={color}")

    def wait_color_ready(self, color: str, replicas: int, timeout: float = 180) -> None:
        self.kube.wait_available(self.namespace, f"{self.name}-{color}", replicas, timeout)

    def live_endpoint_ips(self) -> set[str]:
        """Addresses the live Service's EndpointSlices list as ready."""
        slices = self.kube.discovery.list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"kubernetes.io/service-name={self.name}"
        ).items
        return {
            addr
            for s in slices
            for ep in s.endpoints or []
            if ep.conditions and ep.conditions.ready
            for addr in ep.addresses
        }

    def pod_ips(self, color: str) -> set[str]:
        return {p.status.pod_ip for p in self.ready_pods(color)}

    # -- the controller ---------------------------------------------------------------------

    def token(self) -> str:
        secret = self.kube.core.read_namespaced_secret(
            f"{self.name}-controller-token", self.namespace
        )
        return base64.b64decode(secret.data["token"]).decode()

    def controller_pod(self) -> Any:
        pods = self.kube.ready_pods(self.namespace, "app.kubernetes.io/component=controller")
        assert len(pods) == 1, f"expected one ready controller pod, found {len(pods)}"
        return pods[0]

    def wait_controller_ready(self, timeout: float = 120) -> None:
        """The pod ready, and its Service answering at the ClusterIP: the real kube-proxy
        programs a new Service's rules a moment after its endpoint turns ready."""
        self.wait_color_ready("controller", 1, timeout)
        url = self.sandbox.service_url(self.namespace, f"{self.name}-controller")
        wait_for("the controller's Service", lambda: _answers(f"{url}/healthz"), timeout)

    def controller(self, timeout_s: float = 300) -> ControllerClient:
        url = self.sandbox.service_url(self.namespace, f"{self.name}-controller")
        c = ControllerClient(url, token=self.token(), timeout_s=timeout_s)
        self._clients.append(c)
        return c

    def live_url(self) -> str:
        return self.sandbox.service_url(self.namespace, self.name)

    def controller_log(self) -> str:
        return "\n".join(
            self.sandbox.pod_log(self.namespace, p.metadata.name, "controller")
            for p in self.kube.pods(self.namespace, "app.kubernetes.io/component=controller")
        )

    def wait_status(self, want: dict[str, str], timeout: float = 60) -> dict[str, Any]:
        """Poll the controller's /status until live color and version are what we want."""
        client = self.controller(timeout_s=10)

        def check() -> dict[str, Any] | None:
            try:
                s = client.status()
            except Exception:  # the controller may be restarting: not yet
                return None
            live = s.get("live") or {}
            return s if all(str(live.get(k)) == v for k, v in want.items()) else None

        return wait_for(f"controller status {want}", check, timeout)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
