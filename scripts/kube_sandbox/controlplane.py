"""Command lines and health checks of etcd, kube-apiserver and kube-controller-manager.

Called by the supervisor, which waits on the health checks. etcd and the controller-manager
listen on 127.0.0.1, the API server on the node's address, on ports picked free at start
(recorded in state.json). The flags are the ones envtest and kubeadm use, with RBAC and Node
authorization on, NodeRestriction admission, service-account tokens signed by the sandbox's
key, and the Service range the sandbox owns.
"""

from __future__ import annotations

import http.client
import ssl
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


def apiserver_argv(binary: Path, layout: Layout, state: State) -> list[str]:
    pki = layout.pki
    # The node's address: pods reach the API server through the ``kubernetes`` Service,
    # which kube-proxy sends to this endpoint.
    address = state.host_address
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{state.ports['etcd']}",
        f"--bind-address={address}",
        f"--secure-port={state.ports['apiserver']}",
        f"--advertise-address={address}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
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


def etcd_healthy(state: State) -> bool:
    return _http_ok("127.0.0.1", state.ports["etcd"], "/health")


def apiserver_ready(layout: Layout, state: State) -> bool:
    ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    ctx.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    return _http_ok(state.host_address, state.ports["apiserver"], "/readyz", ctx)


def _http_ok(host: str, port: int, path: str, ctx: ssl.SSLContext | None = None) -> bool:
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
