"""The chart's hardening, item by item: each on (or off) by default, switched by values,
rendered as Kubernetes expects (strict 1.34 schemas), and tied to what the parts really do.

- the controller's Role names its objects, and grants exactly the calls the controller's
  Kubernetes adapters make (read from their source, so a new call fails here first);
- each color rolls with a 100 % surge;
- a PodDisruptionBudget per color with 2 or more replicas;
- each color's pods spread across nodes;
- optional NetworkPolicies;
- Secrets reach the parts as files.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.client import ApiClient

from controller.kubernetes.colors import DeploymentColorBackend
from controller.kubernetes.journal import ConfigMapJournal
from controller.kubernetes.lease import LeaseLock
from controller.kubernetes.service_router import ServiceSelectorRouter
from tests.support.chart import CHART, K8S_VERSION, NAMESPACE, RELEASE, REPO

from .pods import only_container

COLORS = ("blue", "green")
CONTROLLER = f"{RELEASE}-controller"
ADAPTERS = REPO / "controller" / "kubernetes"

Objs = list[dict[str, Any]]


def of_kind(objects: Objs, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def validate(objects: Objs, kind: str) -> None:
    found = list(of_kind(objects, kind).values())
    assert found, f"no {kind} rendered"
    for obj in found:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def pod_spec(objects: Objs, color: str) -> dict[str, Any]:
    return of_kind(objects, "Deployment")[f"{RELEASE}-{color}"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- RBAC


# the Kubernetes client's method verb -> the RBAC verb it needs
CLIENT_VERBS = {"read": "get", "patch": "patch", "create": "create", "list": "list"}
CLIENT_VERBS |= {"replace": "update", "delete": "delete", "watch": "watch"}
# the client's resource spelling -> (API group, resource)
CLIENT_RESOURCES = {
    "deployment": ("apps", "deployments"),
    "service": ("", "services"),
    "config_map": ("", "configmaps"),
    "lease": ("coordination.k8s.io", "leases"),
    "endpoint_slice": ("discovery.k8s.io", "endpointslices"),
}


def controller_calls() -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every `*_namespaced_*` call in controller/kubernetes/."""
    calls = set()
    pattern = re.compile(r"^(\w+?)_namespaced_(\w+?)(_status)?$")
    for source in ADAPTERS.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Attribute) and (m := pattern.match(node.attr)):
                verb, resource = m.group(1), m.group(2)
                assert verb in CLIENT_VERBS, f"{source.name}: {node.attr}: add its RBAC verb"
                assert resource in CLIENT_RESOURCES, f"{source.name}: {node.attr}: unknown kind"
                calls.add((*CLIENT_RESOURCES[resource], CLIENT_VERBS[verb]))
    return calls


def role_grants(role: dict[str, Any]) -> dict[tuple[str, str, str], set[str] | None]:
    """(group, resource, verb) -> the names it is limited to (None: any name)."""
    grants: dict[tuple[str, str, str], set[str] | None] = {}
    for rule in role["rules"]:
        names = set(rule["resourceNames"]) if "resourceNames" in rule else None
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    key = (group, resource, verb)
                    assert key not in grants, f"{key} granted twice"
                    grants[key] = names
    return grants


def test_the_role_grants_exactly_the_calls_the_controller_makes(template):
    calls = controller_calls()
    assert ("apps", "deployments", "patch") in calls  # the scan sees the adapters' calls
    assert ("", "configmaps", "create") in calls
    grants = role_grants(of_kind(template(), "Role")[CONTROLLER])
    assert set(grants) == calls


def object_names(release: str) -> dict[tuple[str, str], set[str]]:
    """The objects the controller's adapters address by name, asked of the adapters."""
    api = ApiClient()
    kw: dict[str, Any] = {"namespace": NAMESPACE, "release": release, "api_client": api}
    colors = DeploymentColorBackend(**kw, color_url_template="http://x")
    return {
        ("apps", "deployments"): {colors.deployment_name(c) for c in COLORS},
        # the names the other adapters read and write (kept private by them)
        ("", "services"): {ServiceSelectorRouter(**kw)._name},
        ("", "configmaps"): {ConfigMapJournal(**kw)._name},
        ("coordination.k8s.io", "leases"): {LeaseLock(**kw)._name},
    }


@pytest.mark.parametrize("release", [RELEASE, "iris-prod"])
def test_every_named_verb_is_limited_to_the_controllers_own_objects(template, release):
    args = ["--set", f"fullnameOverride={release}"] if release != RELEASE else []
    objects = template(*args)
    role = of_kind(objects, "Role")[f"{release}-controller"]
    grants = role_grants(role)
    names = object_names(release)
    for (group, resource, verb), limited_to in grants.items():
        if verb in ("create", "list", "watch"):
            # RBAC cannot name these: a create's name is in its body, a list names nothing
            assert limited_to is None
            continue
        assert limited_to == names[(group, resource)], (group, resource, verb)
    kubernetes_validate.validate(role, K8S_VERSION, strict=True)


