"""What a test imports to use a sandbox: ``up``, ``down`` and the ``Sandbox`` handle.

Used by tests/sandbox/conftest.py and meant for any test tier on top (put ``scripts`` on
sys.path, or pytest's ``pythonpath``). ``up(dir, path=[...])`` runs ``scripts/kube-sandbox up``
(building the binaries first if the cache lacks them) with this interpreter and returns a
``Sandbox``; ``Sandbox.down()`` runs ``kube-sandbox down``. The handle reads DIR/sandbox.json
and DIR/services.json and offers an ``ApiClient`` of the official client as admin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "kube-sandbox"


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
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
    info: dict

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

    def services(self) -> dict[str, str]:
        """DIR/services.json: ``NAMESPACE/NAME[:PORT]`` -> ``http://127.0.0.1:PORT``."""
        try:
            return json.loads((self.dir / "services.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    @property
    def real_node(self) -> bool:
        return self.info.get("kind") == "real"

    def service_url(
        self, namespace: str, name: str, port: str | None = None, timeout: float = 30
    ) -> str:
        """The host-side URL of a Service (port name optional), waiting for it to appear.

        On the real node that is the Service's ClusterIP, which kube-proxy's rules translate
        on the host as they do on a pod; under the stand-in, its listener in services.json.
        """
        if self.real_node:
            return self._cluster_ip_url(namespace, name, port)
        key = f"{namespace}/{name}" + (f":{port}" if port else "")
        deadline = time.monotonic() + timeout
        while True:
            url = self.services().get(key)
            if url:
                return url
            if time.monotonic() > deadline:
                raise TimeoutError(f"{key} not in {self.dir / 'services.json'}")
            time.sleep(0.1)

    def _cluster_ip_url(self, namespace: str, name: str, port: str | None) -> str:
        from kubernetes import client

        svc = client.CoreV1Api(self.api_client()).read_namespaced_service(name, namespace)
        ports = [p for p in svc.spec.ports if port is None or p.name == port]
        if not ports:
            raise LookupError(f"{namespace}/{name} has no port {port!r}")
        return f"http://{svc.spec.cluster_ip}:{ports[0].port}"

    def api_client(self):
        """An ``ApiClient`` of the official client, as the sandbox's admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def env(self) -> dict[str, str]:
        """Environment for helm/kubectl subprocesses: KUBECONFIG pointing at the sandbox."""
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        if self.real_node:
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
        path = self.dir / "pods" / f"{namespace}_{pod}_{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def down(self, timeout: float = 180) -> None:
        r = _run(["down", str(self.dir)], timeout)
        if r.returncode != 0:
            raise RuntimeError(f"kube-sandbox down failed:\n{r.stderr}")


def up(
    directory: str | Path,
    *,
    path: list[str] | None = None,
    image_env: dict[str, str] | None = None,
    node: str = "real",
    images: list[str] | None = None,
    timeout: float = 420,
) -> Sandbox:
    """Start a sandbox in ``directory``.

    ``node``: ``real`` (kubelet, containerd, kube-proxy, CoreDNS; ``images`` are imported
    from podman's local store) or ``standin`` (pods as processes; ``path``: folders put
    first on the pods' PATH, ``image_env``: the environment an image would give).
    """
    build()
    args = ["up", str(directory), "--node", node]
    for image in images or []:
        args += ["--image", image]
    for p in path or []:
        args += ["--path", str(p)]
    for k, v in (image_env or {}).items():
        args += ["--image-env", f"{k}={v}"]
    args += ["--timeout", str(timeout - 30)]
    r = _run(args, timeout)
    if r.returncode != 0:
        raise RuntimeError(f"kube-sandbox up failed:\n{r.stdout}\n{r.stderr}")
    return Sandbox.load(directory)
