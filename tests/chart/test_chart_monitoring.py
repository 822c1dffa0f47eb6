"""The chart's monitoring objects: a ServiceMonitor, a PrometheusRule and the Grafana
dashboard's ConfigMap, each behind its own switch and all off by default.

Rendered with the real helm; the ServiceMonitor and the PrometheusRule validated against
the `openAPIV3Schema` of the Prometheus Operator's own CRDs (`scripts/monitoring-crds`
puts them in `.tools/crds`; `.ci/run` calls it), strictly: a field the CRD does not know is
an error, as under `kubectl apply --validate=strict`. The ConfigMap against the Kubernetes
schemas, as every other object of the chart. The rules and the dashboard must be the chart's
files themselves, and the rules must pass `promtool check rules`. Every PromQL expression of
the dashboard and the rules parses (Prometheus's own parser, through promtool) and names only
series the project exports (the real metric objects of the model server and the controller)
or the rules record; whether each query returns data is tests/prometheus's.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml

from controller.metrics import ControllerMetrics
from model_server.metrics import ServingMetrics
from tests.support.chart import CHART, K8S_VERSION, NAMESPACE, RELEASE, REPO
from tests.support.prometheus import dashboard_queries, promtool

CRDS = REPO / ".tools" / "crds"
RULES = CHART / "files" / "prometheus" / "rules.yml"
DASHBOARD = CHART / "files" / "grafana" / "bluegreen-dashboard.json"
VALUES_SCHEMA = json.loads((CHART / "values.schema.json").read_text())

SERVICE_MONITOR = "metrics.serviceMonitor.enabled=true"
PROMETHEUS_RULE = "metrics.prometheusRule.enabled=true"
DASHBOARDS = "grafana.dashboards.enabled=true"
# switch -> the (kind, name) it adds
SWITCHES = {
    SERVICE_MONITOR: ("ServiceMonitor", RELEASE),
    PROMETHEUS_RULE: ("PrometheusRule", RELEASE),
    DASHBOARDS: ("ConfigMap", f"{RELEASE}-dashboard"),
}
# Every knob of the ServiceMonitor set, so the CRD sees each field the chart can render.
SERVICE_MONITOR_KNOBS = [
    "--set",
    SERVICE_MONITOR,
    "--set",
    "metrics.serviceMonitor.interval=30s",
    "--set",
    "metrics.serviceMonitor.scrapeTimeout=10s",
    "--set-json",
    'metrics.serviceMonitor.additionalLabels={"release":"kube-prometheus-stack"}',
    "--set-json",
    'metrics.serviceMonitor.relabelings=[{"sourceLabels":["__meta_kubernetes_pod_node_name"],'
    '"targetLabel":"node"}]',
    "--set-json",
    'metrics.serviceMonitor.metricRelabelings=[{"sourceLabels":["__name__"],'
    '"regex":"python_gc_.*","action":"drop"}]',
]


# ---------------------------------------------------------------- the CRDs' schemas


def crd_schema(plural: str) -> dict[str, Any]:
    """`openAPIV3Schema` of the served v1 of monitoring.coreos.com's `plural`, made strict."""
    path = CRDS / f"monitoring.coreos.com_{plural}.yaml"
    if not path.is_file():
        pytest.fail(f"{path} missing: run `scripts/monitoring-crds {CRDS}` (what .ci/run does)")
    crd = yaml.safe_load(path.read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1" and v["served"]]
    return strict(v1["schema"]["openAPIV3Schema"])


def strict(node: Any) -> Any:
    """The schema with `additionalProperties: false` on every object that lists its fields
    and does not keep unknown ones: the API server drops (or, strict, refuses) a field its
    structural schema does not name, where plain JSON Schema would let it through."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items()}
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_errors(obj: dict[str, Any], plural: str) -> list[str]:
    validator = jsonschema.Draft7Validator(crd_schema(plural))
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


# ---------------------------------------------------------------- helpers


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        held = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not held:
            return False
    return True


# ---------------------------------------------------------------- the switches


def test_nothing_monitoring_is_rendered_by_default(template):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in template()}
    assert not kinds & set(SWITCHES.values())
    assert all(o["apiVersion"] != "monitoring.coreos.com/v1" for o in template())


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_adds_its_own_object_and_nothing_else(template, switch):
    default = {(o["kind"], o["metadata"]["name"]) for o in template()}
    on = {(o["kind"], o["metadata"]["name"]) for o in template("--set", switch)}
    assert on - default == {SWITCHES[switch]}
    assert default <= on


def test_monitoring_objects_carry_the_standard_labels(template):
    args = [arg for switch in SWITCHES for arg in ("--set", switch)]
    for kind, name in SWITCHES.values():
        meta = one(template(*args), kind, name)["metadata"]
        labels = meta["labels"]
        assert meta["namespace"] == NAMESPACE
        assert labels["app.kubernetes.io/instance"] == RELEASE, kind
        assert labels["app.kubernetes.io/name"] == "bluegreen", kind
        assert labels["app.kubernetes.io/managed-by"] == "Helm", kind
        assert labels["app.kubernetes.io/component"] == "monitoring", kind


# ---------------------------------------------------------------- ServiceMonitor


def test_the_service_monitor_validates_against_its_crd(template):
    monitor = one(template(*SERVICE_MONITOR_KNOBS), "ServiceMonitor", RELEASE)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert crd_errors(monitor, "servicemonitors") == []
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "10s")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # the user's relabelings come after the chart's own, and metric relabelings are kept
    assert endpoint["relabelings"][-1]["targetLabel"] == "node"
    assert endpoint["metricRelabelings"] == [
        {"sourceLabels": ["__name__"], "regex": "python_gc_.*", "action": "drop"}
    ]


def test_the_crd_check_can_fail(template):
    """A misspelt field and a wrong type are both caught by the strict CRD schema."""
    monitor = one(template("--set", SERVICE_MONITOR), "ServiceMonitor", RELEASE)
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    monitor["spec"]["endpoints"][0]["path"] = 7
    errors = crd_errors(monitor, "servicemonitors")
    assert any("intervall" in e for e in errors), errors
    assert any(e.startswith("spec/endpoints/0/path") for e in errors), errors


def test_the_service_monitor_scrapes_both_colors_and_the_controller_once(template):
    """Its selector picks the per-color Services and the controller's, not the live Service
    (same pods as one color), and its port is the one each of them names `http`."""
    objects = template("--set", SERVICE_MONITOR)
    monitor = one(objects, "ServiceMonitor", RELEASE)
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    services = [o for o in objects if o["kind"] == "Service"]
    picked = {
        s["metadata"]["name"]
        for s in services
        if selects(spec["selector"], s["metadata"]["labels"])
    }
    assert picked == {f"{RELEASE}-blue", f"{RELEASE}-green", f"{RELEASE}-controller"}
    (endpoint,) = spec["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert "interval" in endpoint  # 15s by default: the rules' 1m rates need >= 2 scrapes
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    for service in (s for s in services if s["metadata"]["name"] in picked):
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        pods = [
            d["spec"]["template"]
            for d in deployments
            if selects(
                {"matchLabels": service["spec"]["selector"]},
                d["spec"]["template"]["metadata"]["labels"],
            )
        ]
        assert pods, service["metadata"]["name"]
        for pod in pods:
            ports = [p for c in pod["spec"]["containers"] for p in c.get("ports", [])]
            assert port["targetPort"] in {p["name"] for p in ports}


def test_the_service_monitor_keeps_the_model_servers_endpoint_label(template):
    """The operator adds a target label `endpoint` (the port name); the chart drops it so
    the samples' own `endpoint` label, which the recording rules filter on, survives."""
    (endpoint,) = one(template("--set", SERVICE_MONITOR), "ServiceMonitor", RELEASE)["spec"][
        "endpoints"
    ]
    assert "endpoint" in RULES.read_text()
    drops = [
        r
        for r in endpoint["relabelings"]
        if r.get("action", "").lower() == "labeldrop" and re.fullmatch(r["regex"], "endpoint")
    ]
    assert drops, endpoint["relabelings"]


# ---------------------------------------------------------------- PrometheusRule


def test_the_prometheus_rule_validates_against_its_crd(template):
    rule = one(
        template(
            "--set",
            PROMETHEUS_RULE,
            "--set-json",
            'metrics.prometheusRule.additionalLabels={"release":"kube-prometheus-stack"}',
        ),
        "PrometheusRule",
        RELEASE,
    )
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert crd_errors(rule, "prometheusrules") == []
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_the_prometheus_rule_is_the_rules_file(template):
    rule = one(template("--set", PROMETHEUS_RULE), "PrometheusRule", RELEASE)
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_the_prometheus_rule_alerts_on_a_failed_release_and_a_bake_rollback(template):
    rule = one(template("--set", PROMETHEUS_RULE), "PrometheusRule", RELEASE)
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    for status in ("aborted", "rolled_back"):
        matching = [a for a in alerts if f'status="{status}"' in a["expr"]]
        assert matching, f"no alert on a switch that ended {status}"
    # the annotations' templates reach Prometheus as written, not rendered away by helm
    assert any("{{ $value" in a["annotations"].get("description", "") for a in alerts)


def test_the_prometheus_rule_passes_promtool(template, tmp_path):
    """What the operator's admission webhook checks: the groups load as Prometheus rules."""
    rule = one(template("--set", PROMETHEUS_RULE), "PrometheusRule", RELEASE)
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    rules = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    assert f"{rules} rules found" in done.stdout, done.stdout


# ---------------------------------------------------------------- Grafana dashboard


def test_the_dashboard_configmap_holds_the_dashboard_file(template):
    config = one(template("--set", DASHBOARDS), "ConfigMap", f"{RELEASE}-dashboard")
    kubernetes_validate.validate(config, K8S_VERSION, strict=True)
    ((key, text),) = config["data"].items()
    assert key.endswith(".json")
    assert json.loads(text) == json.loads(DASHBOARD.read_text())
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in config["metadata"]


def test_the_dashboard_configmap_follows_the_sidecars_settings(template):
    config = one(
        template(
            "--set",
            DASHBOARDS,
            "--set",
            "grafana.dashboards.label=grafana.com/dashboard",
            "--set-string",
            "grafana.dashboards.labelValue=bluegreen",
            "--set",
            "grafana.dashboards.namespace=monitoring",
            "--set",
            "grafana.dashboards.folder=ML releases",
            "--set",
            "grafana.dashboards.folderAnnotation=grafana.com/folder",
        ),
        "ConfigMap",
        f"{RELEASE}-dashboard",
    )
    kubernetes_validate.validate(config, K8S_VERSION, strict=True)
    meta = config["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["grafana.com/dashboard"] == "bluegreen"
    assert "grafana_dashboard" not in meta["labels"]
    assert meta["annotations"] == {"grafana.com/folder": "ML releases"}


# ---------------------------------------------------------------- values schema


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "metrics.serviceMonitor.interval=15"], "/metrics/serviceMonitor/interval"),
        (
            ["--set", "metrics.serviceMonitor.interval=15 seconds"],
            "/metrics/serviceMonitor/interval",
        ),
        (
            ["--set", "metrics.serviceMonitor.scrapeTimeout=1x"],
            "/metrics/serviceMonitor/scrapeTimeout",
        ),
        (
            ["--set", "metrics.prometheusRule.additionalLabels.team=7"],
            "/metrics/prometheusRule/additionalLabels/team",
        ),
        (["--set", "grafana.dashboards.label=a label"], "/grafana/dashboards/label"),
        (
            ["--set", "grafana.dashboards.namespace=Not_A_Namespace"],
            "/grafana/dashboards/namespace",
        ),
        (["--set", "metrics.serviceMonitor.enable=true"], "additional properties"),
        (["--set", "grafana.dashboards.enabled=yes please"], "/grafana/dashboards/enabled"),
    ],
)
def test_schema_refuses_bad_monitoring_values(helm, args, message):
    proc = helm("template", RELEASE, str(CHART), *args)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert "schema" in proc.stderr and message in proc.stderr, proc.stderr


