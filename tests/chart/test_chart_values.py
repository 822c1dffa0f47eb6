"""Chart tests beyond one values file: schema rejections, value-driven behaviour,
the lookup branches that keep controller-owned state across upgrades, and packaging.
"""

from __future__ import annotations

import base64
import re
import tarfile

import pytest
import yaml

from tests.support.chart import CHART, RELEASE


def _deployment(objs, name):
    (dep,) = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    return dep


def _env(dep):
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "liveColor=purple"], "/liveColor"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "mlflow.trackingUri="], "/mlflow/trackingUri"),
        (["--set", "model.name="], "/model/name"),
        (["--set-string", "blue.version=latest"], "/blue/version"),
        (["--set", "liveColor=green"], "/green/version"),  # live color without a version
        (["--set", "service.type=ExternalName"], "/service/type"),
        (["--set", "replicaCount=3"], "additional properties"),  # typo: not modelServer.
    ],
)
def test_schema_rejects_bad_values(helm, args, message):
    proc = helm("template", RELEASE, str(CHART), *args)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert "schema" in proc.stderr and message in proc.stderr, proc.stderr


def test_schema_requires_tracking_uri(helm, tmp_path):
    """mlflow.trackingUri is required: nulling it out fails validation."""
    values = tmp_path / "v.yaml"
    values.write_text("mlflow:\n  trackingUri: null\n")
    proc = helm("template", RELEASE, str(CHART), "-f", str(values))
    assert proc.returncode != 0
    assert "trackingUri" in proc.stderr


def test_schema_is_draft07_with_required_and_enums():
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert {"mlflow", "model", "liveColor"} <= set(schema["required"])
    assert schema["properties"]["mlflow"]["required"] == ["trackingUri"]
    assert schema["properties"]["liveColor"]["enum"] == ["blue", "green"]
    assert schema["properties"]["image"]["properties"]["pullPolicy"]["enum"] == [
        "Always",
        "IfNotPresent",
        "Never",
    ]


def test_integer_versions_are_rendered_as_strings(template):
    objs = template("--set", "blue.version=12", "--set", "green.version=13")
    for color, version in (("blue", "12"), ("green", "13")):
        dep = _deployment(objs, f"{RELEASE}-{color}")
        assert _env(dep)["MODEL_VERSION"]["value"] == version
        assert dep["metadata"]["annotations"]["bluegreen.io/model-version"] == version
        assert "replicas" not in dep["spec"]


def test_live_color_value_sets_live_selector(template):
    objs = template("--set", "liveColor=green", "--set-string", "green.version=5")
    (live,) = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == RELEASE]
    assert live["spec"]["selector"]["bluegreen.io/color"] == "green"


def test_token_is_random_per_install_when_no_secret_exists(template):
    """Fallback path of the token lookup: a fresh 32-char token each render."""

    def token():
        objs = template()
        (secret,) = [o for o in objs if o["kind"] == "Secret"]
        return base64.b64decode(secret["data"]["token"]).decode()

    first, second = token(), token()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", first)
    assert first != second


def test_checksum_changes_with_config(template):
    def checksums(*args):
        objs = template(*args)
        return {
            o["metadata"]["name"]: o["spec"]["template"]["metadata"]["annotations"][
                "checksum/config"
            ]
            for o in objs
            if o["kind"] == "Deployment"
        }

    base = checksums()
    assert base == checksums(), "checksum must be stable for the same values"
    changed = checksums("--set", "mlflow.trackingUri=http://other:5000")
    assert all(base[name] != changed[name] for name in base)
    # a controller-only setting rolls the controller, not the model servers
    ctl = checksums("--set", "controller.stageTimeoutSeconds=42")
    assert ctl[f"{RELEASE}-controller"] != base[f"{RELEASE}-controller"]
    assert ctl[f"{RELEASE}-blue"] == base[f"{RELEASE}-blue"]


def test_fullname_override_names_everything(template):
    objs = template("--set", "fullnameOverride=iris-prod")
    names = {o["metadata"]["name"] for o in objs}
    assert {"iris-prod", "iris-prod-blue", "iris-prod-green", "iris-prod-controller"} <= names
    ctl = _deployment(objs, "iris-prod-controller")
    assert _env(ctl)["BLUEGREEN_K8S_RELEASE"]["value"] == "iris-prod"


def test_extra_env_and_image_tag(template):
    objs = template(
        "--set",
        "image.tag=sha-abc123",
        "--set",
        "modelServer.extraEnv[0].name=WORKERS",
        "--set-string",
        "modelServer.extraEnv[0].value=2",
    )
    dep = _deployment(objs, f"{RELEASE}-blue")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/bluegreen/bluegreen:sha-abc123"
    assert _env(dep)["WORKERS"]["value"] == "2"


def test_image_tag_defaults_to_app_version(template):
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    dep = _deployment(template(), f"{RELEASE}-controller")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/bluegreen/bluegreen:{app_version}"


