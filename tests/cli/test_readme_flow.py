"""The README's "On one machine" section, from a fresh clone, as a newcomer types it.

`bluegreen up --model iris --example` with no MLflow configured starts its own MLflow server,
registers the demo's three versions and serves the first; `switch`, `status` and `rollback`
are then run as separate processes, as in the README. The release of the bad version runs
with a bake under a pseudo-terminal, so the live line (a progress bar) is seen as a user sees
it; the other commands' output is piped, where no live line may appear.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bluegreen.iris import IRIS_ROWS
from bluegreen.stack import StackPorts
from bluegreen.traffic import TrafficProbe


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BLUEGREEN_"))}


@dataclass
class Up:
    process: subprocess.Popen[str]
    ports: StackPorts
    lines: list[str] = field(default_factory=list)

    @property
    def controller(self) -> str:
        return f"http://127.0.0.1:{self.ports.controller}"

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not printed by `bluegreen up`:\n" + "".join(self.lines))


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    ports = StackPorts.free()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "bluegreen", "up", "--model", "iris", "--example"),
            *("--state-dir", str(tmp_path / ".bluegreen")),
            *("--router-port", str(ports.router), "--controller-port", str(ports.controller)),
            *("--blue-port", str(ports.blue), "--green-port", str(ports.green)),
            *("--mlflow-port", str(ports.mlflow)),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Up(process=process, ports=ports)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            running.lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cli(up: Up, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bluegreen", *args, "--controller", up.controller],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def cli_on_a_terminal(up: Up, *args: str) -> tuple[int, str]:
    """Run the CLI with its stdout on a pseudo-terminal; its exit code and what it drew."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bluegreen", *args, "--controller", up.controller],
        env={**_env(), "COLUMNS": "200"},
        stdout=follower,
        stderr=follower,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    drawn = bytearray()
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the follower side closed: the process is done
                break
            if not chunk:
                break
            drawn += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=30), drawn.decode(errors="replace")


def test_the_readme_one_machine_section_works_from_a_fresh_clone(up: Up) -> None:
    up.wait_for("Ctrl-C stops everything.", timeout_s=240)
    printed = "".join(up.lines)
    assert "registered v1 (underfit" in printed and "v3 (says setosa" in printed
    assert "iris v1 live on blue" in printed
    assert f"page        {up.controller}/" in printed

    status = cli(up, "status")
    assert status.returncode == 0, status.stderr
    assert "live     blue   1" in status.stdout

    router = f"http://127.0.0.1:{up.ports.router}/predict"
    with TrafficProbe(url=router, clients=3, payload=IRIS_ROWS) as traffic:
        switch = cli(up, "switch", "--version", "2")
        assert switch.returncode == 0, switch.stdout + switch.stderr
        out = switch.stdout
        # Each step as it starts and as it ends, with its timing; no live line when piped.
        for step in ("resolve", "stage", "verify", "promote"):
            assert f"  {step:<8} ok" in out, out
        assert "  stage    ..." in out
        assert "\r" not in out
        assert "switch" in out and "promoted  v2 blue -> green" in out

        rollback = cli(up, "rollback")
        assert rollback.returncode == 0, rollback.stdout + rollback.stderr
        assert "  rollback ok" in rollback.stdout
        assert "rolled_back  v1" in rollback.stdout

        code, drawn = cli_on_a_terminal(up, "switch", "--version", "3", "--bake", "20")
        assert code == 1, drawn  # the bad version is caught by the bake and rolled back
        assert "\r  bake     [" in drawn, drawn  # the live line with its progress bar
        assert "/20 s" in drawn
        assert "release rolled back at bake" in drawn
    assert not [r for r in traffic.records if r.status != 200]
    after = cli(up, "status")
    assert "live     blue   1" in after.stdout, after.stdout

    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(timeout=60) == 0
    assert "stopping the local stack" in "".join(up.lines)
