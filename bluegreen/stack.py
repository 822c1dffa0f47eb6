"""The local stack: MLflow, two model servers, the router and the controller on one machine.

What `bluegreen up` and `bluegreen demo` run, and what the integration tests start.
Every part is a real child process speaking HTTP, holding the stack's lifeline, so it
dies with the stack even when the stack is SIGKILLed. Each part gets its own credential:
the controller's API token never reaches the router or a model server.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from controller.local.colors import LocalProcessBackend
from controller.settings import ControllerSettings
from plumbing.processes import (
    Lifeline,
    ProcessDidNotStart,
    child_env,
    python_module_command,
    spawn,
    stop,
    wait_http_ok,
)

log = logging.getLogger("bluegreen.stack")

# The registry needs no MLflow job runner; it would add ~10 processes and ~2 GB of RSS.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass(frozen=True)
class StackPorts:
    """The local stack's ports; these defaults are the ones the design names."""

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


def mlflow_server_command(root: Path, *, host: str, port: int) -> list[str]:
    """`mlflow server` on SQLite and local artifacts, under the lifeline wrapper."""
    return python_module_command(
        "plumbing.lifeline",
        *python_module_command("mlflow", "server"),
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
    )


def port_holder(host: str, port: int) -> str | None:
    """Who already listens on `port` (a process name and pid where we can tell), or None."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return None
        except OSError:
            pass
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "another process"
            try:
                process = psutil.Process(conn.pid)
                command = " ".join(" ".join(process.cmdline()).split())
                return f"pid {conn.pid} ({command[:120]})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return "another process"


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
    router_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    model_server_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    lifeline: Lifeline = field(default_factory=Lifeline)

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

    def check_ports(self) -> None:
        """Refuse to start over anything already listening on a port the stack needs."""
        wanted = {
            "router": self.ports.router,
            "controller": self.ports.controller,
            "blue": self.ports.blue,
            "green": self.ports.green,
        }
        if self.tracking_uri is None:
            wanted["mlflow"] = self.ports.mlflow
        for part, port in wanted.items():
            holder = port_holder(self.host, port)
            if holder is not None:
                raise StackError(
                    f"port {port} ({part}) is already taken by {holder}; stop it, or pick "
                    f"another port with --{part}-port"
                )

    def start_mlflow(self) -> str:
        """Start a real MLflow server (SQLite + local artifacts) unless one is configured."""
        if self.tracking_uri is None:
            root = self.state_dir / "mlflow"
            root.mkdir(parents=True, exist_ok=True)
            self._start(
                "mlflow",
                mlflow_server_command(root, host=self.host, port=self.ports.mlflow),
                env=child_env(None, **MLFLOW_SERVER_ENV, **self.lifeline.env()),
                ready=f"http://{self.host}:{self.ports.mlflow}/health",
                timeout_s=120,
            )
            self.tracking_uri = f"http://{self.host}:{self.ports.mlflow}"
        else:
            check_tracking_server(self.tracking_uri)
        return self.tracking_uri

    def backend(self) -> LocalProcessBackend:
        assert self.tracking_uri is not None
        return LocalProcessBackend(
            state_dir=self.state_dir,
            tracking_uri=self.tracking_uri,
            ports={"blue": self.ports.blue, "green": self.ports.green},
            host=self.host,
            model_server_token=self.model_server_token,
            extra_env=self.lifeline.env(),  # the model servers we start hold the lifeline
        )

    def start(self, *, version: str | None = None) -> str:
        """Bring everything up with `version` (default: the serving alias, else the latest)."""
        self.check_ports()
        settings = ControllerSettings()
        tracking_uri = self.start_mlflow()
        version = version or initial_version(tracking_uri, self.model, settings.live_alias)
        # Each start begins on blue; the serving alias carries what was serving last time.
        self.route_file.unlink(missing_ok=True)
        backend = self.backend()
        if not (backend.pinned_version("blue") == version and backend.is_ready("blue")):
            backend.pin("blue", model=self.model, version=version, timeout=settings.stage_timeout_s)
        self.start_router()
        self.start_controller()
        return version

    def start_router(self) -> None:
        self._start(
            "router",
            python_module_command("router", "--host", self.host, "--port", str(self.ports.router)),
            env=child_env(
                _without("BLUEGREEN_"),
                ROUTER_BLUE_URL=f"http://{self.host}:{self.ports.blue}",
                ROUTER_GREEN_URL=f"http://{self.host}:{self.ports.green}",
                ROUTER_STATE_FILE=str(self.route_file),
                ROUTER_ADMIN_TOKEN=self.router_token,
                **self.lifeline.env(),
            ),
            ready=f"{self.router_url}/_bluegreen/healthz",
            timeout_s=30,
        )

    def start_controller(self, *, router_url: str | None = None) -> None:
        """Start the controller; `router_url` puts something between it and the router."""
        assert self.tracking_uri is not None
        self._start(
            "controller",
            python_module_command(
                "controller", "--host", self.host, "--port", str(self.ports.controller)
            ),
            env=child_env(
                _without("ROUTER_", "BLUEGREEN_TOKEN"),
                **self.controller_settings(router_url=router_url).environment(),
                **self.lifeline.env(),
            ),
            ready=f"{self.controller_url}/healthz",
            timeout_s=60,
        )

    def controller_settings(self, *, router_url: str | None = None) -> ControllerSettings:
        """What the stack's controller runs with: the local backend over these parts."""
        assert self.tracking_uri is not None
        # model_validate, not the constructor: only these fields, none read from our env
        # (what `up` inherits reaches the controller through its environment as is).
        return ControllerSettings.model_validate(
            {
                "tracking_uri": self.tracking_uri,
                "model": self.model,
                "backend": "local",
                "state_dir": self.state_dir,
                "host": self.host,
                "blue_port": self.ports.blue,
                "green_port": self.ports.green,
                "router_url": router_url or self.router_url,
                "router_token": self.router_token,
                "model_server_token": self.model_server_token,
                **({"token": self.token} if self.token else {}),
            }
        )

    def stop_controller(self, *, kill: bool = False) -> None:
        process = self.processes.pop("controller", None)
        if process is not None:
            stop(process, kill=kill)

    def stop(self) -> None:
        """Stop every part, the model servers included, newest first."""
        for name in ("controller", "router"):
            process = self.processes.pop(name, None)
            if process is not None:
                stop(process)
        if self.tracking_uri is not None:
            self.backend().stop_all()
        self.route_file.unlink(missing_ok=True)
        mlflow = self.processes.pop("mlflow", None)
        if mlflow is not None:
            stop(mlflow, grace_s=15)
        self.lifeline.close()

    def _start(
        self, name: str, command: list[str], *, env: dict[str, str], ready: str, timeout_s: float
    ) -> None:
        process = spawn(command, env=env, log_path=self.logs / f"{name}.log")
        self.processes[name] = process
        try:
            wait_http_ok(ready, timeout_s=timeout_s, process=process, what=name)
        except ProcessDidNotStart as exc:
            raise StackError(f"{exc}; see {self.logs / f'{name}.log'}") from None


def _without(*prefixes: str) -> dict[str, str]:
    """Our environment minus the variables that belong to another part."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def initial_version(tracking_uri: str, model: str, alias: str) -> str:
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
        raise StackError(
            f"model {model!r} has no registered versions in {tracking_uri}. Register one "
            f"(mlflow.<flavor>.log_model(..., registered_model_name={model!r})), or add "
            "--example to train and register the demo's three iris versions into it"
        )
    return str(max(int(v.version) for v in versions))


def check_tracking_server(uri: str, *, timeout_s: float = 5.0) -> None:
    """One line when a configured MLflow server does not answer (MLflow's own client would
    retry for minutes and end in a traceback). File and database URIs need no server."""
    import httpx

    if not uri.startswith(("http://", "https://")):
        return
    try:
        httpx.get(f"{uri.rstrip('/')}/health", timeout=timeout_s).raise_for_status()
    except httpx.HTTPError as exc:
        problem = (str(exc).strip() or type(exc).__name__).splitlines()[0][:160]
        raise StackError(
            f"cannot reach MLflow at {uri} ({problem}); start it (`mlflow server --port "
            "5000`), or unset MLFLOW_TRACKING_URI so `bluegreen up` starts its own"
        ) from None