def test_the_values_schema_takes_durations_as_the_crd_does():
    """The schema refuses at `helm install` what the CRD would refuse at apply."""
    monitor = VALUES_SCHEMA["properties"]["metrics"]["properties"]["serviceMonitor"]
    endpoint = crd_schema("servicemonitors")["properties"]["spec"]["properties"]["endpoints"]
    for field in ("interval", "scrapeTimeout"):
        assert (
            monitor["properties"][field]["pattern"]
            == (endpoint["items"]["properties"][field]["pattern"])
        )


def test_the_crds_are_the_operators():
    """The files are the operator's CRDs for the kinds the chart renders."""
    for plural, kind in (
        ("servicemonitors", "ServiceMonitor"),
        ("prometheusrules", "PrometheusRule"),
    ):
        crd = yaml.safe_load((CRDS / f"monitoring.coreos.com_{plural}.yaml").read_text())
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["spec"]["group"] == "monitoring.coreos.com"
        assert crd["spec"]["names"]["kind"] == kind


# ---------------------------------------------------------------- the dashboard's PromQL

# The series a metric family of each type exports (prometheus_client's exposition).
_SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def exported_series() -> set[str]:
    """Every series name the model server and the controller export, from their own
    metric objects (families with no child yet included)."""
    registries = (
        ServingMetrics(color="blue", version="1", model="iris").registry,
        ControllerMetrics().registry,
    )
    return {
        family.name + suffix
        for registry in registries
        for family in registry.collect()
        for suffix in _SERIES_SUFFIXES[family.type]
    }


