"""The README's first command: `bluegreen demo` runs the whole job and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys


def test_bluegreen_demo_passes_end_to_end() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bluegreen", "demo"],
        # The demo uses MLFLOW_TRACKING_URI when set; mlflow.set_tracking_uri() in this
        # process exports it, so drop it: the demo must start its own MLflow server.
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "demo passed: every step held" in out
    for check in (
        "no failed requests",
        "after the switch every request served by v2",
        "after the rollback every request served by v1",
        "rollback under 1 s",
        "v3 rolled back automatically during bake",
        "after the automatic rollback every request served by v1",
    ):
        assert f"[ok] {check}" in out
    assert "failed: 0" in out
    # The bad version is caught on its predicted classes, with the numbers shown.
    assert "v3: rolled_back at bake: bake check class_shift" in out
    assert "Successfully registered" not in out + done.stderr
