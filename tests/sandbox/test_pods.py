"""The kubelet stand-in: termination, restarts, service accounts and RBAC, DNS, env, volumes."""

from __future__ import annotations

import json
import re
import time

from kubernetes.client.rest import ApiException

from tests.sandbox import helpers
from tests.sandbox.helpers import Kube, deployment, service, wait_for


def _pod(name: str, containers: list[dict], **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": containers, **spec},
    }


def _script_container(script: str, **extra) -> dict:
    return {
        "name": "main",
        "image": "example.invalid/job:1",
        "command": ["python3", "-c", script],
        **extra,
    }


def _run_to_end(kube: Kube, sandbox, ns: str, pod: dict, timeout: float = 60) -> str:
    kube.create(ns, pod)
    name = pod["metadata"]["name"]
    p = kube.wait_pod_phase(ns, name, {"Succeeded", "Failed"}, timeout)
    log = sandbox.pod_log(ns, name, pod["spec"]["containers"][0]["name"])
    assert p.status.phase == "Succeeded", log
    return log


def _last_json(log: str) -> dict:
    lines = [line for line in log.splitlines() if line.startswith("{")]
    assert lines, log
    return json.loads(lines[-1])


def test_delete_runs_pre_stop_then_sigterm_and_respects_grace(sandbox, kube: Kube, ns: str) -> None:
    container = helpers.server_container(
        env={"IGNORE_SIGTERM": "1"},
        pre_stop={"httpGet": {"path": "/prestop", "port": "http"}},
    )
    kube.create(ns, _pod("term", [container], terminationGracePeriodSeconds=3))
    wait_for("pod ready", lambda: kube.ready_pods(ns, "app=term"), 60)
    t0 = time.time()
    kube.core.delete_namespaced_pod("term", ns)

    def gone():
        try:
            kube.core.read_namespaced_pod("term", ns)
            return False
        except ApiException as e:
            return e.status == 404

    wait_for("pod removed from the API", gone, 30, interval=0.05)
    elapsed = time.time() - t0
    log = sandbox.pod_log(ns, "term", "server")
    stamps = {
        m.group(2): float(m.group(1))
        for m in re.finditer(r"^(\d+\.\d+) (prestop-http|sigterm|exiting)$", log, re.M)
    }
    assert "prestop-http" in stamps and "sigterm" in stamps, log
    assert t0 <= stamps["prestop-http"] <= stamps["sigterm"], stamps
    assert "exiting" not in stamps  # it ignored SIGTERM: the SIGKILL after the grace ended it
    assert 3 <= elapsed < 8, f"pod removed after {elapsed:.1f} s with a 3 s grace period"


def test_crashing_container_restarts_with_back_off(sandbox, kube: Kube, ns: str) -> None:
    script = "import sys, time; print('starting', flush=True); time.sleep(0.3); sys.exit(3)"
    kube.create(ns, _pod("crash", [_script_container(script)]))

    def restarted_twice():
        p = kube.core.read_namespaced_pod("crash", ns)
        cs = (p.status.container_statuses or [None])[0]
        return p if cs and cs.restart_count >= 2 else None

    p = wait_for("restartCount >= 2", restarted_twice, 40)
    cs = p.status.container_statuses[0]
    assert cs.last_state.terminated.exit_code == 3
    assert p.status.phase == "Running"
    events = kube.core.list_namespaced_event(ns, field_selector="involvedObject.name=crash").items
    assert "BackOff" in {e.reason for e in events}
    assert sandbox.pod_log(ns, "crash", "main").count("starting") >= 3


IN_CLUSTER = r"""
import json, os
from kubernetes import client, config
from kubernetes.client.rest import ApiException
config.load_incluster_config()
v1 = client.CoreV1Api()
out = {"host": os.environ["KUBERNETES_SERVICE_HOST"],
       "namespace": open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()}
out["configmap"] = v1.read_namespaced_config_map(
    "cfg", out["namespace"], _request_timeout=20).data["k"]
try:
    v1.list_namespaced_secret(out["namespace"], _request_timeout=20)
    out["secrets"] = "allowed"
except ApiException as e:
    out["secrets"] = e.status
print(json.dumps(out), flush=True)
"""


def test_service_account_in_cluster_client_and_rbac(sandbox, kube: Kube, ns: str) -> None:
    kube.create(ns, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}})
    kube.create(
        ns,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"k": "v"}},
    )
    kube.create(
        ns,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "read-cm"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        },
    )
    kube.create(
        ns,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        },
    )
    log = _run_to_end(
        kube,
        sandbox,
        ns,
        _pod(
            "incluster",
            [_script_container(IN_CLUSTER)],
            serviceAccountName="reader",
            restartPolicy="Never",
        ),
    )
    out = _last_json(log)
    assert out == {
        "host": sandbox.kubernetes_service_ip,
        "namespace": ns,
        "configmap": "v",
        "secrets": 403,
    }

    script = (
        "import os, json; print(json.dumps({'token': os.path.exists("
        "'/var/run/secrets/kubernetes.io/serviceaccount/token')}))"
    )
    log = _run_to_end(
        kube,
        sandbox,
        ns,
        _pod(
            "nomount",
            [_script_container(script)],
            automountServiceAccountToken=False,
            restartPolicy="Never",
        ),
    )
    assert _last_json(log) == {"token": False}


