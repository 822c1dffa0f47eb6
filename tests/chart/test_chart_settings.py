"""The chart's values agree with the parts' pydantic settings, read from the models themselves.

Each part's settings class is the one place its defaults and bounds live; the chart repeats
some of them (`values.yaml` defaults, `values.schema.json` bounds) because Helm needs them
before any part runs. Nothing here names a setting: which env var a settings field reads
comes from `model_fields` (prefix, alias, nested delimiter), and which value feeds which env
var from rendering the chart with a distinct probe in every numeric value.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from controller.settings import ControllerSettings
from model_server.settings import ModelServerSettings
from tests.support.chart import CHART, RELEASE

from .pods import process_env, secret_data

CONTROLLER = f"{RELEASE}-controller"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
# Env the kubelet's process needs, not a part's setting.
PROCESS_ENV = {"TMPDIR", "HOME"}
# Env that says where this release runs (rendered from its name, namespace, Service port):
# deliberately not the settings' local defaults.
IDENTITY_ENV = {
    "BLUEGREEN_BACKEND",
    "BLUEGREEN_MODEL",
    "BLUEGREEN_K8S_RELEASE",
    "BLUEGREEN_K8S_NAMESPACE",
    "BLUEGREEN_K8S_COLOR_URL_TEMPLATE",
    "MLFLOW_TRACKING_URI",
}
# Numeric values that configure Kubernetes objects only (Services, probes, HPA), no part.
KUBERNETES_ONLY_PREFIXES = ("modelServer.", "autoscaling.", "service.", "controller.service.")

PathKey = tuple[str, ...]


# ------------------------------------------------------------- settings, read from the models


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class inside `annotation` (`X`, `X | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if (found := _model_of(arg)) is not None:
                return found
    return None


def env_names(settings: type[BaseSettings]) -> dict[str, PathKey]:
    """Env var -> field path, as pydantic-settings reads them (prefix or alias; `__` nests)."""
    config = settings.model_config
    prefix = (config.get("env_prefix") or "").upper()
    nested = config.get("env_nested_delimiter") or ""
    names: dict[str, PathKey] = {}

    def walk(model: type[BaseModel], env_prefix: str, path: PathKey, top: bool) -> None:
        for name, info in model.model_fields.items():
            alias = info.validation_alias or info.alias
            env = alias.upper() if (top and isinstance(alias, str)) else env_prefix + name.upper()
            names[env] = (*path, name)
            inner = _model_of(info.annotation)
            if inner is not None and nested:
                walk(inner, env + nested, (*path, name), False)

    walk(settings, prefix, (), True)
    return names


def field_at(settings: type[BaseModel], path: PathKey) -> FieldInfo:
    model: type[BaseModel] | None = settings
    info: FieldInfo | None = None
    for name in path:
        assert model is not None, path
        info = model.model_fields[name]
        model = _model_of(info.annotation)
    assert info is not None
    return info


def bounds_of(info: FieldInfo) -> dict[str, float]:
    """ge/gt/le/lt of a field, as JSON-schema keywords."""
    keywords = {
        "ge": "minimum",
        "gt": "exclusiveMinimum",
        "le": "maximum",
        "lt": "exclusiveMaximum",
    }
    found: dict[str, float] = {}
    for meta in info.metadata:
        for attr, keyword in keywords.items():
            if isinstance(meta, getattr(annotated_types, attr.capitalize())):
                found[keyword] = getattr(meta, attr)
    return found


def json_types_of(annotation: Any) -> set[str]:
    args = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    mapping = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
    return {mapping[a] for a in args if a in mapping}


# ------------------------------------------------------------- the chart, probed


def schema_leaves(node: dict[str, Any], path: PathKey = ()) -> dict[PathKey, dict[str, Any]]:
    """Leaf schemas of values.schema.json by values path."""
    if "properties" not in node:
        return {path: node}
    leaves: dict[PathKey, dict[str, Any]] = {}
    for key, child in node["properties"].items():
        leaves |= schema_leaves(child, (*path, key))
    return leaves


def numeric_leaves() -> dict[PathKey, dict[str, Any]]:
    leaves = schema_leaves(SCHEMA)
    return {
        p: s
        for p, s in leaves.items()
        if set(_types(s)) & {"number", "integer"} and "string" not in _types(s)
    }


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def probe_values(leaves: dict[PathKey, dict[str, Any]]) -> dict[PathKey, float | int]:
    """A value each schema accepts, no two alike (so each can be found in the output)."""
    chosen: dict[PathKey, float | int] = {}
    for i, (path, schema) in enumerate(sorted(leaves.items())):
        lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        hi = schema.get("maximum", schema.get("exclusiveMaximum", lo + 1000))
        if "integer" in _types(schema):
            # clear of the small numbers rendered anyway (versions, ports' neighbours)
            value: float | int = int(lo) + 101 if lo + 101 < hi else int(lo + hi) // 2
            while value in chosen.values():
                value += 1
        else:  # a fraction no integer probe can equal
            value = lo + (hi - lo) * (1 + 2 * i) / 128
        assert value < hi, path
        chosen[path] = value
    return chosen


def set_value(values: dict[str, Any], path: PathKey, value: Any) -> None:
    for key in path[:-1]:
        values = values.setdefault(key, {})
    values[path[-1]] = value


def rendered_settings_env(
    template, tmp_path: Path, *args: str, secrets: dict[str, dict[str, str]] | None = None
) -> dict[str, dict[str, str]]:
    """Deployment name -> the env its process sees (Secret files written under tmp_path)."""
    objects = template(*args)
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    secrets = {**(secrets or {}), secret["metadata"]["name"]: secret_data(secret)}
    return {
        o["metadata"]["name"]: process_env(
            o, secrets=secrets, root=tmp_path / o["metadata"]["name"]
        )
        for o in objects
        if o["kind"] == "Deployment"
    }


@pytest.fixture(scope="module")
def probes(template, tmp_path_factory) -> dict[PathKey, tuple[str, str, float]]:
    """Values path -> (deployment, env var, probe) for every numeric value that reaches a part."""
    leaves = numeric_leaves()
    values: dict[str, Any] = {}
    chosen = probe_values(leaves)
    assert len(set(chosen.values())) == len(chosen), "probes must be distinct"
    for path, value in chosen.items():
        set_value(values, path, value)
    file = tmp_path_factory.mktemp("probe") / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    envs = rendered_settings_env(template, file.parent, "-f", str(file))
    found: dict[PathKey, tuple[str, str, float]] = {}
    for path, value in chosen.items():
        for deployment, env in envs.items():
            for name, text in env.items():
                try:
                    hit = float(text) == pytest.approx(value)
                except ValueError:
                    continue
                if hit:  # blue and green render the same env: one of them is enough
                    assert found.get(path, (0, name))[1] == name, f"{path} lands in two env vars"
                    found.setdefault(path, (deployment, name, value))
    return found


# ------------------------------------------------------------- the checks


SETTINGS = {
    CONTROLLER: ControllerSettings,
    f"{RELEASE}-blue": ModelServerSettings,
    f"{RELEASE}-green": ModelServerSettings,
}


def test_every_numeric_value_reaches_a_setting_or_only_kubernetes(probes):
    """A number in the values either feeds a part's setting or configures an object."""
    assert probes, "no value reached any part"
    for path in numeric_leaves():
        dotted = ".".join(path)
        if path in probes:
            assert not dotted.startswith(KUBERNETES_ONLY_PREFIXES), dotted
        else:
            assert dotted.startswith(KUBERNETES_ONLY_PREFIXES), dotted


