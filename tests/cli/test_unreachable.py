"""A newcomer's first commands with nothing running: one line each, never a traceback.

Real processes: the `bluegreen` CLI run as a subprocess against ports where nothing listens,
and against the session's real MLflow server for a model that has no versions.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bluegreen.cli import main
from tests.support.iris import IrisVersions
from tests.support.ports import free_port


def bluegreen(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BLUEGREEN_"))}
    return subprocess.run(
        [sys.executable, "-m", "bluegreen", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def bluegreen_up(
    model: str, state_dir: object, *, tracking_uri: str
) -> subprocess.CompletedProcess[str]:
    """`bluegreen up` on free loopback ports, not the defaults another stack may hold."""
    ports = [str(free_port("127.0.0.1")) for _ in range(4)]
    return bluegreen(
        *("up", "--model", model, "--state-dir", str(state_dir)),
        *("--router-port", ports[0], "--controller-port", ports[1]),
        *("--blue-port", ports[2], "--green-port", ports[3]),
        MLFLOW_TRACKING_URI=tracking_uri,
    )


@pytest.mark.parametrize(
    "command",
    [["status"], ["switch", "--version", "2"], ["rollback"], ["switch", "--alias", "champion"]],
)
def test_no_controller_is_one_line_naming_the_url_and_what_to_start(command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    done = bluegreen(*command, "--controller", url)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"no controller answers at {url}" in lines[0]
    assert "bluegreen up --model" in lines[0]


def test_the_controller_url_from_the_environment_is_the_one_named() -> None:
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    done = bluegreen("status", BLUEGREEN_CONTROLLER=url)
    assert done.returncode == 1
    assert f"no controller answers at {url}" in done.stderr


def test_up_with_an_unreachable_mlflow_says_so_in_one_line(tmp_path: object) -> None:
    uri = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    done = bluegreen_up("iris", tmp_path, tracking_uri=uri)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    first = done.stderr.strip().splitlines()[0]
    assert f"cannot reach MLflow at {uri}" in first
    assert "mlflow server" in first and "unset MLFLOW_TRACKING_URI" in first


def test_up_on_a_registry_without_the_model_says_how_to_register_one(
    iris: IrisVersions, tmp_path: object
) -> None:
    done = bluegreen_up("nobody-registered-this", tmp_path, tracking_uri=iris.tracking_uri)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("bluegreen up:"))
    assert "'nobody-registered-this' has no registered versions" in line
    assert "registered_model_name='nobody-registered-this'" in line
    assert "--example" in line


@pytest.mark.parametrize("command", ["up", "demo", "switch", "rollback", "status", "serve"])
def test_every_command_help_shows_an_example(command: str) -> None:
    done = CliRunner().invoke(main, [command, "--help"])
    assert done.exit_code == 0, done.output
    example = done.output.split("Example", 1)
    assert len(example) == 2, done.output
    assert f"bluegreen {command}" in example[1]
