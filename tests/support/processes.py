"""Start, wait for and stop server processes in tests, without the launcher's helpers.

Used by the conformance suite (`tests/conformance/`) to run `mlflow models serve` and
`python -m model_server` side by side. Each child leads its own process group, so a
stop reaches whatever it started (`mlflow models serve` runs uvicorn as a grandchild).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


class ProcessFailed(RuntimeError):
    """A child exited or did not answer in time; the message holds the tail of its log."""


def venv_env(**extra: str) -> dict[str, str]:
    """The test's environment with this venv's `bin/` first on PATH (MLflow runs `uvicorn`)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", **extra}


def start(command: list[str], *, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_http_ok(
    url: str, *, process: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> float:
    """Poll `url` until it answers 200; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise ProcessFailed(
                f"{url}: process exited with {process.returncode}\n{tail(log_path)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return time.monotonic() - started
        time.sleep(0.2)
    raise ProcessFailed(f"{url} not up within {timeout:.0f} s\n{tail(log_path)}")


def stop(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM the child's group, SIGKILL what is left after `grace` seconds, reap the child."""

    def signal_group(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    if process.poll() is None:
        signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    signal_group(signal.SIGKILL)  # grandchildren outlive their parent's exit
    process.wait()


def tail(log_path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
