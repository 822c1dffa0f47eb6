"""The controller's settings are the one definition: the launcher, the CLI and the DAG agree."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest
from annotated_types import Ge, Gt, Le

from bluegreen.cli import switch
from controller.domain.analysis import AnalysisPolicy
from controller.settings import ControllerSettings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_the_environment_built_from_settings_reproduces_them(monkeypatch) -> None:
    given = ControllerSettings.model_validate(
        {
            "tracking_uri": "http://127.0.0.1:5999",
            "model": "wine",
            "state_dir": "/tmp/state",
            "token": "t0k",
            "bake_s": 12.5,
            "pause": True,
            "analysis": {"max_p99_ratio": 4.0},
        }
    )
    env = given.environment()
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5999"
    assert env["BLUEGREEN_ANALYSIS__MAX_P99_RATIO"] == "4.0"
    for key in list(ControllerSettings.model_fields):
        monkeypatch.delenv(f"BLUEGREEN_{key.upper()}", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    child = ControllerSettings()
    assert child.model_dump() == given.model_dump()
    assert child.token_value() == "t0k"


def _bounds(field: str) -> tuple[float, float]:
    metadata = AnalysisPolicy.model_fields[field].metadata
    low = next(m.ge for m in metadata if isinstance(m, Ge))
    high = next(m.le for m in metadata if isinstance(m, Le))
    return float(low), float(high)  # type: ignore[arg-type]


@pytest.mark.parametrize(("option", "field"), [("shadow_s", "shadow_s"), ("bake_s", "bake_s")])
def test_the_cli_bounds_are_the_settings_bounds(option: str, field: str) -> None:
    param = next(p for p in switch.params if p.name == option)
    assert isinstance(param.type, click.FloatRange)
    assert (param.type.min, param.type.max) == _bounds(field)
    settings_field = ControllerSettings.model_fields[field]
    assert settings_field.metadata == AnalysisPolicy.model_fields[field].metadata


def test_the_cli_mirror_cap_bounds_are_the_settings_bounds() -> None:
    param = next(p for p in switch.params if p.name == "shadow_max_rps")
    assert isinstance(param.type, click.FloatRange)
    metadata = AnalysisPolicy.model_fields["shadow_max_rps"].metadata
    above = next(m.gt for m in metadata if isinstance(m, Gt))
    most = next(m.le for m in metadata if isinstance(m, Le))
    assert (param.type.min, param.type.min_open, param.type.max) == (above, True, most)
    assert ControllerSettings.model_fields["shadow_max_rps"].metadata == metadata


def test_the_release_dag_windows_are_the_settings_bounds() -> None:
    source = (ROOT / "airflow_dags" / "bluegreen_release.py").read_text()
    window = next(
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name == "_window"
    )
    call = next(n for n in ast.walk(window) if isinstance(n, ast.Call))
    given = {
        kw.arg: ast.literal_eval(kw.value)
        for kw in call.keywords
        if kw.arg in ("minimum", "maximum")
    }
    assert (float(given["minimum"]), float(given["maximum"])) == _bounds("bake_s")
    assert (float(given["minimum"]), float(given["maximum"])) == _bounds("shadow_s")
