"""Rendered-output tests of the bluegreen chart, for the default values and each ci file.

Every case is linted, rendered with the real helm, validated against the Kubernetes
1.34 schemas (strict), and its objects checked against the contract in DESIGN.md.
"""

from __future__ import annotations

import base64
import copy
import re
from typing import Any

import kubernetes_validate
import pytest

from tests.support.chart import CASES, CHART, K8S_VERSION, NAMESPACE, RELEASE, Rendered, values_args

COLORS = ("blue", "green")
CONTROLLER = f"{RELEASE}-controller"
TOKEN_SECRET = f"{RELEASE}-controller-token"

# (apiGroup, resource, resourceNames) -> verbs; () = any name (create and list take none)
EXPECTED_RBAC = {
    ("apps", "deployments", (f"{RELEASE}-blue", f"{RELEASE}-green")): {"get", "patch"},
    ("", "services", (RELEASE,)): {"get", "patch"},
    ("", "configmaps", (f"{RELEASE}-journal",)): {"get", "patch"},
    ("", "configmaps", ()): {"create"},
    ("coordination.k8s.io", "leases", (f"{RELEASE}-release-lock",)): {"get", "patch"},
    ("coordination.k8s.io", "leases", ()): {"create"},
    ("discovery.k8s.io", "endpointslices", ()): {"list"},
}
SECRETS_DIR = "/var/run/secrets/bluegreen"


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def expected_version(r: Rendered, color: str) -> str:
    """A color without a version starts as a warm copy of the live color's version."""
    live = r.values[r.values["liveColor"]].get("version") or ""
    return str(r.values[color].get("version") or live)


def token_secret_name(r: Rendered) -> str:
    return r.values["controller"].get("existingTokenSecret") or TOKEN_SECRET


def target_replicas(r: Rendered) -> int:
    """Replicas the controller keeps each color at."""
    if r.values["autoscaling"]["enabled"]:
        return int(r.values["autoscaling"]["minReplicas"])
    return int(r.values["modelServer"]["replicaCount"])


def token_volume(pod: dict[str, Any], container: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The mount path and secret source of the token volume."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tokens"]
    assert mount["readOnly"] is True
    return mount["mountPath"], volumes["tokens"]["secret"]


# ---------------------------------------------------------------- lint / schemas


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_strict(helm, case):
    proc = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *values_args(case))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_every_object_validates_against_kubernetes_schema(rendered):
    assert rendered.objects, "nothing rendered"
    for obj in rendered.objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:  # pragma: no cover - failure path
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {exc.path}")


# ---------------------------------------------------------------- inventory


def test_object_inventory(rendered):
    r = rendered
    pairs = {(o["kind"], o["metadata"]["name"]) for o in r.objects}
    expected = {
        ("Deployment", f"{RELEASE}-blue"),
        ("Deployment", f"{RELEASE}-green"),
        ("Deployment", CONTROLLER),
        ("Service", RELEASE),
        ("Service", f"{RELEASE}-blue"),
        ("Service", f"{RELEASE}-green"),
        ("Service", CONTROLLER),
        ("ServiceAccount", CONTROLLER),
        ("Role", CONTROLLER),
        ("RoleBinding", CONTROLLER),
    }
    if not r.values["controller"]["existingTokenSecret"]:
        expected.add(("Secret", TOKEN_SECRET))
    if r.values["pdb"]["enabled"] and target_replicas(r) >= 2:
        expected |= {("PodDisruptionBudget", f"{RELEASE}-{c}") for c in COLORS}
    if r.values["networkPolicy"]["enabled"]:
        expected |= {("NetworkPolicy", f"{RELEASE}-model-server"), ("NetworkPolicy", CONTROLLER)}
    if r.values["autoscaling"]["enabled"]:
        expected |= {("HorizontalPodAutoscaler", f"{RELEASE}-{c}") for c in COLORS}
    assert pairs == expected
    assert len(pairs) == len(r.objects), "duplicate objects rendered"


