"""What a test imports to use a node: ``up``, ``down`` and the ``Sandbox`` handle.

Used by the cluster tier (put ``scripts`` on sys.path, or pytest's ``pythonpath``).
``up(dir, images=[...])`` runs ``scripts/kube-sandbox up`` (building the binaries first if the
cache lacks them) with this interpreter and returns a ``Sandbox``; ``Sandbox.down()`` runs
``kube-sandbox down``. The handle reads DIR/sandbox.json and offers an ``ApiClient`` of the
official client as admin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent.parent / "kube-sandbox"


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBE_SANDBOX_PYTHON=sys.executable)
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def build(timeout: float = 3600) -> None:
    """Build the binaries unless cached (a cold build takes many minutes)."""
    r = subprocess.run(
        [str(SCRIPT), "build"],
        env=dict(os.environ, KUBE_SANDBOX_PYTHON=sys.executable),
        timeout=timeout,
    )
    if r.returncode != 0:
        raise RuntimeError("kube-sandbox build failed")


@dataclass
class Sandbox:
    dir: Path
    kubeconfig: Path
    apiserver: str
    host_address: str
    pod_cidr: str
    service_cidr: str
    kubernetes_service_ip: str
    node: str
    pid: int
    info: dict[str, Any]

    @classmethod
    def load(cls, directory: str | Path) -> Sandbox:
        d = Path(directory).resolve()
        info = json.loads((d / "sandbox.json").read_text())
        return cls(
            dir=d,
            kubeconfig=Path(info["kubeconfig"]),
            apiserver=info["apiserver"],
            host_address=info["host_address"],
            pod_cidr=info["pod_cidr"],
            service_cidr=info["service_cidr"],
            kubernetes_service_ip=info["kubernetes_service_ip"],
            node=info["node"],
            pid=int(info["pid"]),
            info=info,
        )

    def service_url(self, namespace: str, name: str, port: str | None = None) -> str:
        """The host-side URL of a Service (port name optional): its ClusterIP, which
        kube-proxy's rules translate on the host as they do on a pod."""
        from kubernetes import client

        spec = client.CoreV1Api(self.api_client()).read_namespaced_service(name, namespace).spec
        assert spec is not None
        ports = [p for p in spec.ports or [] if port is None or p.name == port]
        if not ports:
            raise LookupError(f"{namespace}/{name} has no port {port!r}")
        return f"http://{spec.cluster_ip}:{ports[0].port}"

    def api_client(self) -> Any:
        """An ``ApiClient`` of the official client, as the sandbox's admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def env(self) -> dict[str, str]:
        """Environment for helm/kubectl subprocesses: KUBECONFIG pointing at the sandbox."""
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            return str(
                client.CoreV1Api(self.api_client()).read_namespaced_pod_log(
                    pod, namespace, container=container
                )
            )
        except ApiException:
            return ""

    def down(self, timeout: float = 180) -> None:
        r = _run(["down", str(self.dir)], timeout)
        if r.returncode != 0:
            raise RuntimeError(f"kube-sandbox down failed:\n{r.stderr}")


def up(directory: str | Path, *, images: list[str] | None = None, timeout: float = 420) -> Sandbox:
    """Start a node in ``directory`` with ``images`` (from podman's local store) in its
    containerd."""
    build()
    args = ["up", str(directory)]
    for image in images or []:
        args += ["--image", image]
    args += ["--timeout", str(timeout - 30)]
    r = _run(args, timeout)
    if r.returncode != 0:
        raise RuntimeError(f"kube-sandbox up failed:\n{r.stdout}\n{r.stderr}")
    return Sandbox.load(directory)
