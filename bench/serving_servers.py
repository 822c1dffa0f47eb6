"""The servers `bench/serving.py` compares, each started as a real process on a free port.

- a real `mlflow server` (SQLite, local artifacts) holding the registered iris model;
- `mlflow models serve -w 1 --env-manager local` on that version;
- our model server, `python -m model_server`, as the local backend and containers run it;
- the bare ASGI ceiling, `python -m bench.bare_asgi`, on the same estimator;
- the local router, `python -m router`, in front of our model server (as
  `bluegreen.stack.LocalStack.start_router` starts it).

start→ready is spawn to the first 200 on the server's health path.
"""

from __future__ import annotations

import os
import pickle
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import common
from bluegreen.stack import MLFLOW_SERVER_ENV, mlflow_server_command
from plumbing.processes import free_port, python_module_command

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "iris"
READY_TIMEOUT_S = 180.0


@dataclass
class Server:
    key: str
    label: str
    proc: subprocess.Popen[bytes]
    base_url: str
    health_path: str
    cmd: list[str]
    start_ready_s: float = float("nan")
    rss_mb: float = float("nan")


def base_env(tracking_uri: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }


def _start(
    procs: common.Processes,
    key: str,
    label: str,
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    port: int,
    health_path: str,
) -> Server:
    started = time.monotonic()
    proc = procs.spawn(key, cmd, env, log, cwd=ROOT)
    server = Server(key, label, proc, f"http://127.0.0.1:{port}", health_path, cmd)
    server.start_ready_s = common.wait_http_ok(
        server.base_url + health_path, READY_TIMEOUT_S, proc=proc, since=started
    )
    return server


def start_tracking_server(procs: common.Processes, root: Path, logs: Path) -> str:
    port = free_port()
    cmd = mlflow_server_command(root, host="127.0.0.1", port=port)
    url = f"http://127.0.0.1:{port}"
    env = {**base_env(url), **MLFLOW_SERVER_ENV}
    proc = procs.spawn("mlflow-tracking", cmd, env, logs / "mlflow-tracking.log")
    common.wait_http_ok(f"{url}/health", READY_TIMEOUT_S, proc=proc)
    return url


def start_mlflow_serve(
    procs: common.Processes, tracking_uri: str, version: str, logs: Path
) -> Server:
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"), "models", "serve",
        "-m", f"models:/{MODEL_NAME}/{version}",
        "-p", str(port), "-h", "127.0.0.1", "-w", "1", "--env-manager", "local",
    ]  # fmt: skip
    return _start(
        procs, "mlflow", "mlflow models serve", cmd, base_env(tracking_uri),
        logs / "mlflow-serve.log", port, "/ping",
    )  # fmt: skip


def ours_command(port: int) -> list[str]:
    """`python -m model_server`: what the local backend and the containers run."""
    return python_module_command("model_server", "--host", "127.0.0.1", "--port", str(port))


def start_ours(
    procs: common.Processes,
    tracking_uri: str,
    version: str,
    cache_dir: Path,
    logs: Path,
    *,
    key: str = "ours",
) -> Server:
    port = free_port()
    env = {
        **base_env(tracking_uri),
        "MODEL_NAME": MODEL_NAME,
        "MODEL_VERSION": version,
        "SERVING_COLOR": "blue",
        "MODEL_SERVER_CACHE_DIR": str(cache_dir),
    }
    cache_dir.mkdir(exist_ok=True)
    return _start(
        procs, key, "ours", ours_command(port), env, logs / f"model-server-{key}.log", port,
        "/readyz",
    )  # fmt: skip


def write_estimator(tracking_uri: str, version: str, path: Path) -> Path:
    """Pickle the registered version's estimator for the bare ceiling (loaded by MLflow here)."""
    import mlflow.sklearn

    mlflow.set_tracking_uri(tracking_uri)
    estimator = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/{version}")
    path.write_bytes(pickle.dumps(estimator))
    return path


def start_bare(procs: common.Processes, estimator: Path, logs: Path) -> Server:
    port = free_port()
    cmd = python_module_command(
        "bench.bare_asgi", "--host", "127.0.0.1", "--port", str(port), "--model", str(estimator)
    )
    return _start(
        procs, "bare", "bare ASGI + predict", cmd, base_env(""), logs / "bare-asgi.log", port,
        "/ping",
    )  # fmt: skip


def start_router(procs: common.Processes, upstream: Server, state_dir: Path, logs: Path) -> Server:
    """The local router with both colors pointing at `upstream`, live on blue."""
    port = free_port()
    env = {
        **base_env(""),
        "ROUTER_BLUE_URL": upstream.base_url,
        "ROUTER_GREEN_URL": upstream.base_url,
        "ROUTER_STATE_FILE": str(state_dir / "route.json"),
        "ROUTER_ADMIN_TOKEN": secrets.token_urlsafe(24),
    }
    cmd = python_module_command("router", "--host", "127.0.0.1", "--port", str(port))
    return _start(
        procs, "router", "ours via router", cmd, env, logs / "router.log", port,
        "/_bluegreen/healthz",
    )  # fmt: skip
