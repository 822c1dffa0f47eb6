"""Server processes for the tests, on top of `plumbing.processes`.

`ServerProcess` is what every launcher in `tests/support` hands back (model servers,
routers): the process, its port and its log. `venv_env`, `wait_http_ok` and `tail` serve
`tests/conformance/`, which runs `mlflow models serve` beside ours: a clean environment (no
inherited `MLFLOW_*` settings, the venv first on PATH), and waits that fail with the tail of
the server's log. `start_tied` starts a program that knows nothing of our lifeline (PostgreSQL,
SeaweedFS, `mlflow server`) so that it dies with this test process, even one killed by SIGKILL.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from plumbing import processes

start = processes.spawn
stop = processes.stop

# Held for the whole test session: its write end closes when this process dies, however.
_SESSION_LIFELINE = processes.Lifeline()


def start_tied(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """`command` under `python -m plumbing.lifeline`, holding the session's lifeline: its whole
    session is stopped when this test process dies, so a crashed run leaves no server behind."""
    return processes.spawn(
        processes.python_module_command("plumbing.lifeline", *command),
        env={**env, **_SESSION_LIFELINE.env()},
        log_path=log_path,
        cwd=cwd,
    )


@dataclass
class ServerProcess:
    """A server the test started on loopback, and where its output goes."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the server wrote so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        processes.stop(self.process)


def venv_env(**extra: str) -> dict[str, str]:
    """Our environment without `MLFLOW_*` (a test's tracking URI must not leak), plus `extra`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return processes.child_env(base, **extra)


def wait_http_ok(
    url: str, *, process: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> float:
    """Poll `url` until it answers 200; on failure the error holds the log's tail."""
    try:
        return processes.wait_http_ok(url, timeout_s=timeout, process=process, what=url)
    except processes.ProcessDidNotStart as exc:
        raise processes.ProcessDidNotStart(f"{exc}\n{tail(log_path)}") from None


def tail(log_path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
