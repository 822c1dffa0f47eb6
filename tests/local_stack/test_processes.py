"""A stale process record never signals a stranger; the local stack's children die with it,
however it dies; `up` refuses ports that are taken.

Real processes throughout: `bluegreen up` as a child of the test, real model servers, a
`sleep` standing in for the unrelated process that got a recorded pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bluegreen.stack import StackPorts, port_holder
from controller.local.colors import LocalProcessBackend
from plumbing.processes import (
    ProcessIdentity,
    child_env,
    identity,
    python_module_command,
    spawn,
    stop,
    wait_http_ok,
)
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN
from tests.support.ports import free_port
from tests.support.waiting import wait_for


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process: whatever got the pid a stale record names."""
    process = subprocess.Popen(["sleep", "600"])
    yield process
    process.kill()
    process.wait()


def _stale_records(pid: int) -> list[dict[str, object]]:
    now = ProcessIdentity.of(pid)
    assert now is not None
    model_server = ["/usr/bin/python3", "-m", "model_server", "--port", "8001"]
    return [
        # from another boot: the same pid, start tick and command line prove nothing
        {"process": {**now.as_json(), "boot": "a-boot-before-the-last-reboot"}},
        # this boot, the same start tick, another program
        {"process": {**now.as_json(), "cmdline": model_server}},
        # an older record format: a wall-clock start time and no boot id
        {"process": {"pid": pid, "started": 1.7e9, "cmdline": list(now.cmdline)}},
        # the oldest format: a bare pid
        {"pid": pid},
    ]


@pytest.mark.parametrize(
    "record", range(4), ids=["other-boot", "other-program", "wall-clock", "bare-pid"]
)
def test_a_stale_record_never_signals_the_process_now_on_its_pid(
    stranger: subprocess.Popen[bytes], iris: IrisVersions, state_dir: Path, record: int
) -> None:
    entry = {**_stale_records(stranger.pid)[record], "version": iris.other, "model": iris.model}
    (state_dir / "colors.json").write_text(json.dumps({"blue": entry}))
    backend = LocalProcessBackend(
        state_dir=state_dir,
        tracking_uri=iris.tracking_uri,
        ports={"blue": free_port(), "green": free_port()},
        host="127.0.0.1",
    )
    assert backend.pinned_version("blue") is None  # the record's process is gone
    try:
        backend.pin("blue", model=iris.model, version=iris.good, timeout=180)  # the stage step
        assert backend.pinned_version("blue") == iris.good
    finally:
        backend.stop_all()
    time.sleep(0.2)
    assert stranger.poll() is None, f"the unrelated process was signalled ({stranger.poll()})"


def test_the_warm_preparer_prepares_a_first_stage_and_stops_with_the_colors(
    iris: IrisVersions, state_dir: Path, tmp_path: Path
) -> None:
    def backend() -> LocalProcessBackend:
        return LocalProcessBackend(
            state_dir=state_dir,
            tracking_uri=iris.tracking_uri,
            ports={"blue": free_port(), "green": free_port()},
            host="127.0.0.1",
            extra_env={"MODEL_SERVER_CACHE_DIR": str(tmp_path / "cache")},  # a miss
            warm_preparer=True,
        )

    first = backend()
    recorded = state_dir / "preparer.json"
    assert not recorded.exists()  # nothing starts before the controller is built
    first.start_preparer()
    preparer = ProcessIdentity.from_json(json.loads(recorded.read_text()))
    try:
        assert preparer.alive() and "model_server.prepare_service" in preparer.cmdline
        # A restarted controller keeps the running preparer, as it keeps the colors.
        restarted = backend()
        restarted.start_preparer()
        assert ProcessIdentity.from_json(json.loads(recorded.read_text())) == preparer
        log = state_dir / "logs" / "preparer.log"
        wait_for(
            "the preparer to be ready",
            lambda: log.exists() and "preparer ready" in log.read_text(),
            timeout_s=120,
            interval_s=0.2,
        )
        restarted.pin("blue", model=iris.model, version=iris.third, timeout=180)
        assert restarted.pinned_version("blue") == iris.third
        served = (state_dir / "logs" / "model-server-blue.log").read_text()
        assert "prepared by the warm preparer" in served, served[-2000:]
    finally:
        first.stop_all()
    assert not preparer.alive()
    assert not recorded.exists()


def test_a_child_is_recognised_from_the_moment_it_is_started(tmp_path: Path) -> None:
    """Just after exec the kernel may show an empty command line: an identity taken then
    never matches again, and the backend would lose (and leak) its own model server."""
    mismatched = []
    for _ in range(40):
        child = spawn(
            [sys.executable, "-c", "import time; time.sleep(30)"],
            env=child_env(),
            log_path=tmp_path / "child.log",
        )
        try:
            recorded = identity(child)
            if not recorded.alive() or recorded != ProcessIdentity.of(child.pid):
                mismatched.append(recorded)
        finally:
            child.kill()
            child.wait()
    assert mismatched == []


# -- the local stack's children die with it ----------------------------------------------


def _up(iris: IrisVersions, state_dir: Path, ports: StackPorts) -> subprocess.Popen[bytes]:
    env = child_env(
        {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "ROUTER_"))},
        MLFLOW_TRACKING_URI=iris.tracking_uri,
        BLUEGREEN_TOKEN=TOKEN,
    )
    return spawn(
        [
            *python_module_command("bluegreen", "up", "--model", iris.model),
            *("--version", iris.good, "--state-dir", str(state_dir)),
            *("--router-port", str(ports.router), "--controller-port", str(ports.controller)),
            *("--blue-port", str(ports.blue), "--green-port", str(ports.green)),
            *("--mlflow-port", str(ports.mlflow)),
        ],
        env=env,
        log_path=state_dir.parent / "up.log",
    )