def test_standard_labels_and_namespace_on_every_object(rendered):
    for obj in rendered.objects:
        meta = obj["metadata"]
        labels = meta["labels"]
        where = f"{obj['kind']}/{meta['name']}"
        assert meta["namespace"] == NAMESPACE, where
        assert labels["app.kubernetes.io/name"] == "bluegreen", where
        assert labels["app.kubernetes.io/instance"] == RELEASE, where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        assert labels["helm.sh/chart"].startswith("bluegreen-"), where
        assert labels["app.kubernetes.io/version"], where
        assert labels["app.kubernetes.io/component"] in {"model-server", "controller", "live"}


# ---------------------------------------------------------------- model servers


@pytest.mark.parametrize("color", COLORS)
def test_color_deployment(rendered, color):
    r = rendered
    dep = r.get("Deployment", f"{RELEASE}-{color}")
    version = expected_version(r, color)
    meta, spec = dep["metadata"], dep["spec"]
    pod_meta, pod = spec["template"]["metadata"], spec["template"]["spec"]

    assert meta["labels"]["app.kubernetes.io/component"] == "model-server"
    assert meta["labels"]["bluegreen.io/color"] == color
    assert spec["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "bluegreen",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "model-server",
        "bluegreen.io/color": color,
    }
    assert matches(spec["selector"]["matchLabels"], pod_meta["labels"])

    # the pinned version: Deployment annotation == pod annotation == MODEL_VERSION env
    (container,) = pod["containers"]
    env = env_of(container)
    assert meta["annotations"]["bluegreen.io/model-version"] == version
    assert pod_meta["annotations"]["bluegreen.io/model-version"] == version
    assert env["MODEL_VERSION"]["value"] == version
    assert env["SERVING_COLOR"]["value"] == color
    assert env["MODEL_NAME"]["value"] == r.values["model"]["name"]
    assert env["MLFLOW_TRACKING_URI"]["value"] == r.values["mlflow"]["trackingUri"]
    assert env["TMPDIR"]["value"] == "/tmp" and env["HOME"]["value"] == "/tmp"
    # the model servers' own credential, never the controller's API token, as a file
    mount_path, source = token_volume(pod, container)
    assert source == {
        "secretName": token_secret_name(r),
        "defaultMode": 0o440,
        "items": [{"key": "model-server-token", "path": "model-server-token"}],
    }
    assert env["MODEL_SERVER_ADMIN_TOKEN_FILE"]["value"] == f"{mount_path}/model-server-token"
    assert mount_path.startswith(SECRETS_DIR)
    assert not [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert re.fullmatch(r"[0-9a-f]{64}", pod_meta["annotations"]["checksum/config"])

    # replicas are the controller's (or the HPA's): never rendered, so no Helm merge or
    # server-side apply touches them; the chart states its wish in an annotation instead
    assert "replicas" not in spec
    autoscaled = r.values["autoscaling"]["enabled"]
    target = (
        r.values["autoscaling"]["minReplicas"]
        if autoscaled
        else r.values["modelServer"]["replicaCount"]
    )
    assert meta["annotations"]["bluegreen.io/target-replicas"] == str(target)
    assert meta["annotations"]["bluegreen.io/autoscaled"] == str(autoscaled).lower()
    assert version, "every color holds a version: a pod never starts without one"

    # a terminating pod keeps serving while its endpoint leaves kube-proxy
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < pre_stop < pod["terminationGracePeriodSeconds"]

    assert container["command"] == ["bluegreen"]
    assert container["args"] == ["serve", "model", "--host", "0.0.0.0", "--port", "8080"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["image"].startswith("ghcr.io/bluegreen/bluegreen:")
    assert container["resources"] == r.values["modelServer"]["resources"]

    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "http"}
    # model load takes 30-60 s: the startup probe must allow well over a minute
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 120

    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"] is not None
    assert pod["automountServiceAccountToken"] is False

    existing = r.values["mlflow"]["existingSecret"]
    if existing:
        assert container["envFrom"] == [{"secretRef": {"name": existing}}]
    else:
        assert "envFrom" not in container


def test_color_deployments_differ_only_by_color(rendered):
    """Both Deployments come from one shared helper: normalise color and version, compare."""

    def normalised(color: str) -> dict[str, Any]:
        dep = copy.deepcopy(rendered.get("Deployment", f"{RELEASE}-{color}"))
        text = repr(dep)
        version = expected_version(rendered, color)
        text = text.replace(f"{RELEASE}-{color}", "R-COLOR").replace(f"'{color}'", "'COLOR'")
        text = text.replace(f"'bluegreen.io/model-version': '{version}'", "'MV': 'V'")
        text = text.replace(f"'value': '{version}'", "'value': 'V'")
        text = re.sub(r"'replicas': \d+, ", "", text)
        return text

    assert normalised("blue") == normalised("green")


# ---------------------------------------------------------------- services


def test_services_select_the_right_pods(rendered):
    r = rendered
    live_color = r.values["liveColor"]
    pod_labels = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in r.of_kind("Deployment")
    }
    expect = {
        RELEASE: f"{RELEASE}-{live_color}",
        f"{RELEASE}-blue": f"{RELEASE}-blue",
        f"{RELEASE}-green": f"{RELEASE}-green",
        CONTROLLER: CONTROLLER,
    }
    for svc_name, dep_name in expect.items():
        svc = r.get("Service", svc_name)
        selector = svc["spec"]["selector"]
        selected = sorted(n for n, labels in pod_labels.items() if matches(selector, labels))
        assert selected == [dep_name], f"Service {svc_name} selects {selected}"
        (port,) = svc["spec"]["ports"]
        assert port["targetPort"] == "http" and port["name"] == "http"
        assert port["port"] == 80

    live = r.get("Service", RELEASE)
    assert live["spec"]["selector"] == {
        "app.kubernetes.io/name": "bluegreen",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "model-server",
        "bluegreen.io/color": live_color,
    }
    assert live["metadata"]["annotations"]["bluegreen.io/managed-selector"] == "true"
    for color in COLORS:
        svc = r.get("Service", f"{RELEASE}-{color}")
        assert svc["spec"]["type"] == "ClusterIP"
        assert svc["spec"]["selector"]["bluegreen.io/color"] == color


