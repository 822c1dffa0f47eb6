"""What the chart must render for a real cluster, with the real helm (issue 12).

The controller's color URL follows `service.port`; Helm never renders a field the
controller owns (`spec.replicas`), so neither Helm 3's three-way merge nor Helm 4's
server-side apply resets or contests it between install and upgrade; an upgrade that
cannot see the cluster refuses to re-render the selector and pins from values; the
model servers hold their own credential, never the controller's API token; the
release-analysis defaults come from values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.kubernetes.colors import DeploymentColorBackend
from controller.settings import ControllerSettings
from model_server.settings import ModelServerSettings
from tests.support.chart import CHART, NAMESPACE, RELEASE

from .fake_apiserver import fake_apiserver, helm_owned
from .pods import only_container, process_env, secret_data


def by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def literal_env(deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def controller_settings(
    objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, root: Path
) -> ControllerSettings:
    """The settings the controller pod would read from its rendered environment and mounts."""
    secret = by_name(objects, "Secret", f"{RELEASE}-controller-token")
    env = process_env(
        by_name(objects, "Deployment", f"{RELEASE}-controller"),
        secrets={secret["metadata"]["name"]: secret_data(secret)},
        root=root,
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BLUEGREEN_K8S_NAMESPACE", NAMESPACE)  # the downward API's value
    return ControllerSettings()


@pytest.mark.parametrize("port", [80, 8080])
def test_the_color_url_uses_the_services_port(template, monkeypatch, tmp_path, port):
    objects = template("--set", f"service.port={port}")
    settings = controller_settings(objects, monkeypatch, tmp_path)
    backend = DeploymentColorBackend(
        namespace=settings.k8s_namespace,
        release=settings.k8s_release,
        api_client=None,  # type: ignore[arg-type]  # endpoint() makes no API call
        color_url_template=settings.k8s_color_url_template,
    )
    for color in ("blue", "green"):
        service = by_name(objects, "Service", f"{RELEASE}-{color}")
        (service_port,) = service["spec"]["ports"]
        assert service_port["port"] == port
        assert backend.endpoint(color) == f"http://{RELEASE}-{color}.{NAMESPACE}.svc:{port}"


def test_release_analysis_defaults_come_from_values(template, monkeypatch, tmp_path):
    analysis = {"shadowSeconds": 30, "minAgreement": 0.95, "bakeSeconds": 120, "maxP99Ratio": 2.5}
    objects = template("--set-json", f"controller.analysis={json.dumps(analysis)}")
    settings = controller_settings(objects, monkeypatch, tmp_path)
    assert (settings.shadow_s, settings.min_agreement, settings.bake_s) == (30, 0.95, 120)
    assert settings.analysis.max_p99_ratio == 2.5
    assert settings.analysis.min_requests == 50  # values.yaml's default, rendered too


def test_the_defaults_leave_analysis_off(template, monkeypatch, tmp_path):
    settings = controller_settings(template(), monkeypatch, tmp_path)
    assert (settings.shadow_s, settings.min_agreement, settings.bake_s) == (0, None, 0)


def test_model_servers_never_get_the_controllers_api_token(template, monkeypatch, tmp_path):
    """Each part reads exactly its own tokens from the mounted Secret, none from the env."""
    objects = template()
    secret = by_name(objects, "Secret", f"{RELEASE}-controller-token")
    data = secret_data(secret)
    secrets = {secret["metadata"]["name"]: data}
    for color in ("blue", "green"):
        deployment = by_name(objects, "Deployment", f"{RELEASE}-{color}")
        assert not [e for e in only_container(deployment)["env"] if "valueFrom" in e]
        env = process_env(deployment, secrets=secrets, root=tmp_path / color)
        files = {p.name: p.read_text() for p in (tmp_path / color).rglob("*") if p.is_file()}
        assert files == {"model-server-token": data["model-server-token"]}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert ModelServerSettings().admin_token == data["model-server-token"]  # type: ignore[call-arg]
    controller = by_name(objects, "Deployment", f"{RELEASE}-controller")
    assert not [
        e for e in only_container(controller)["env"] if "secretKeyRef" in e.get("valueFrom", {})
    ]
    settings = controller_settings(objects, monkeypatch, tmp_path / "controller")
    assert settings.token_value() == data["token"]
    assert settings.model_server_token_value() == data["model-server-token"]


# -- install, then upgrade: what Helm's merge would do to controller-owned fields -------------

NS = "prod"


def render(helm, *args: str) -> dict[tuple[str, str], dict[str, Any]]:
    proc = helm("template", RELEASE, str(CHART), "--namespace", NS, *args)
    assert proc.returncode == 0, proc.stderr
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(proc.stdout) if o}


def deployment_after_release(color: str, version: str, replicas: int) -> dict[str, Any]:
    """A color Deployment as the controller leaves it: re-pinned and scaled by the HPA."""
    return helm_owned(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": f"{RELEASE}-{color}",
                "namespace": NS,
                "annotations": {"bluegreen.io/model-version": version},
            },
            "spec": {"replicas": replicas},
        },
        RELEASE,
    )


def dropped_by_three_way_merge(old: Any, new: Any, path: str = "") -> list[str]:
    """Paths in the old manifest missing from the new one: Helm 3 deletes them (→ defaults)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    dropped = []
    for key, value in old.items():
        if key not in new:
            dropped.append(f"{path}/{key}")
        else:
            dropped += dropped_by_three_way_merge(value, new[key], f"{path}/{key}")
    return dropped