# ------------------------------------------------ lookup branches (empty in helm template)


def _helpers() -> str:
    return (CHART / "templates" / "_helpers.tpl").read_text()


def test_model_version_lookup_keeps_controller_pin():
    text = _helpers()
    block = text[text.index('define "bluegreen.modelVersion"') :]
    block = block[: block.index("{{- end }}\n\n")]
    assert 'lookup "apps/v1" "Deployment" $root.Release.Namespace $name' in block
    assert 'dig "metadata" "annotations" "bluegreen.io/model-version"' in block
    # both the Deployment annotation, the pod annotation and the env use that one value
    deployment = text[text.index('define "bluegreen.modelServer.deployment"') :]
    assert '$version := include "bluegreen.modelVersion"' in deployment
    assert deployment.count("bluegreen.io/model-version: {{ $version | quote }}") == 2
    assert "value: {{ .version | quote }}" in text


def test_live_selector_lookup_keeps_controller_color():
    text = _helpers()
    block = text[text.index('define "bluegreen.liveColor"') :]
    assert 'lookup "v1" "Service" .Release.Namespace $name' in block
    assert 'dig "spec" "selector" "bluegreen.io/color"' in block
    live = (CHART / "templates" / "model-server" / "service-live.yaml").read_text()
    assert 'include "bluegreen.liveColor"' in live


def test_token_lookup_keeps_existing_token():
    secret = (CHART / "templates" / "controller" / "secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in secret
    assert 'dig "data" "token" ""' in secret
    assert "randAlphaNum 32" in secret


# ------------------------------------------------ packaging, NOTES


def test_helm_package(helm, tmp_path):
    proc = helm("package", str(CHART), "--destination", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (archive,) = tmp_path.glob("bluegreen-*.tgz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "bluegreen/Chart.yaml" in names
    assert "bluegreen/values.schema.json" in names
    assert "bluegreen/templates/_helpers.tpl" in names
    assert "bluegreen/templates/NOTES.txt" in names
    assert not any(n.startswith("bluegreen/ci/") for n in names)
    # the packaged chart renders too
    proc = helm("template", RELEASE, str(archive))
    assert proc.returncode == 0, proc.stderr


def test_notes(helm):
    proc = helm("install", RELEASE, str(CHART), "--dry-run=client", "--namespace", "ns")
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout[proc.stdout.index("NOTES:") :]
    for needle in (
        f"port-forward svc/{RELEASE} 8080:80",
        f"port-forward svc/{RELEASE}-blue 8081:80",
        f"port-forward svc/{RELEASE}-green 8082:80",
        f"port-forward svc/{RELEASE}-controller 8090:80",
        f"get secret {RELEASE}-controller-token",
        "localhost:8080/model-info",
        "localhost:8090/status",
        "localhost:8090/switch",
        "localhost:8090/rollback",
        "Authorization: Bearer $BLUEGREEN_TOKEN",
    ):
        assert needle in notes, needle


def test_helpers_are_documented():
    text = _helpers()
    for name in ("name", "fullname", "labels", "selectorLabels"):
        define = re.escape('{{- define "bluegreen.' + name + '" -}}')
        m = re.search(r"\{\{/\*((?:(?!\*/).)*)\*/\}\}\n" + define, text, re.S)
        assert m and m.group(1).strip(), f"bluegreen.{name} lacks its one-line comment"
    # one shared pod spec for both colors
    assert text.count('define "bluegreen.modelServer.podSpec"') == 1
    deployments = (CHART / "templates" / "model-server" / "deployments.yaml").read_text()
    assert 'include "bluegreen.modelServer.deployment"' in deployments


def test_values_yaml_is_documented():
    """Every leaf value in values.yaml carries a `# --` comment (helm-docs style)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w-]*):(.*)$", line)
        if not m or not m.group(3).strip():
            continue  # a mapping header; its leaves are checked
        indent = len(m.group(1))
        j = i - 1
        documented = False
        while j >= 0 and lines[j].strip().startswith("#"):
            if lines[j].strip().startswith("# --"):
                documented = True
            j -= 1
        parent_documented = _parent_has_doc(lines, i, indent)
        if not (documented or parent_documented):
            undocumented.append(line.strip())
    assert not undocumented, undocumented


def _parent_has_doc(lines: list[str], i: int, indent: int) -> bool:
    """A leaf inside a documented block (e.g. resources:) counts as documented."""
    for j in range(i - 1, -1, -1):
        line = lines[j]
        if not line.strip() or line.strip().startswith("#"):
            continue
        cur = len(line) - len(line.lstrip())
        if cur < indent:
            k = j - 1
            while k >= 0 and lines[k].strip().startswith("#"):
                if lines[k].strip().startswith("# --"):
                    return True
                k -= 1
            indent = cur
            if cur == 0:
                return False
    return False