def recorded_series() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def selected_series(expr: str) -> set[str]:
    """The series names an expression selects, from its parse tree."""
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def unknown_series(queries: dict[str, str]) -> dict[str, set[str]]:
    known = exported_series() | recorded_series()
    found = {where: selected_series(expr) - known for where, expr in queries.items()}
    return {where: names for where, names in found.items() if names}


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {
        rule.get("record") or rule["alert"]: rule["expr"]
        for group in groups
        for rule in group["rules"]
    }


def promtool_parses(queries: dict[str, str], tmp_path: Any) -> subprocess.CompletedProcess[str]:
    """Prometheus's own parser over the queries: each one a recording rule for promtool."""
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(queries.values())]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return promtool("check", "rules", str(path))


def test_the_dashboard_shows_what_a_release_needs():
    """Per-version traffic, errors, latency quantiles, class mix and shadow agreement, and
    release annotations from the controller's counters; each panel has queries."""
    board = json.loads(DASHBOARD.read_text())
    used = {
        name
        for panel in board["panels"]
        for target in panel["targets"]
        for name in selected_series(target["expr"].replace("$model", "iris"))
    }
    for series in (
        "bluegreen:model_requests:rate1m",
        "bluegreen:model_error_ratio:rate1m",
        "bluegreen:model_latency_seconds:p50_1m",
        "bluegreen:model_latency_seconds:p99_1m",
        "bluegreen:model_predictions:rate1m",
        "bluegreen:model_shadow_agreement:ratio",
    ):
        assert series in used, f"no panel shows {series}"
    assert all(panel["targets"] for panel in board["panels"])
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    (note,) = board["annotations"]["list"]
    assert "bluegreen_operations_total" in selected_series(note["expr"])


