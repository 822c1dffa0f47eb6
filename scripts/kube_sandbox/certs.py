"""Certificates and kubeconfigs of one sandbox, made with the ``openssl`` command.

Called by the supervisor before the control plane starts. Makes, in DIR/pki: a CA; the
API server's serving certificate (SANs: 127.0.0.1, the ``kubernetes`` Service ClusterIP,
the host's bridge address and the ``kubernetes.default.svc...`` names); one client
certificate per identity (admin in ``system:masters``; the controller-manager, the node,
the scheduler, kube-proxy and the API server's kubelet client as the users Kubernetes'
bootstrap RBAC knows); and the service-account signing key pair. Then one kubeconfig per
identity, with the certificates embedded.
"""

from __future__ import annotations

import base64
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DAYS = "3650"


@dataclass(frozen=True)
class Identity:
    name: str  # file stem and kubeconfig user name
    common_name: str
    organization: str | None = None


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ec_key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))
    path.chmod(0o600)


def _sign(
    pki: Path,
    stem: str,
    cn: str,
    org: str | None,
    ext_lines: list[str],
    alt_names: list[str] | None = None,
) -> None:
    key, csr, crt = pki / f"{stem}.key", pki / f"{stem}.csr", pki / f"{stem}.crt"
    _ec_key(key)
    dn = [f"CN = {cn}"] + ([f"O = {org}"] if org else [])
    conf = [
        "[req]",
        "distinguished_name = dn",
        "prompt = no",
        "[dn]",
        *dn,
        "[ext]",
        *ext_lines,
    ]
    if alt_names:
        conf += ["subjectAltName = @alt", "[alt]", *alt_names]
    with tempfile.NamedTemporaryFile("w", suffix=".cnf", dir=pki, delete=False) as f:
        f.write("\n".join(conf) + "\n")
        cnf = f.name
    try:
        _openssl("req", "-new", "-key", str(key), "-config", cnf, "-out", str(csr))
        _openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki / "ca.crt"),
            "-CAkey",
            str(pki / "ca.key"),
            "-set_serial",
            _serial(),
            "-days",
            DAYS,
            "-sha256",
            "-extfile",
            cnf,
            "-extensions",
            "ext",
            "-out",
            str(crt),
        )
    finally:
        Path(cnf).unlink()
        csr.unlink(missing_ok=True)


def _serial() -> str:
    import secrets

    return "0x" + secrets.token_hex(16)


def make_pki(pki: Path, *, ip_sans: list[str], identities: list[Identity]) -> None:
    """CA, API server serving cert, client certs and the service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    _ec_key(pki / "ca.key")
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(pki / "ca.key"),
        "-subj",
        "/CN=kube-sandbox-ca",
        "-days",
        DAYS,
        "-sha256",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        str(pki / "ca.crt"),
    )
    dns = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    ]
    alt = [f"IP.{i + 1} = {ip}" for i, ip in enumerate(ip_sans)]
    alt += [f"DNS.{i + 1} = {name}" for i, name in enumerate(dns)]
    _sign(
        pki,
        "apiserver",
        "kube-apiserver",
        None,
        [
            "basicConstraints = critical,CA:FALSE",
            "keyUsage = critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage = serverAuth",
        ],
        alt,
    )
    for ident in identities:
        _sign(
            pki,
            ident.name,
            ident.common_name,
            ident.organization,
            [
                "basicConstraints = critical,CA:FALSE",
                "keyUsage = critical,digitalSignature,keyEncipherment",
                "extendedKeyUsage = clientAuth",
            ],
        )
    _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    (pki / "sa.key").chmod(0o600)
    _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, server: str, pki: Path, stem: str, user: str) -> None:
    """A kubeconfig for one identity, certificates embedded (valid on its own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: kube-sandbox
  cluster:
    server: {server}
    certificate-authority-data: {_b64(pki / "ca.crt")}
users:
- name: {user}
  user:
    client-certificate-data: {_b64(pki / f"{stem}.crt")}
    client-key-data: {_b64(pki / f"{stem}.key")}
contexts:
- name: kube-sandbox
  context:
    cluster: kube-sandbox
    user: {user}
    namespace: default
current-context: kube-sandbox
"""
    path.write_text(text)
    path.chmod(0o600)