DNS_CLIENT = r"""
import json, os, socket, urllib.request
ns = os.environ["NS"]
names = [f"echo.{ns}.svc.cluster.local", f"echo.{ns}.svc", f"echo.{ns}", "echo"]
out = {n: socket.gethostbyname(n) for n in names}
out["body"] = urllib.request.urlopen(f"http://echo.{ns}.svc/", timeout=5).read().decode()
out["env"] = os.environ.get("ECHO_SERVICE_HOST")
out["hostname"] = socket.gethostname()
print(json.dumps(out), flush=True)
"""


def test_pod_resolves_and_reaches_a_service_by_name(sandbox, kube: Kube, ns: str) -> None:
    kube.create(ns, deployment("echo", replicas=1))
    kube.create(ns, service("echo"))
    kube.wait_available(ns, "echo", 1)
    ip = kube.core.read_namespaced_service("echo", ns).spec.cluster_ip
    client = _script_container(DNS_CLIENT, env=[{"name": "NS", "value": ns}])
    log = _run_to_end(kube, sandbox, ns, _pod("dns", [client], restartPolicy="Never"))
    out = _last_json(log)
    for name in (f"echo.{ns}.svc.cluster.local", f"echo.{ns}.svc", f"echo.{ns}", "echo"):
        assert out[name] == ip, out
    (pod,) = kube.ready_pods(ns, "app=echo")
    assert out["body"] == f"{pod.metadata.name} v1"
    assert out["env"] == ip  # enableServiceLinks
    assert out["hostname"] == "dns"


ENV_AND_FILES = r"""
import json, os
def read(p):
    return open(p).read()
print(json.dumps({
    "plain": os.environ["PLAIN"], "expanded": os.environ["EXPANDED"],
    "from_secret": os.environ["FROM_SECRET"], "from_cm": os.environ["FROM_CM"],
    "ns": os.environ["MY_NS"], "ip": os.environ["MY_IP"], "pfx_a": os.environ["P_a"],
    "secret_file": read("/etc/sandbox-secret/token"), "cm_file": read("/etc/sandbox-cm/a"),
    "cwd": os.getcwd(), "uid": os.getuid(),
    "scratch_writable": os.access("/scratch", os.W_OK),
}), flush=True)
"""


def test_env_volumes_and_security_context(sandbox, kube: Kube, ns: str) -> None:
    kube.create(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s"},
            "stringData": {"token": "t0ken"},
        },
    )
    kube.create(
        ns,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {"a": "1", "b": "2"},
        },
    )
    c = _script_container(
        ENV_AND_FILES,
        workingDir="/scratch",
        env=[
            {"name": "PLAIN", "value": "x"},
            {"name": "EXPANDED", "value": "$(PLAIN)-y"},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
            {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "b"}}},
            {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        envFrom=[{"configMapRef": {"name": "c"}, "prefix": "P_"}],
        volumeMounts=[
            {"name": "sec", "mountPath": "/etc/sandbox-secret", "readOnly": True},
            {"name": "cm", "mountPath": "/etc/sandbox-cm"},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
        securityContext={
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        },
    )
    pod = _pod(
        "envs",
        [c],
        restartPolicy="Never",
        automountServiceAccountToken=False,
        securityContext={"fsGroup": 10001},
        volumes=[
            {"name": "sec", "secret": {"secretName": "s"}},
            {"name": "cm", "configMap": {"name": "c"}},
            {"name": "scratch", "emptyDir": {}},
        ],
    )
    out = _last_json(_run_to_end(kube, sandbox, ns, pod))
    p = kube.core.read_namespaced_pod("envs", ns)
    assert out == {
        "plain": "x",
        "expanded": "x-y",
        "from_secret": "t0ken",
        "from_cm": "2",
        "ns": ns,
        "ip": p.status.pod_ip,
        "pfx_a": "1",
        "secret_file": "t0ken",
        "cm_file": "1",
        "cwd": "/scratch",
        "uid": 10001,
        "scratch_writable": True,
    }


def test_missing_command_is_reported(sandbox, kube: Kube, ns: str) -> None:
    c = {"name": "main", "image": "example.invalid/x:1", "command": ["no-such-binary-here"]}
    kube.create(ns, _pod("nocmd", [c], restartPolicy="Never"))

    def failed():
        p = kube.core.read_namespaced_pod("nocmd", ns)
        cs = (p.status.container_statuses or [None])[0]
        return cs if cs and cs.state.terminated else None

    cs = wait_for("the container failing to start", failed, 30)
    assert cs.state.terminated.reason == "StartError"
    assert "executable file not found" in cs.state.terminated.message


def test_liveness_failure_restarts_the_container(sandbox, kube: Kube, ns: str) -> None:
    c = helpers.server_container()
    c["startupProbe"] = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1}
    c["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    kube.create(ns, _pod("live", [c], terminationGracePeriodSeconds=2))
    wait_for("pod ready", lambda: kube.ready_pods(ns, "app=live"), 60)
    p = kube.core.read_namespaced_pod("live", ns)
    assert p.status.container_statuses[0].started is True
    helpers.http_get(f"http://{p.status.pod_ip}:8080/set-live?v=0")

    def restarted():
        cs = kube.core.read_namespaced_pod("live", ns).status.container_statuses[0]
        return cs if cs.restart_count >= 1 and cs.ready else None

    cs = wait_for("a restart after the liveness probe failed, and ready again", restarted, 40)
    assert cs.last_state.terminated is not None
    events = kube.core.list_namespaced_event(ns, field_selector="involvedObject.name=live").items
    assert any(e.reason == "Unhealthy" and "Liveness" in e.message for e in events)
    assert any(e.reason == "Killing" and "liveness" in e.message for e in events)
