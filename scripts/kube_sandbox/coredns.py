"""CoreDNS as the cluster DNS of the real node: the objects kubeadm would create, applied once.

Called by the supervisor after the node is Ready. CoreDNS runs as a Deployment from the image
``images`` builds, unprivileged, listening on 1053 (the ``kube-dns`` Service maps port 53 to
it) and answering only for ``cluster.local`` and the reverse zones: there is no upstream, so a
pod resolves Service and pod names and nothing else. The Service takes the ``.10`` address of
the sandbox's Service range, the address the kubelet writes into every pod's resolv.conf.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client, utils

from kube_sandbox.layout import State
from kube_sandbox.nodeconfig import CLUSTER_DOMAIN, COREDNS_IMAGE, dns_service_ip

NAMESPACE = "kube-system"
PORT = 1053
COREFILE = f""".:{PORT} {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
    reload
}}
"""
LABELS = {"k8s-app": "kube-dns"}


def objects(state: State) -> list[dict[str, Any]]:
    """The manifests, in the order they must be created."""
    ns = NAMESPACE
    rbac = "rbac.authorization.k8s.io/v1"
    container = {
        "name": "coredns",
        "image": COREDNS_IMAGE,
        "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
        "ports": [
            {"containerPort": PORT, "name": "dns", "protocol": "UDP"},
            {"containerPort": PORT, "name": "dns-tcp", "protocol": "TCP"},
        ],
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "50m", "memory": "70Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": ns},
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": ns},
            "data": {"Corefile": COREFILE},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": ns, "labels": LABELS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "priorityClassName": "system-cluster-critical",
                        "terminationGracePeriodSeconds": 5,
                        "containers": [container],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": LABELS},
            "spec": {
                "selector": LABELS,
                "clusterIP": dns_service_ip(state),
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": PORT, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": PORT, "protocol": "TCP"},
                ],
            },
        },
    ]


def apply(api: client.ApiClient, state: State) -> None:
    for obj in objects(state):
        utils.create_from_dict(api, obj)


def ready(api: client.ApiClient) -> bool:
    status = client.AppsV1Api(api).read_namespaced_deployment("coredns", NAMESPACE).status
    return bool(status and status.ready_replicas)
