"""The state the controller owns survives a helm upgrade (the ``lookup`` branches).

``helm template`` alone never sees a cluster, so ``lookup`` is empty there. Here helm
renders with ``--dry-run=server`` against a read-only API stand-in holding the objects
as the controller left them: a version pinned into green, the live selector flipped to
green, the generated token. The render must keep all three rather than reset them to
values, and helm must not write anything.
"""

from __future__ import annotations

import base64

import yaml

from tests.support.chart import CHART, RELEASE

from .fake_apiserver import fake_apiserver, helm_owned

NS = "prod"


def _existing_objects() -> list[dict]:
    token = base64.b64encode(b"K" * 32).decode()
    objects = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": f"{RELEASE}-green",
                "namespace": NS,
                "annotations": {"bluegreen.io/model-version": "9"},
            },
            "spec": {},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": f"{RELEASE}-blue",
                "namespace": NS,
                "annotations": {"bluegreen.io/model-version": "8"},
            },
            "spec": {},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": RELEASE, "namespace": NS},
            "spec": {"selector": {"bluegreen.io/color": "green"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{RELEASE}-controller-token", "namespace": NS},
            "data": {"token": token},
        },
    ]
    return [helm_owned(o, RELEASE) for o in objects]


def _render(helm, kubeconfig, *args):
    proc = helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NS,
        "--dry-run=server",
        "--disable-openapi-validation",
        "--kubeconfig",
        str(kubeconfig),
        *args,
    )
    assert proc.returncode == 0, proc.stderr
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(proc.stdout) if o}


def _model_version(dep):
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}["MODEL_VERSION"]


def test_upgrade_keeps_controller_pins_selector_and_token(helm, helm_env):
    with fake_apiserver(_existing_objects(), helm_env) as (server, kubeconfig):
        # values say: blue live on "1", green empty; the cluster says otherwise
        objs = _render(
            helm, kubeconfig, "--set", "liveColor=blue", "--set-string", "blue.version=1"
        )

    assert not server.writes, f"helm wrote to the cluster: {server.writes}"
    for path in (
        f"/apis/apps/v1/namespaces/{NS}/deployments/{RELEASE}-green",
        f"/api/v1/namespaces/{NS}/services/{RELEASE}",
        f"/api/v1/namespaces/{NS}/secrets/{RELEASE}-controller-token",
    ):
        assert path in server.reads, f"lookup never asked for {path}"

    for color, version in (("green", "9"), ("blue", "8")):
        dep = objs[("Deployment", f"{RELEASE}-{color}")]
        assert dep["metadata"]["annotations"]["bluegreen.io/model-version"] == version
        pod_annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert pod_annotations["bluegreen.io/model-version"] == version
        assert _model_version(dep) == version
        # the controller owns replicas: an upgrade renders none, as the install did
        assert "replicas" not in dep["spec"]

    live = objs[("Service", RELEASE)]
    assert live["spec"]["selector"]["bluegreen.io/color"] == "green"

    secret = objs[("Secret", f"{RELEASE}-controller-token")]
    assert base64.b64decode(secret["data"]["token"]) == b"K" * 32


def test_first_install_against_empty_cluster_uses_values(helm, helm_env):
    with fake_apiserver([], helm_env) as (server, kubeconfig):
        objs = _render(helm, kubeconfig, "--set-string", "blue.version=5")

    assert not server.writes
    assert f"/api/v1/namespaces/{NS}/services/{RELEASE}" in server.reads
    assert _model_version(objs[("Deployment", f"{RELEASE}-blue")]) == "5"
    green = objs[("Deployment", f"{RELEASE}-green")]
    assert _model_version(green) == "5"  # a warm copy of the live version, never empty
    assert "replicas" not in green["spec"]
    assert objs[("Service", RELEASE)]["spec"]["selector"]["bluegreen.io/color"] == "blue"
    token = base64.b64decode(objs[("Secret", f"{RELEASE}-controller-token")]["data"]["token"])
    assert len(token) == 32 and token != b"K" * 32
