"""Command lines and health checks of etcd, kube-apiserver and kube-controller-manager.

Called by the supervisor. All three listen on 127.0.0.1 only, on ports picked free at start
(recorded in state.json). The flags are the ones envtest and kubeadm use, with RBAC and Node
authorization on, NodeRestriction admission, service-account tokens signed by the sandbox's
key, and the Service range the sandbox owns.
"""

from __future__ import annotations

import http.client
import ssl
import time
from pathlib import Path

from kube_sandbox.layout import Layout, State

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


def etcd_argv(binary: Path, layout: Layout, state: State) -> list[str]:
    client = f"http://127.0.0.1:{state.ports['etcd']}"
    peer = f"http://127.0.0.1:{state.ports['etcd_peer']}"
    return [
        str(binary),
        "--name=sandbox",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=sandbox={peer}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
        "--quota-backend-bytes=2147483648",
    ]


def apiserver_address(state: State) -> str:
    """127.0.0.1 under the stand-in node; the node's address under the real one, where pods
    reach it through the ``kubernetes`` Service (kube-proxy sends it to that endpoint)."""
    return state.host_address if state.cgroup_root else "127.0.0.1"


def apiserver_argv(
    binary: Path, layout: Layout, state: State, *, real_node: bool = False
) -> list[str]:
    pki = layout.pki
    address = apiserver_address(state)
    node_flags = (
        [
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]
        if real_node
        # the stand-in proxy publishes the kubernetes Service itself
        else ["--endpoint-reconciler-type=none"]
    )
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{state.ports['etcd']}",
        f"--bind-address={address}",
        f"--secure-port={state.ports['apiserver']}",
        f"--advertise-address={address}",
        *node_flags,
        f"--cert-dir={pki / 'apiserver-generated'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        # front-proxy settings, so that delegated authentication in the controller-manager
        # finds a complete extension-apiserver-authentication ConfigMap (no client holds
        # a front-proxy-client certificate: nobody can assert identities through headers)
        f"--requestheader-client-ca-file={pki / 'ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        f"--service-cluster-ip-range={state.service_cidr}",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(binary: Path, layout: Layout, state: State) -> list[str]:
    pki = layout.pki
    kubeconfig = layout.component_kubeconfig("controller-manager")
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={state.ports['controller_manager']}",
        f"--cert-dir={pki / 'kcm-generated'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        "--controllers=*",
        f"--service-cluster-ip-range={state.service_cidr}",
        "--profiling=false",
        "--v=1",
    ]


def _ssl_context(layout: Layout, client: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    if client:
        ctx.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    return ctx


def http_ok(host: str, port: int, path: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        if ctx is None:
            conn = http.client.HTTPConnection(host, port, timeout=2)
        else:
            conn = http.client.HTTPSConnection(host, port, timeout=2, context=ctx)
        conn.request("GET", path)
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def wait_etcd(state: State, alive, timeout: float = 60) -> None:
    _wait(lambda: http_ok("127.0.0.1", state.ports["etcd"], "/health"), "etcd", alive, timeout)


def wait_apiserver(layout: Layout, state: State, alive, timeout: float = 90) -> None:
    ctx = _ssl_context(layout, client=True)
    _wait(
        lambda: http_ok(apiserver_address(state), state.ports["apiserver"], "/readyz", ctx),
        "kube-apiserver",
        alive,
        timeout,
    )


def wait_controller_manager(layout: Layout, state: State, alive, timeout: float = 60) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # it serves a self-signed certificate
    _wait(
        lambda: http_ok("127.0.0.1", state.ports["controller_manager"], "/healthz", ctx),
        "kube-controller-manager",
        alive,
        timeout,
    )


def _wait(check, what: str, alive, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise RuntimeError(f"{what} exited during start (see its log in DIR/logs/)")
        time.sleep(0.2)
    raise RuntimeError(f"{what} not healthy after {timeout:.0f} s (see DIR/logs/)")
