"""The README's first command: `bluegreen demo` runs the whole job and exits 0."""

from __future__ import annotations

import subprocess
import sys


def test_bluegreen_demo_passes_end_to_end() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "controller.cli", "demo"],
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
    ):
        assert f"[ok] {check}" in out
    assert "failed: 0" in out
