"""Bad input and bad state are refused before anything happens, and each part holds only
its own credential.

A real local stack (MLflow, model servers, router, controller as processes).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from bluegreen.client import ControllerClient
from bluegreen.stack import LocalStack
from plumbing.processes import child_env, python_module_command
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN, running_stack
from tests.support.ports import free_port

BAD_GOLDENS = {
    "inputs-not-rows": {"inputs": "5.1,3.5,1.4,0.2"},
    "expected-count-wrong": {"inputs": [[5.1, 3.5, 1.4, 0.2]], "expected": [0, 1]},
    "no-rows": {"inputs": [], "expected": []},
    "unknown-format": {"inputs": {"rows": [[5.1, 3.5, 1.4, 0.2]]}},
    "split-without-data": {"inputs": {"dataframe_split": {"columns": ["a"]}}},
    "expected-not-a-list": {"inputs": [[5.1, 3.5, 1.4, 0.2]], "expected": "0"},
    "golden-not-an-object": [[5.1, 3.5, 1.4, 0.2]],
}


@pytest.fixture(scope="module")
def stack(iris: IrisVersions, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack for the module: every call here is refused before it changes anything."""
    with running_stack(iris, tmp_path_factory.mktemp("inputs") / "state") as local:
        yield local


@pytest.mark.parametrize("golden", list(BAD_GOLDENS.values()), ids=list(BAD_GOLDENS))
def test_a_malformed_golden_is_a_400_before_any_step(
    stack: LocalStack, iris: IrisVersions, golden: object
) -> None:
    api = ControllerClient(stack.controller_url, token=TOKEN)
    before = api.status(), api.history()
    answer = httpx.post(
        f"{stack.controller_url}/switch",
        json={"version": iris.other, "golden": golden},
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=60,
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"] == "bad_request"
    assert "golden" in answer.json()["detail"]
    assert (api.status(), api.history()) == before  # nothing staged, nothing recorded


def test_each_part_holds_only_its_own_credential(stack: LocalStack, iris: IrisVersions) -> None:
    api = ControllerClient(stack.controller_url, token=TOKEN)
    assert (
        api.switch(version=iris.other)["status"] == "promoted"
    )  # green: started by the controller
    colors = json.loads((stack.state_dir / "colors.json").read_text())
    model_servers = {color: entry["process"]["pid"] for color, entry in colors.items()}
    assert set(model_servers) == {"blue", "green"}
    router = _environ(stack.processes["router"].pid)
    controller = _environ(stack.processes["controller"].pid)
    assert controller["BLUEGREEN_TOKEN"] == TOKEN
    router_token = router["ROUTER_ADMIN_TOKEN"]
    for color, pid in model_servers.items():
        env = _environ(pid)
        assert not [k for k, v in env.items() if TOKEN in v], color
        assert not [k for k in env if k.startswith(("BLUEGREEN_", "ROUTER_"))], color
        assert router_token not in env.values(), color
        own = env["MODEL_SERVER_ADMIN_TOKEN"]
        assert own and own not in (TOKEN, router_token)
    assert not [k for k, v in router.items() if TOKEN in v]
    assert not [k for k in router if k.startswith("BLUEGREEN_")]


def _environ(pid: int) -> dict[str, str]:
    return psutil.Process(pid).environ()


CORRUPT = {
    "colors.json": ["{not json", '{"purple": {"version": "1"}}', '["blue"]'],
    "journal-iris.json": ["{not json", '{"model": 3}'],
}


@pytest.mark.parametrize(
    ("name", "content"),
    [(name, content) for name, contents in CORRUPT.items() for content in contents],
)
def test_corrupt_state_stops_the_controller_with_a_message(
    iris: IrisVersions, tmp_path: Path, name: str, content: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / name).write_text(content)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "ROUTER_"))}
    done = subprocess.run(
        python_module_command("controller", "--port", str(free_port())),
        env=child_env(
            clean,
            MLFLOW_TRACKING_URI=iris.tracking_uri,
            BLUEGREEN_MODEL=iris.model,
            BLUEGREEN_STATE_DIR=str(state),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot start" in done.stderr and name in done.stderr
    assert "Traceback" not in done.stderr
    assert (state / name).read_text() == content  # never silently replaced
    assert not (state / "preparer.json").exists()  # and no warm preparer left running
