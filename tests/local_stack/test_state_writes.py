"""The local stack's state writes never lie, and survive a power cut.

A real local stack; the state dir is made unwritable (`chattr +i`: root ignores file
modes) at the exact moment the router has flipped, by a pass-through proxy between the
controller and the router.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bluegreen.client import ControllerClient, ControllerError
from bluegreen.stack import LocalStack
from tests.support.http_servers import ServerThread, read_answer
from tests.support.iris import IrisVersions
from tests.support.local_stack import TOKEN, served_version
from tests.support.ports import free_port


def _immutable(path: Path, on: bool) -> None:
    subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)


def flip_watcher(router_url: str, on_flip: Callable[[], None]) -> Starlette:
    """Passes every call to the router; runs `on_flip` after a flip, before answering it."""

    async def relay(request: Request) -> Response:
        async with httpx.AsyncClient(base_url=router_url, timeout=30) as client:
            answer = await client.request(
                request.method,
                request.url.path,
                content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k != "host"},
            )
        if request.method == "PUT" and answer.status_code == 200:
            await asyncio.to_thread(on_flip)
        return Response(answer.content, answer.status_code, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", relay, methods=["GET", "PUT"])])


@pytest.fixture
def stack(stack: LocalStack) -> Iterator[LocalStack]:
    """The test's own stack (`tests/support/local_stack.py`), its state dir writable again
    before it stops."""
    try:
        yield stack
    finally:
        _immutable(stack.state_dir, False)


def _journal_on_disk(stack: LocalStack, model: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((stack.state_dir / f"journal-{model}.json").read_text())
    return loaded


def test_a_journal_write_failing_after_the_flip_says_promoted_and_is_retried(
    stack: LocalStack, iris: IrisVersions
) -> None:
    proxy_port = free_port()
    with ServerThread(
        flip_watcher(stack.router_url, lambda: _immutable(stack.state_dir, True)), proxy_port
    ):
        stack.stop_controller()
        stack.start_controller(router_url=f"http://127.0.0.1:{proxy_port}")
        api = ControllerClient(stack.controller_url, token=TOKEN)
        switched = api.switch(version=iris.other)
        assert switched["status"] == "promoted"
        assert "journal not saved" in (switched["reason"] or "")
        assert served_version(stack) == iris.other  # traffic did move
        status = api.status()
        assert status["live"]["version"] == iris.other and status["operation"] is None
        history = api.history()
        assert [op["status"] for op in history if op["id"] == switched["id"]] == ["promoted"]
        assert all(op["status"] != "aborted" for op in history)
        on_disk = _journal_on_disk(stack, iris.model)
        assert switched["id"] not in json.dumps(on_disk.get("history"))  # not saved ... yet
        _immutable(stack.state_dir, False)
        deadline = time.monotonic() + 30
        while switched["id"] not in json.dumps(_journal_on_disk(stack, iris.model)["history"]):
            assert time.monotonic() < deadline, "the journal was never saved after all"
            time.sleep(0.2)
        saved = _journal_on_disk(stack, iris.model)
        ops = [op for op in saved["history"] if op["id"] == switched["id"]]  # type: ignore[union-attr]
        assert [op["status"] for op in ops] == ["promoted"]
        assert '"aborted"' not in json.dumps(saved)
        assert saved["current"] is None
        # the lock was freed with the answer: the next operation runs
        assert api.rollback()["status"] == "rolled_back"


def test_a_journal_write_failing_before_any_step_leaves_no_running_operation(
    stack: LocalStack, iris: IrisVersions
) -> None:
    api = ControllerClient(stack.controller_url, token=TOKEN)
    assert api.switch(version=iris.other)["status"] == "promoted"  # the lock file exists now
    _immutable(stack.state_dir, True)
    try:
        with pytest.raises(ControllerError) as refused:
            api.switch(version=iris.third)
        assert refused.value.status == 503
        assert refused.value.body["error"] == "journal_unavailable"
        status = api.status()
        assert status["operation"] is None
        assert status["live"]["version"] == iris.other
        assert all(op["status"] != "running" for op in api.history())
    finally:
        _immutable(stack.state_dir, False)
    assert api.switch(version=iris.third)["status"] == "promoted"  # no phantom holds it


# -- item 11 ---------------------------------------------------------------------------


def test_the_controller_bounds_an_authenticated_body(stack: LocalStack) -> None:
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    big = b'{"version": "1", "model": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    answer = httpx.post(f"{stack.controller_url}/switch", content=big, headers=headers)
    assert answer.status_code == 413
    assert answer.json()["error"] == "payload_too_large"

    def declared_only() -> bytes:
        import socket

        with socket.create_connection(("127.0.0.1", stack.ports.controller), timeout=5) as sock:
            sock.sendall(
                b"POST /switch HTTP/1.1\r\nhost: x\r\nauthorization: Bearer "
                + TOKEN.encode()
                + b"\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n"
            )
            return read_answer(sock)

    started = time.monotonic()
    said = declared_only()
    assert said.startswith(b"HTTP/1.1 413"), said
    assert b"payload_too_large" in said
    assert time.monotonic() - started < 3
    assert httpx.get(f"{stack.controller_url}/status").json()["operation"] is None


def test_an_atomic_write_fsyncs_the_directory_after_the_rename(tmp_path: Path) -> None:
    target = tmp_path / "journal.json"
    script = (
        "import sys; from pathlib import Path; from plumbing.files import write_atomically; "
        "write_atomically(Path(sys.argv[1]), 'x' * 10)"
    )
    trace = tmp_path / "trace"
    subprocess.run(
        [
            "strace",
            "-f",
            "-o",
            str(trace),
            "-e",
            "trace=openat,fsync,fdatasync,rename,renameat,renameat2",
            sys.executable,
            "-c",
            script,
            str(target),
        ],
        check=True,
        timeout=60,
    )
    lines = trace.read_text().splitlines()
    directory_fds = {
        match.group(1)
        for line in lines
        if f'"{tmp_path}", O_RDONLY' in line and (match := re.search(r"= (\d+)$", line))
    }
    renamed = next(i for i, line in enumerate(lines) if "rename" in line and str(target) in line)
    synced_dirs = [
        i
        for i, line in enumerate(lines)
        if (m := re.search(r"f(?:data)?sync\((\d+)\)", line)) and m.group(1) in directory_fds
    ]
    assert synced_dirs, "the directory was never fsynced"
    assert max(synced_dirs) > renamed, "the directory fsync must follow the rename"
    assert target.read_text() == "x" * 10