# ---------------------------------------------------------------- controller


def test_stuck_rollouts_fail_before_the_controller_gives_up(rendered):
    """A crash-looping version must surface as StageFailed (with the reason), not a timeout."""
    stage_timeout = int(
        env_of(rendered.get("Deployment", CONTROLLER)["spec"]["template"]["spec"]["containers"][0])[
            "BLUEGREEN_STAGE_TIMEOUT_S"
        ]["value"]
    )
    for color in COLORS:
        deadline = rendered.get("Deployment", f"{RELEASE}-{color}")["spec"][
            "progressDeadlineSeconds"
        ]
        assert 10 <= deadline < stage_timeout


def test_controller_deployment(rendered):
    r = rendered
    dep = r.get("Deployment", CONTROLLER)
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert matches(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/component"] == "controller"
    assert pod["serviceAccountName"] == CONTROLLER
    assert re.fullmatch(
        r"[0-9a-f]{64}", spec["template"]["metadata"]["annotations"]["checksum/config"]
    )

    (container,) = pod["containers"]
    assert container["command"] == ["bluegreen"]
    assert container["args"] == ["serve", "controller", "--host", "0.0.0.0", "--port", "8080"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}

    env = env_of(container)
    c = r.values["controller"]
    assert env["BLUEGREEN_BACKEND"]["value"] == "kubernetes"
    assert env["BLUEGREEN_MODEL"]["value"] == r.values["model"]["name"]
    assert env["BLUEGREEN_K8S_RELEASE"]["value"] == RELEASE
    assert env["BLUEGREEN_K8S_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    # both tokens as files of the mounted Secret, neither in the environment
    mount_path, source = token_volume(pod, container)
    assert source == {
        "secretName": token_secret_name(r),
        "defaultMode": 0o440,
        "items": [
            {"key": "token", "path": "token"},
            {"key": "model-server-token", "path": "model-server-token"},
        ],
    }
    assert env["BLUEGREEN_TOKEN_FILE"]["value"] == f"{mount_path}/token"
    assert env["BLUEGREEN_MODEL_SERVER_TOKEN_FILE"]["value"] == f"{mount_path}/model-server-token"
    assert not [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert env["MLFLOW_TRACKING_URI"]["value"] == r.values["mlflow"]["trackingUri"]
    assert env["BLUEGREEN_LIVE_ALIAS"]["value"] == c["liveAlias"]
    assert env["BLUEGREEN_STAGE_TIMEOUT_S"]["value"] == str(c["stageTimeoutSeconds"])
    existing = r.values["mlflow"]["existingSecret"]
    assert container.get("envFrom") == ([{"secretRef": {"name": existing}}] if existing else None)

    sa = r.get("ServiceAccount", CONTROLLER)
    assert sa["automountServiceAccountToken"] is True


def test_rbac_is_least_privilege(rendered):
    r = rendered
    kinds = {o["kind"] for o in r.objects}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    role = r.get("Role", CONTROLLER)
    got: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "resourceNames", "verbs"}, rule
        names = tuple(sorted(rule.get("resourceNames", ())))
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource, names)
                assert key not in got, f"{key} granted twice"
                got[key] = set(rule["verbs"])
    assert "*" not in repr(role["rules"])
    assert got == EXPECTED_RBAC

    binding = r.get("RoleBinding", CONTROLLER)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": CONTROLLER,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": CONTROLLER, "namespace": NAMESPACE}
    ]