def _family(pid: int) -> list[ProcessIdentity]:
    found = [ProcessIdentity.of(child.pid) for child in psutil.Process(pid).children(True)]
    return [identity for identity in found if identity is not None]


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM then SIGKILL"])
def test_killing_up_leaves_no_process_and_no_port_behind(
    iris: IrisVersions, tmp_path: Path, how: str
) -> None:
    ports = StackPorts.free()
    up = _up(iris, tmp_path / "state", ports)
    try:
        wait_http_ok(f"http://127.0.0.1:{ports.controller}/healthz", timeout_s=180, process=up)
        wait_http_ok(f"http://127.0.0.1:{ports.blue}/readyz", timeout_s=60, process=up)
        family = _family(up.pid)
        names = " ".join(" ".join(p.cmdline) for p in family)
        assert "model_server" in names and "router" in names and "controller" in names
        assert "model_server.prepare_service" in names  # the warm preparer goes too
        if how == "SIGTERM then SIGKILL":
            up.send_signal(signal.SIGTERM)
            time.sleep(0.5)
        up.kill()
        up.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(p.alive() for p in family):
            time.sleep(0.2)
        left = [" ".join(p.cmdline) for p in family if p.alive()]
        assert left == [], f"still running after `up` died: {left}"
        for port in (ports.router, ports.controller, ports.blue):
            assert port_holder("127.0.0.1", port) is None, port
    finally:
        for process in _family(up.pid) if up.poll() is None else []:
            stop(process)
        stop(up, kill=True)


def test_a_program_under_the_lifeline_wrapper_dies_with_the_stack(tmp_path: Path) -> None:
    """How `mlflow server` runs in the stack: its whole session goes when the stack dies."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from plumbing.processes import Lifeline, spawn, python_module_command, child_env\n"
        "line = Lifeline()\n"
        "child = spawn(python_module_command('plumbing.lifeline', 'sleep', '600'),\n"
        "              env=child_env(**line.env()), log_path=Path(sys.argv[1]))\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    stack = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "wrapped.log")],
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    try:
        assert stack.stdout is not None
        wrapper = int(stack.stdout.readline())
        deadline = time.monotonic() + 30
        while not psutil.Process(wrapper).children():
            assert time.monotonic() < deadline, "the wrapper started nothing"
            time.sleep(0.05)
        family = [ProcessIdentity.of(wrapper), *map(ProcessIdentity.of, _pids(wrapper))]
        assert any(p is not None and p.cmdline[:1] == ("sleep",) for p in family)
        stack.kill()
        stack.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(p and p.alive() for p in family):
            time.sleep(0.1)
        assert [p.cmdline for p in family if p and p.alive()] == []
    finally:
        stack.kill()
        stack.wait()


def test_the_lifeline_wrapper_stops_its_program_at_once_when_told(tmp_path: Path) -> None:
    """SIGTERM to the wrapper stops the program it runs within moments: the wrapper neither
    waits out the caller's grace nor needs its SIGKILL (stopping the child from the signal
    handler used to deadlock on `Popen.wait`'s lock until then)."""
    wrapper = spawn(
        python_module_command("plumbing.lifeline", "sleep", "600"),
        env=child_env(),
        log_path=tmp_path / "wrapped.log",
    )
    try:
        deadline = time.monotonic() + 30
        while not psutil.Process(wrapper.pid).children():
            assert time.monotonic() < deadline, "the wrapper started nothing"
            time.sleep(0.05)
        (sleeper,) = psutil.Process(wrapper.pid).children()
        started = time.monotonic()
        wrapper.send_signal(signal.SIGTERM)
        wrapper.wait(timeout=20)
        took = time.monotonic() - started
        assert took < 3, f"the wrapper took {took:.1f} s"
        assert not sleeper.is_running() or sleeper.status() == psutil.STATUS_ZOMBIE
    finally:
        stop(wrapper, kill=True)


def _pids(pid: int) -> list[int]:
    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


# -- up refuses ports that are taken -------------------------------------------------------


@pytest.fixture
def squatter() -> Iterator[tuple[int, int]]:
    """Another process listening on a loopback port: (port, pid)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, time\n"
            f"s = socket.create_server(('127.0.0.1', {port}))\n"
            "print('listening', flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdout.readline() == b"listening\n"
    yield port, process.pid
    process.kill()
    process.wait()


@pytest.mark.parametrize("part", ["router", "blue", "controller"])
def test_up_refuses_a_taken_port_naming_it_and_its_holder(
    iris: IrisVersions, tmp_path: Path, squatter: tuple[int, int], part: str
) -> None:
    port, pid = squatter
    ports = StackPorts.free()
    ports = StackPorts(**{**ports.__dict__, part: port})
    up = _up(iris, tmp_path / "state", ports)
    try:
        code = up.wait(timeout=120)
    finally:
        stop(up, kill=True)
    said = (tmp_path / "up.log").read_text()
    assert code == 1, said
    assert f"port {port} ({part}) is already taken by pid {pid}" in said
    assert "import socket" in said  # the holder's command line
    assert "stopping" not in said
    assert "live on blue" not in said
    others = [p for name, p in ports.__dict__.items() if name not in (part, "mlflow")]
    assert all(port_holder("127.0.0.1", p) is None for p in others), "something was started"
    assert not (tmp_path / "state" / "colors.json").exists()