def test_values_defaults_and_schema_bounds_match_the_settings(probes):
    mismatches = []
    for path, (deployment, env, _) in sorted(probes.items()):
        settings = SETTINGS[deployment]
        field_path = env_names(settings).get(env)
        assert field_path is not None, (
            f"{'.'.join(path)} -> {env}: no setting of {settings.__name__} reads it"
        )
        info = field_at(settings, field_path)
        schema = schema_leaves(SCHEMA)[path]
        default = VALUES
        for key in path:
            default = default[key]
        where = f"{'.'.join(path)} ({env} -> {settings.__name__}.{'.'.join(field_path)})"
        if default != info.get_default(call_default_factory=True):
            mismatches.append(f"{where}: values.yaml {default!r}, settings {info.default!r}")
        expected = bounds_of(info)
        got = {
            k: schema[k]
            for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
            if k in schema
        }
        if got != expected:
            mismatches.append(f"{where}: schema bounds {got}, settings {expected}")
        if set(_types(schema)) != json_types_of(info.annotation):
            mismatches.append(f"{where}: schema type {_types(schema)}, settings {info.annotation}")
    assert not mismatches, "\n".join(mismatches)


@pytest.fixture
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith(("BLUEGREEN_", "MODEL_", "SERVING_", "MLFLOW_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_every_env_var_the_chart_renders_is_read_by_its_part(template, tmp_path, clean_env):
    file_args = [
        "--set",
        "mlflow.fileSecret.name=files",
        "--set-json",
        'mlflow.fileSecret.env={"AWS_SHARED_CREDENTIALS_FILE":"credentials"}',
    ]
    envs = rendered_settings_env(
        template, tmp_path, "--set-json", "controller.analysis.minAgreement=0.5"
    )
    extra = rendered_settings_env(
        template, tmp_path / "files", *file_args, secrets={"files": {"credentials": "[default]"}}
    )
    for deployment, settings in SETTINGS.items():
        read = set(env_names(settings))
        unread = set(envs[deployment]) - read - PROCESS_ENV
        assert not unread, f"{deployment}: {settings.__name__} ignores {sorted(unread)}"
        # the MLflow file paths are for MLflow's own libraries, not a part's settings
        assert set(extra[deployment]) - set(envs[deployment]) == {"AWS_SHARED_CREDENTIALS_FILE"}


def test_the_default_render_is_the_controllers_own_defaults(template, tmp_path, clean_env):
    """Apart from where it runs, a default install configures the controller as its defaults do."""
    env = rendered_settings_env(template, tmp_path)[CONTROLLER]
    tunables = {
        k: v
        for k, v in env.items()
        if k not in IDENTITY_ENV | PROCESS_ENV and not k.endswith("_FILE")
    }
    assert tunables, "the chart renders no tunable"
    for name, value in env.items():
        if name in IDENTITY_ENV:
            clean_env.setenv(name, value)
    defaults = ControllerSettings().model_dump()
    for name, value in tunables.items():
        clean_env.setenv(name, value)
    rendered = ControllerSettings().model_dump()
    differ = {k: (defaults[k], rendered[k]) for k in defaults if defaults[k] != rendered[k]}
    assert not differ, f"(settings default, chart default): {differ}"


def test_the_rendered_model_server_env_is_valid_settings(template, tmp_path, clean_env):
    for name, value in rendered_settings_env(template, tmp_path)[f"{RELEASE}-green"].items():
        clean_env.setenv(name, value)
    settings = ModelServerSettings()  # type: ignore[call-arg]  # from the env
    assert (settings.model_name, settings.color) == ("iris", "green")
    assert settings.admin_token