def test_token_secret(rendered):
    r = rendered
    if r.values["controller"]["existingTokenSecret"]:
        assert not r.of_kind("Secret")
        return
    secret = r.get("Secret", TOKEN_SECRET)
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", token)
    model_server_token = base64.b64decode(secret["data"]["model-server-token"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", model_server_token)
    assert model_server_token != token


# ---------------------------------------------------------------- security


def test_security_context_on_every_pod_and_container(rendered):
    for dep in rendered.of_kind("Deployment"):
        pod = dep["spec"]["template"]["spec"]
        where = dep["metadata"]["name"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert psc["runAsUser"] == 10001, where
        assert psc["fsGroup"] == 10001, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        containers = pod["containers"] + pod.get("initContainers", [])
        for container in containers:
            csc = container["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, where
            assert csc["allowPrivilegeEscalation"] is False, where
            assert csc["capabilities"] == {"drop": ["ALL"]}, where
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where
            assert container["resources"]["requests"], where


# ---------------------------------------------------------------- optional objects


def test_pdb_and_hpa_target_each_color(rendered):
    r = rendered
    pdbs = r.of_kind("PodDisruptionBudget")
    hpas = r.of_kind("HorizontalPodAutoscaler")
    assert bool(pdbs) == (r.values["pdb"]["enabled"] and target_replicas(r) >= 2)
    assert bool(hpas) == r.values["autoscaling"]["enabled"]
    for color in COLORS:
        dep = r.get("Deployment", f"{RELEASE}-{color}")
        if pdbs:
            pdb = r.get("PodDisruptionBudget", f"{RELEASE}-{color}")
            budget = {k: v for k, v in pdb["spec"].items() if k.lower().endswith("available")}
            if r.values["pdb"]["minAvailable"] is None:
                assert budget == {"maxUnavailable": r.values["pdb"]["maxUnavailable"]}
            else:
                assert budget == {"minAvailable": r.values["pdb"]["minAvailable"]}
            assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
            assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
        if hpas:
            a = r.values["autoscaling"]
            hpa = r.get("HorizontalPodAutoscaler", f"{RELEASE}-{color}")
            assert hpa["apiVersion"] == "autoscaling/v2"
            assert hpa["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": f"{RELEASE}-{color}",
            }
            assert hpa["spec"]["minReplicas"] == a["minReplicas"]
            assert hpa["spec"]["maxReplicas"] == a["maxReplicas"]
            (metric,) = hpa["spec"]["metrics"]
            assert metric["resource"]["name"] == "cpu"
            assert metric["resource"]["target"] == {
                "type": "Utilization",
                "averageUtilization": a["targetCPUUtilizationPercentage"],
            }