@pytest.mark.parametrize("autoscaling", ["true", "false"])
def test_an_upgrade_after_a_release_neither_drops_nor_sets_replicas(helm, helm_env, autoscaling):
    values = ["--set", f"autoscaling.enabled={autoscaling}", "--set", "modelServer.replicaCount=2"]
    install = render(helm, *values)  # green empty at install
    live_service = helm_owned(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": RELEASE, "namespace": NS},
            "spec": {"selector": {"bluegreen.io/color": "green"}},
        },
        RELEASE,
    )
    cluster = [
        deployment_after_release("blue", "1", 2),
        deployment_after_release("green", "2", 4),  # scaled past minReplicas by its HPA
        live_service,
    ]
    with fake_apiserver(cluster, helm_env) as (server, kubeconfig):
        upgrade = render(
            helm,
            *values,
            "--is-upgrade",
            "--dry-run=server",
            "--disable-openapi-validation",
            "--kubeconfig",
            str(kubeconfig),
        )
    assert not server.writes
    for color in ("blue", "green"):
        key = ("Deployment", f"{RELEASE}-{color}")
        assert dropped_by_three_way_merge(install[key], upgrade[key]) == []
        for rendered in (install[key], upgrade[key]):
            # rendered, Helm would own the field: Helm 3 resets it, Helm 4 SSA conflicts
            assert "replicas" not in rendered["spec"]
    assert (
        upgrade[("Deployment", f"{RELEASE}-green")]["metadata"]["annotations"][
            "bluegreen.io/model-version"
        ]
        == "2"
    )
    assert upgrade[("Service", RELEASE)]["spec"]["selector"]["bluegreen.io/color"] == "green"


def test_an_upgrade_that_cannot_see_the_cluster_refuses_to_render(helm):
    """`helm upgrade --dry-run=client` (lookup empty) must not reset the selector to values."""
    proc = helm("template", RELEASE, str(CHART), "--namespace", NS, "--is-upgrade")
    assert proc.returncode != 0
    assert "refusing to" in proc.stderr and "lookup is empty" in proc.stderr


def test_a_fresh_render_still_installs_from_values(helm):
    """`helm template` / Argo CD (IsInstall): values decide; see the README's ignoreDifferences."""
    objects = render(helm, "--set", "liveColor=green", "--set-string", "green.version=3")
    assert objects[("Service", RELEASE)]["spec"]["selector"]["bluegreen.io/color"] == "green"


def test_release_workflow_settings_come_from_values(template, monkeypatch, tmp_path):
    """Pause, its timeout, the rollback window and signed notifications reach the controller,
    the notification key as a mounted file."""
    objects = template(
        "--set",
        "controller.pause=true,controller.pauseTimeoutSeconds=900,controller.rollbackWindow=5,"
        "controller.scaleDownDelaySeconds=600,controller.standbyReplicas=1",
        "--set-json",
        'controller.notifications={"urls": ["https://hooks.example.invalid/a", '
        '"slack+https://hooks.slack.com/services/x"], "existingSecret": "bg-notify"}',
    )
    secret = by_name(objects, "Secret", f"{RELEASE}-controller-token")
    env = process_env(
        by_name(objects, "Deployment", f"{RELEASE}-controller"),
        secrets={secret["metadata"]["name"]: secret_data(secret), "bg-notify": {"secret": "k3y"}},
        root=tmp_path,
    )
    assert "BLUEGREEN_NOTIFY_SECRET" not in env  # a file, never the value in the env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BLUEGREEN_K8S_NAMESPACE", NAMESPACE)
    settings = ControllerSettings()
    assert (settings.pause, settings.pause_timeout_s, settings.rollback_window) == (True, 900, 5)
    assert (settings.scale_down_delay_s, settings.standby_replicas) == (600, 1)
    assert settings.notify_targets() == [
        "https://hooks.example.invalid/a",
        "slack+https://hooks.slack.com/services/x",
    ]
    assert settings.notify_secret_value() == "k3y"


def test_the_defaults_leave_pause_off_and_notifications_unset(template, monkeypatch, tmp_path):
    settings = controller_settings(template(), monkeypatch, tmp_path)
    assert (settings.pause, settings.notify_targets(), settings.notify_secret_value()) == (
        False,
        [],
        None,
    )
    assert settings.scale_down_delay_s is None  # the standby stays warm unless asked
    assert settings.standby_replicas == 0
