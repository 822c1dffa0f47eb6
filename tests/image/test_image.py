"""The image holds every package the project ships, and each part starts from it.

Each part runs as the chart runs it (`bluegreen serve PART`, the image's user, a read-only
root filesystem, `/tmp` writable) and answers real HTTP: the model server loads a version
from a real MLflow server and predicts; the router forwards a prediction to that model
server's container; the controller answers its health check.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import httpx
import pytest
from setuptools import find_namespace_packages

from plumbing.processes import ProcessDidNotStart, free_port, wait_http_ok
from tests.image.conftest import IMAGE, REPO, Podman
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.image

IMAGE_UID = 10001
ROW = [[5.1, 3.5, 1.4, 0.2]]


# The Airflow provider's modules run in Airflow's workers, installed with the `airflow` extra;
# the image runs the parts and carries no Airflow. Its package (`get_provider_info`) imports.
EXTRA_ONLY = "bluegreen.airflow."


def shipped_modules() -> list[str]:
    """Every module of the packages pyproject ships, found in the source tree (not the image),
    but those only an extra makes importable."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_namespace_packages(where=str(REPO), include=include)
    modules: list[str] = []
    for pkg in packages:
        folder = REPO / Path(*pkg.split("."))
        modules.append(pkg)
        modules += [
            f"{pkg}.{f.stem}"
            for f in sorted(folder.glob("*.py"))
            if f.stem not in ("__init__", "__main__")  # __main__ runs a server when imported
        ]
    return [m for m in modules if not m.startswith(EXTRA_ONLY)]


def uids(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no Uid line for {pid}")


def serve(podman: Podman, part: str, env: dict[str, str], *, ready: str, timeout: float) -> int:
    """`bluegreen serve PART` in the container `bg-image-PART`, as the chart runs it, on a free
    loopback port; that port once `ready` (a path) answers, else the container's log."""
    port, name = free_port(), f"bg-image-{part}"
    args = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
    podman.start(name, *args, IMAGE, "serve", part, "--host", "127.0.0.1", "--port", str(port))
    try:
        wait_http_ok(f"http://127.0.0.1:{port}{ready}", timeout_s=timeout, what=name)
    except ProcessDidNotStart as exc:
        raise AssertionError(f"{exc}\n{podman.logs(name)[-3000:]}") from None
    return port


def test_every_shipped_module_imports(podman: Podman) -> None:
    modules = shipped_modules()
    wanted = {
        "bluegreen.cli",
        "bluegreen.airflow",
        "plumbing.serve",
        "model_server.app",
        "router.app",
    }
    assert wanted <= set(modules)
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    done = podman.run(
        "run", "--rm", "--read-only", "--entrypoint", "python", IMAGE, "-c", code, *modules
    )
    assert done.returncode == 0, done.stderr[-3000:]
    done = podman.run("run", "--rm", "--read-only", IMAGE, "--help")
    assert done.returncode == 0 and "serve" in done.stdout, done.stderr


def test_image_user_and_read_only_root(podman: Podman) -> None:
    probe = (
        "import os, pathlib\n"
        "print(os.getuid(), os.getgid())\n"
        "pathlib.Path('/tmp/ok').write_text('x')\n"
        "try:\n    pathlib.Path('/app/x').write_text('x')\nexcept OSError as e:\n"
        "    print('root', e.errno)\n"
    )
    done = podman.run(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--entrypoint", "python", IMAGE,
        "-c", probe,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(IMAGE_UID), str(IMAGE_UID), "root", "30"], done.stdout


@pytest.fixture(scope="module")
def model_port(podman: Podman, mlflow_server: MlflowServer, iris_version: str) -> int:
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MODEL_NAME": "iris",
        "MODEL_VERSION": iris_version,
        "SERVING_COLOR": "blue",
    }
    return serve(podman, "model", env, ready="/readyz", timeout=180)


def test_model_server_serves_from_the_image(
    podman: Podman, model_port: int, iris_version: str
) -> None:
    assert set(uids(podman.pid("bg-image-model"))) == {IMAGE_UID}
    r = httpx.post(f"http://127.0.0.1:{model_port}/predict", json=ROW, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["X-Model-Version"] == iris_version
    assert len(r.json()["prediction"]) == 1


def test_router_forwards_from_the_image(podman: Podman, model_port: int, iris_version: str) -> None:
    env = {
        "ROUTER_BLUE_URL": f"http://127.0.0.1:{model_port}",
        "ROUTER_STATE_FILE": "/tmp/route.json",
    }
    port = serve(podman, "router", env, ready="/healthz", timeout=90)
    assert set(uids(podman.pid("bg-image-router"))) == {IMAGE_UID}
    r = httpx.post(f"http://127.0.0.1:{port}/predict", json=ROW, timeout=10)
    assert r.status_code == 200, r.text
    assert (r.headers["X-Model-Version"], r.headers["X-Serving-Color"]) == (iris_version, "blue")


def test_controller_starts_from_the_image(podman: Podman, mlflow_server: MlflowServer) -> None:
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "BLUEGREEN_STATE_DIR": "/tmp/bluegreen"}
    port = serve(podman, "controller", env, ready="/healthz", timeout=90)
    assert set(uids(podman.pid("bg-image-controller"))) == {IMAGE_UID}
    r = httpx.get(f"http://127.0.0.1:{port}/history", timeout=10)
    assert r.status_code == 200, r.text
    json.loads(r.text)
