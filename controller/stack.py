"""The local stack: MLflow, two model servers, the router and the controller on one machine.

What `bluegreen up` and `bluegreen demo` run, and what the integration tests start.
Every part is a real child process speaking HTTP; stopping the stack stops them all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from controller.backends.local import LocalProcessBackend

log = logging.getLogger("bluegreen.stack")


@dataclass(frozen=True)
class StackPorts:
    router: int = 8000
    controller: int = 8080
    blue: int = 8001
    green: int = 8002
    mlflow: int = 5000

    @classmethod
    def free(cls) -> StackPorts:
        """Five distinct free loopback ports (bound all at once, so none repeats)."""
        sockets = [socket.socket() for _ in range(5)]
        try:
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            router, controller, blue, green, mlflow = (
                int(sock.getsockname()[1]) for sock in sockets
            )
        finally:
            for sock in sockets:
                sock.close()
        return cls(router=router, controller=controller, blue=blue, green=green, mlflow=mlflow)


class StackError(RuntimeError):
    """A part of the local stack did not come up."""


def spawn(command: list[str], *, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a child in its own session (so Ctrl-C reaches the stack, which stops it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_process(
    process: subprocess.Popen[bytes], *, grace: float = 10.0, kill: bool = False
) -> None:
    """Stop a child, and whatever it started when it leads its own group (see `spawn`)."""
    try:
        leads_group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        leads_group = False

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if leads_group:
                os.killpg(process.pid, sig)  # the group outlives its leader's exit
            elif process.poll() is None:
                process.send_signal(sig)

    if process.poll() is None:
        send(signal.SIGKILL if kill else signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    send(signal.SIGKILL)  # leftovers, e.g. mlflow server's workers
    process.wait()


def wait_http_ok(
    url: str, *, timeout: float, process: subprocess.Popen[bytes] | None = None, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"{what or url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise StackError(f"{what or url} not up within {timeout:.0f} s")


def mlflow_server_command(root: Path, *, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "mlartifacts"),
        "--workers",
        "1",
    ]


# The registry needs no MLflow job runner; it would add ~10 processes and ~2 GB of RSS.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def child_env(**extra: str) -> dict[str, str]:
    # mlflow's server launches uvicorn by name: the venv's bin/ must be on PATH.
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", **extra}


@dataclass
class LocalStack:
    """Starts and stops the parts; ports and state dir are the caller's."""

    model: str
    state_dir: Path
    ports: StackPorts = field(default_factory=StackPorts)
    tracking_uri: str | None = None
    token: str | None = None
    host: str = "127.0.0.1"
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def router_url(self) -> str:
        return f"http://{self.host}:{self.ports.router}"

    @property
    def controller_url(self) -> str:
        return f"http://{self.host}:{self.ports.controller}"

    @property
    def route_file(self) -> Path:
        return self.state_dir / "route.json"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def start_mlflow(self) -> str:
        """Start a real MLflow server (SQLite + local artifacts) unless one is configured."""
        if self.tracking_uri is None:
            root = self.state_dir / "mlflow"
            root.mkdir(parents=True, exist_ok=True)
            process = spawn(
                mlflow_server_command(root, host=self.host, port=self.ports.mlflow),
                env=child_env(**MLFLOW_SERVER_ENV),
                log_path=self.logs / "mlflow.log",
            )
            self.processes["mlflow"] = process
            self.tracking_uri = f"http://{self.host}:{self.ports.mlflow}"
            wait_http_ok(
                f"{self.tracking_uri}/health", timeout=120, process=process, what="mlflow server"
            )
        return self.tracking_uri

    def backend(self) -> LocalProcessBackend:
        assert self.tracking_uri is not None
        extra = {"MODEL_SERVER_ADMIN_TOKEN": self.token} if self.token else None
        return LocalProcessBackend(
            state_dir=self.state_dir,
            tracking_uri=self.tracking_uri,
            ports={"blue": self.ports.blue, "green": self.ports.green},
            host=self.host,
            extra_env=extra,
        )

    def start(self, *, version: str | None = None, stage_timeout: float = 180.0) -> str:
        """Bring everything up with `version` (default: the `live` alias, else the latest)."""
        tracking_uri = self.start_mlflow()
        version = version or initial_version(tracking_uri, self.model)
        backend = self.backend()
        # Each start begins on blue; the `live` alias carries what was serving last time.
        self.route_file.unlink(missing_ok=True)
        if not (backend.pinned_version("blue") == version and backend.is_ready("blue")):
            backend.pin("blue", model=self.model, version=version, timeout=stage_timeout)
        self.start_router()
        self.start_controller()
        return version

    def start_router(self) -> None:
        env = child_env(
            ROUTER_BLUE_URL=f"http://{self.host}:{self.ports.blue}",
            ROUTER_GREEN_URL=f"http://{self.host}:{self.ports.green}",
            ROUTER_STATE_FILE=str(self.route_file),
            **({"ROUTER_ADMIN_TOKEN": self.token} if self.token else {}),
        )
        process = spawn(
            [
                sys.executable,
                "-m",
                "controller.cli",
                "serve",
                "router",
                "--host",
                self.host,
                "--port",
                str(self.ports.router),
            ],
            env=env,
            log_path=self.logs / "router.log",
        )
        self.processes["router"] = process
        wait_http_ok(
            f"{self.router_url}/_bluegreen/healthz", timeout=30, process=process, what="router"
        )

    def start_controller(self) -> None:
        assert self.tracking_uri is not None
        env = child_env(
            MLFLOW_TRACKING_URI=self.tracking_uri,
            BLUEGREEN_MODEL=self.model,
            BLUEGREEN_BACKEND="local",
            BLUEGREEN_STATE_DIR=str(self.state_dir),
            BLUEGREEN_HOST=self.host,
            BLUEGREEN_BLUE_PORT=str(self.ports.blue),
            BLUEGREEN_GREEN_PORT=str(self.ports.green),
            BLUEGREEN_ROUTER_URL=self.router_url,
            **({"BLUEGREEN_TOKEN": self.token} if self.token else {}),
        )
        process = spawn(
            [
                sys.executable,
                "-m",
                "controller.cli",
                "serve",
                "controller",
                "--host",
                self.host,
                "--port",
                str(self.ports.controller),
            ],
            env=env,
            log_path=self.logs / "controller.log",
        )
        self.processes["controller"] = process
        wait_http_ok(
            f"{self.controller_url}/healthz", timeout=60, process=process, what="controller"
        )

    def stop_controller(self, *, kill: bool = False) -> None:
        process = self.processes.pop("controller", None)
        if process is not None:
            stop_process(process, kill=kill)

    def stop(self) -> None:
        """Stop every part, the model servers included, newest first."""
        for name in ("controller", "router"):
            process = self.processes.pop(name, None)
            if process is not None:
                stop_process(process)
        if self.tracking_uri is not None:
            self.backend().stop_all()
        self.route_file.unlink(missing_ok=True)
        mlflow = self.processes.pop("mlflow", None)
        if mlflow is not None:
            stop_process(mlflow)


def initial_version(tracking_uri: str, model: str, alias: str = "live") -> str:
    """The version to start with: the serving alias if set, else the newest version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        pass
    versions = client.search_model_versions(f"name = '{model}'")
    if not versions:
        raise StackError(f"model {model!r} has no registered versions in {tracking_uri}")
    return str(max(int(v.version) for v in versions))