def test_the_role_comments_why_create_and_list_are_unnamed():
    text = (CHART / "templates" / "controller" / "role.yaml").read_text()
    assert "cannot limit\n  # `create` by name" in text
    assert "A list names no object" in text


# ---------------------------------------------------------------- rollout surge


def test_each_color_rolls_with_a_full_surge(template):
    for color in COLORS:
        strategy = of_kind(template(), "Deployment")[f"{RELEASE}-{color}"]["spec"]["strategy"]
        assert strategy == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0},
        }


def test_the_surge_is_a_value(template):
    objects = template("--set", "modelServer.strategy.rollingUpdate.maxSurge=1")
    for color in COLORS:
        dep = of_kind(objects, "Deployment")[f"{RELEASE}-{color}"]
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 1
    validate(objects, "Deployment")


@pytest.mark.parametrize("surge", ["all", "-1", "100"])
def test_the_schema_refuses_a_surge_kubernetes_would_not_take(helm, surge):
    proc = helm(
        "template",
        RELEASE,
        str(CHART),
        "--set-string",
        f"modelServer.strategy.rollingUpdate.maxSurge={surge}",
    )
    assert proc.returncode != 0 and "/modelServer/strategy/rollingUpdate/maxSurge" in proc.stderr


# ---------------------------------------------------------------- PodDisruptionBudget


def test_a_budget_per_color_by_default(template):
    objects = template()
    pdbs = of_kind(objects, "PodDisruptionBudget")
    assert set(pdbs) == {f"{RELEASE}-{c}" for c in COLORS}
    deployments = of_kind(objects, "Deployment")
    for color in COLORS:
        spec = pdbs[f"{RELEASE}-{color}"]["spec"]
        assert spec["maxUnavailable"] == 1 and "minAvailable" not in spec
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        selector = deployments[f"{RELEASE}-{color}"]["spec"]["selector"]
        assert spec["selector"] == selector
    validate(objects, "PodDisruptionBudget")


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "pdb.enabled=false"],
        ["--set", "modelServer.replicaCount=1"],
        ["--set", "autoscaling.enabled=true", "--set", "autoscaling.minReplicas=1"],
    ],
    ids=["off", "one-replica", "autoscaled-from-one"],
)
def test_no_budget_when_off_or_with_one_replica(template, args):
    assert not of_kind(template(*args), "PodDisruptionBudget")


def test_a_budget_follows_the_autoscalers_minimum(template):
    objects = template(
        "--set", "modelServer.replicaCount=1", "--set", "autoscaling.enabled=true"
    )  # minReplicas 2 by default
    assert len(of_kind(objects, "PodDisruptionBudget")) == 2


def test_min_available_replaces_max_unavailable(template):
    objects = template("--set", "pdb.minAvailable=50%")
    for pdb in of_kind(objects, "PodDisruptionBudget").values():
        assert pdb["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in pdb["spec"]
    validate(objects, "PodDisruptionBudget")


# ---------------------------------------------------------------- topology spread


def test_each_color_spreads_across_nodes_by_default(template):
    objects = template()
    for color in COLORS:
        pod = pod_spec(objects, color)
        dep = of_kind(objects, "Deployment")[f"{RELEASE}-{color}"]
        (spread,) = pod["topologySpreadConstraints"]
        assert spread == {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",  # a one-node cluster still schedules
            "labelSelector": {"matchLabels": dep["spec"]["selector"]["matchLabels"]},
            "matchLabelKeys": ["pod-template-hash"],
        }
        assert spread["labelSelector"]["matchLabels"]["bluegreen.io/color"] == color
    validate(objects, "Deployment")


def test_the_spread_is_off_by_value(template):
    objects = template("--set", "modelServer.topologySpread.enabled=false")
    for color in COLORS:
        assert "topologySpreadConstraints" not in pod_spec(objects, color)


def test_extra_constraints_follow_the_default_one(template):
    extra = [
        {
            "maxSkew": 2,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"a": "b"}},
        }
    ]
    objects = template(
        "--set-json",
        f"modelServer.topologySpreadConstraints={json.dumps(extra)}",
        "--set",
        "modelServer.topologySpread.whenUnsatisfiable=DoNotSchedule",
    )
    for color in COLORS:
        default, added = pod_spec(objects, color)["topologySpreadConstraints"]
        assert default["whenUnsatisfiable"] == "DoNotSchedule"
        assert added == extra[0]
    validate(objects, "Deployment")


def test_the_schema_refuses_an_unknown_spread_policy(helm):
    proc = helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "modelServer.topologySpread.whenUnsatisfiable=Maybe",
    )
    assert proc.returncode != 0 and "/modelServer/topologySpread/whenUnsatisfiable" in proc.stderr


# ---------------------------------------------------------------- NetworkPolicy


