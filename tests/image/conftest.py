"""The image tier: the project's Dockerfile built by scripts/build-image, run with podman.

The session builds ``localhost/bluegreen:dev`` (a no-op when podman's layer cache holds it)
and hands the tests a ``Podman`` that runs containers the way the chart runs pods: the
image's own user, a read-only root filesystem, a writable ``/tmp``. Containers share the
host's network namespace (no bridge, no NAT rules on the host) and listen on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.mlflow_server import MlflowServer, start_mlflow_server
from tests.support.models import register_iris

REPO = Path(__file__).resolve().parents[2]
BUILD_IMAGE = REPO / "scripts" / "build-image"
IMAGE = "localhost/bluegreen:dev"
BUILD_TIMEOUT_S = 1800  # a cold base + pip install on 2 busy cores


@dataclass
class Podman:
    """podman with the engine settings build-image writes (runc, cgroupfs, ulimits)."""

    env: dict[str, str]
    started: list[str] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self, name: str, *args: str) -> str:
        """A detached container as the chart runs it: read-only root, /tmp writable."""
        self.run("rm", "--force", "--time", "0", name)
        done = self.run(
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "host",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,mode=1777",
            *args,
        )
        assert done.returncode == 0, done.stderr
        self.started.append(name)
        return name

    def pid(self, name: str) -> int:
        done = self.run("inspect", "--format", "{{.State.Pid}}", name)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())

    def logs(self, name: str) -> str:
        done = self.run("logs", name)
        return done.stdout + done.stderr

    def remove_all(self) -> None:
        for name in self.started:
            self.run("rm", "--force", "--time", "2", name)


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (.ci/run installs it)")
    conf = subprocess.run(
        [str(BUILD_IMAGE), "--print-config"], capture_output=True, text=True, check=True
    ).stdout.strip()
    t0 = time.monotonic()
    subprocess.run([str(BUILD_IMAGE)], check=True, timeout=BUILD_TIMEOUT_S)
    print(f"\nbuild-image: {time.monotonic() - t0:.0f} s")
    p = Podman(env=dict(os.environ, CONTAINERS_CONF=conf))
    try:
        yield p
    finally:
        p.remove_all()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def iris_version(mlflow_server: MlflowServer) -> str:
    return register_iris(mlflow_server.url, "iris", C=1.0, max_iter=300)
