"""The chart under test: where it is, the cases CI renders, and rendered output as objects.

Shared by the chart tests (`tests/chart/`) and the sandbox tier that installs the chart.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "bluegreen"
TOOLS_BIN = REPO / ".tools" / "bin"
RELEASE = "demo"
NAMESPACE = "bluegreen-test"
K8S_VERSION = "1.34.0"

# "default" renders the chart's own values.yaml only; the rest are its ci/*-values.yaml files.
CI_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
CASES = ["default", *(p.name for p in CI_FILES)]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base`` the way helm merges values files."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class Rendered:
    """One ``helm template`` output: the objects and the values that produced them."""

    case: str
    values: dict[str, Any]
    objects: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected exactly one {kind} {name}, found {len(found)}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.of_kind(kind)}


def find_helm() -> Path | None:
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    local = TOOLS_BIN / "helm"
    return local if os.access(local, os.X_OK) else None


def values_args(case: str) -> list[str]:
    return [] if case == "default" else ["-f", str(CHART / "ci" / case)]


def case_values(case: str) -> dict[str, Any]:
    """The merged values a case renders with (chart defaults + its ci file)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if case != "default":
        values = deep_merge(values, yaml.safe_load((CHART / "ci" / case).read_text()) or {})
    return values