def test_no_network_policy_by_default(template):
    assert not of_kind(template(), "NetworkPolicy")


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_network_policies_admit_the_controller_the_other_color_and_values(template):
    allowed = [
        {"namespaceSelector": {"matchLabels": {"team": "web"}}},
        {"ipBlock": {"cidr": "198.18.0.0/15"}},
    ]
    objects = template(
        "--set", "networkPolicy.enabled=true",
        "--set-json", f"networkPolicy.modelServer.from={json.dumps(allowed)}",
    )  # fmt: skip
    policies = of_kind(objects, "NetworkPolicy")
    assert set(policies) == {f"{RELEASE}-model-server", CONTROLLER}
    validate(objects, "NetworkPolicy")
    pod_labels = {
        name: dep["spec"]["template"]["metadata"]["labels"]
        for name, dep in of_kind(objects, "Deployment").items()
    }

    servers = policies[f"{RELEASE}-model-server"]["spec"]
    assert servers["policyTypes"] == ["Ingress"]
    guarded = {n for n, labels in pod_labels.items() if selects(servers["podSelector"], labels)}
    assert guarded == {f"{RELEASE}-blue", f"{RELEASE}-green"}
    (rule,) = servers["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    pod_peers = [p["podSelector"] for p in rule["from"] if set(p) == {"podSelector"}]
    admitted = {n for n, labels in pod_labels.items() if any(selects(s, labels) for s in pod_peers)}
    assert admitted == {CONTROLLER, f"{RELEASE}-blue", f"{RELEASE}-green"}  # shadow: each other
    assert [p for p in rule["from"] if set(p) != {"podSelector"}] == allowed

    controller = policies[CONTROLLER]["spec"]
    guarded = {n for n, labels in pod_labels.items() if selects(controller["podSelector"], labels)}
    assert guarded == {CONTROLLER}
    assert controller["ingress"] == []  # nothing listed: nothing admitted


def test_the_controller_admits_what_values_list_on_its_port(template):
    allowed = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "airflow"}}}]
    objects = template(
        "--set", "networkPolicy.enabled=true",
        "--set-json", f"networkPolicy.controller.from={json.dumps(allowed)}",
    )  # fmt: skip
    validate(objects, "NetworkPolicy")
    (rule,) = of_kind(objects, "NetworkPolicy")[CONTROLLER]["spec"]["ingress"]
    assert rule == {"from": allowed, "ports": [{"protocol": "TCP", "port": "http"}]}
    ports = only_container(of_kind(objects, "Deployment")[CONTROLLER])["ports"]
    assert [p["name"] for p in ports] == ["http"]  # the port the policy names


@pytest.mark.parametrize(
    "peer", [{"cidr": "10.0.0.0/8"}, {"ipBlock": {}}, {}], ids=["bare-cidr", "no-cidr", "empty"]
)
def test_the_schema_refuses_a_malformed_peer(helm, peer):
    proc = helm(
        "template", RELEASE, str(CHART), "--set", "networkPolicy.enabled=true",
        "--set-json", f"networkPolicy.modelServer.from=[{json.dumps(peer)}]",
    )  # fmt: skip
    assert proc.returncode != 0 and "/networkPolicy/modelServer/from/0" in proc.stderr


# ---------------------------------------------------------------- Secrets as files


def test_no_secret_reaches_any_container_through_its_environment(rendered):
    for dep in rendered.of_kind("Deployment"):
        container = only_container(dep)
        refs = [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
        assert not refs, dep["metadata"]["name"]
        # envFrom only for mlflow.existingSecret (MLflow reads its token from the env only)
        expected = rendered.values["mlflow"]["existingSecret"]
        assert [e["secretRef"]["name"] for e in container.get("envFrom", [])] == (
            [expected] if expected else []
        )


def test_the_mlflow_file_secret_is_mounted_and_named_by_env(template):
    env_keys = {
        "AWS_SHARED_CREDENTIALS_FILE": "credentials",
        "GOOGLE_APPLICATION_CREDENTIALS": "gcs.json",
    }
    objects = template(
        "--set", "mlflow.fileSecret.name=mlflow-files",
        "--set-json", f"mlflow.fileSecret.env={json.dumps(env_keys)}",
    )  # fmt: skip
    validate(objects, "Deployment")
    for dep in of_kind(objects, "Deployment").values():
        pod = dep["spec"]["template"]["spec"]
        container = only_container(dep)
        volumes = {v["name"]: v for v in pod["volumes"]}
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "mlflow-files"]
        assert mount["readOnly"] is True
        assert volumes["mlflow-files"]["secret"] == {
            "secretName": "mlflow-files",
            "defaultMode": 0o440,
        }
        env = {e["name"]: e.get("value") for e in container["env"]}
        for name, key in env_keys.items():
            assert Path(env[name]) == Path(mount["mountPath"]) / key


def test_no_mlflow_file_secret_by_default(template):
    for dep in of_kind(template(), "Deployment").values():
        names = {v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert "mlflow-files" not in names