def test_every_dashboard_and_rule_expression_parses(tmp_path):
    queries = {**dashboard_queries("iris"), **rule_exprs()}
    assert len(queries) >= 10
    assert "variable 'model'" in queries
    done = promtool_parses(queries, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(queries)} rules found" in done.stdout, done.stdout
    for where, expr in queries.items():
        assert selected_series(expr), f"{where}: selects no series: {expr}"


def test_the_parse_check_can_fail(tmp_path):
    done = promtool_parses(
        {"broken": "sum by (version (bluegreen:model_requests:rate1m)"}, tmp_path
    )
    assert done.returncode != 0
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (version (bluegreen:model_requests:rate1m)")


def test_the_dashboard_and_the_rules_use_only_exported_series():
    queries = {**dashboard_queries("iris"), **rule_exprs()}
    assert unknown_series(queries) == {}


def test_the_series_check_can_fail():
    """A misspelt metric (the `_total` left off a counter) is caught."""
    exported = exported_series()
    assert "bluegreen_model_requests_total" in exported
    assert "bluegreen_model_shadow_rows_total" in exported
    assert "bluegreen_model_requests" not in exported
    found = unknown_series({"typo": 'rate(bluegreen_model_requests{status="500"}[1m])'})
    assert found == {"typo": {"bluegreen_model_requests"}}


def test_the_dashboard_reads_the_model_servers_through_the_rules():
    """The queries on the model servers' series live in files/prometheus/rules.yml only (one
    place, which the bake's PromQL check also names); the dashboard reads what they record.
    Its `$model` variable only lists the label's values, from the raw counter."""
    raw = {
        where: names
        for where, expr in dashboard_queries("iris").items()
        if not where.startswith("variable ")
        if (names := {n for n in selected_series(expr) if n.startswith("bluegreen_model_")})
    }
    assert raw == {}
