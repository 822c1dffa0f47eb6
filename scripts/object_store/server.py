"""Start and stop one SeaweedFS server with an S3 gateway, a bucket and credentials, in DIR.

Called by the command line (``__main__``) and by the tests' fixture
(``tests/support/object_store.py``). ``up`` starts ``weed server`` (master, volume, filer and
S3 gateway in one process) on the caller's address, every port free and chosen here,
telemetry and the extra listeners (Iceberg, Lance) off; creates the bucket with boto3; and
writes ``DIR/env`` for MLflow's S3 client. ``down`` stops the process recorded in
``DIR/state.json`` and removes what ``up`` wrote. Either cleans up after a crashed run first:
a recorded process still running is stopped, stale data removed.

DIR holds ``state.json`` (pid, start time, endpoint), ``env``, ``s3.json`` (the identities),
``data/`` and ``weed.log``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BUCKET = "mlflow"
REGION = "us-east-1"
START_TIMEOUT_S = 60.0
_STATE_FILES = ("state.json", "env", "s3.json")

# How `up` starts weed: (command, root, log file) -> the process it records and `down` stops.
Starter = Callable[[list[str], Path, Path], "subprocess.Popen[bytes]"]


def detached(command: list[str], root: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """The command line's way: weed in a session of its own, outliving `up` until `down`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,
        )


@dataclass(frozen=True)
class ObjectStore:
    """A running store: where it answers and what a client needs (``DIR/env``)."""

    root: Path
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str = field(repr=False)
    pid: int

    def env(self) -> dict[str, str]:
        """The variables MLflow's and boto3's S3 clients read."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "BUCKET": self.bucket,
        }


def read_env(root: Path) -> dict[str, str]:
    """``DIR/env`` as a dict (``KEY=VALUE`` lines)."""
    pairs = (line.split("=", 1) for line in (root / "env").read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def up(
    root: Path, *, host: str, weed: Path, bucket: str = BUCKET, start: Starter = detached
) -> ObjectStore:
    """Start a fresh store in ``root`` on ``host``; its bucket exists when this returns.

    ``start`` runs the command (the tests tie weed to their own life with it).
    """
    root = root.resolve()
    down(root)  # whatever an earlier (perhaps crashed) run left here goes first
    (root / "data").mkdir(parents=True)
    access_key = "AK" + secrets.token_hex(9).upper()
    secret_key = secrets.token_urlsafe(30)
    (root / "s3.json").write_text(json.dumps(_identities(access_key, secret_key)))
    (root / "s3.json").chmod(0o600)
    ports = _free_ports(host, 8)
    command = _command(weed, root, host, ports)
    process = start(command, root, root / "weed.log")
    endpoint = f"http://{host}:{ports[6]}"
    _write_state(root, process.pid, endpoint)
    store = ObjectStore(
        root=root,
        endpoint=endpoint,
        bucket=bucket,
        access_key=access_key,
        secret_key=secret_key,
        pid=process.pid,
    )
    try:
        _create_bucket(store, process)
    except BaseException:
        down(root)
        raise
    lines = [f"{key}={value}" for key, value in store.env().items()]
    (root / "env").write_text("\n".join(lines) + "\n")
    (root / "env").chmod(0o600)
    return store


def down(root: Path) -> bool:
    """Stop the recorded store (if it still runs) and remove its state; whether one ran."""
    root = root.resolve()
    process = _recorded_process(root)
    if process is not None:
        _stop(process)
    for name in _STATE_FILES:
        (root / name).unlink(missing_ok=True)
    shutil.rmtree(root / "data", ignore_errors=True)
    return process is not None


def is_running(root: Path) -> bool:
    return _recorded_process(root.resolve()) is not None


def _identities(access_key: str, secret_key: str) -> dict[str, object]:
    return {
        "identities": [
            {
                "name": "bluegreen",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


def _command(weed: Path, root: Path, host: str, ports: list[int]) -> list[str]:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    return [
        str(weed),
        "server",
        f"-dir={root / 'data'}",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",  # it would report to a public address
        "-master.volumeSizeLimitMB=64",  # test data is small; the default is 30 GB
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={root / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={root / 's3.json'}",
        f"-s3.localSocket={root / 's3.sock'}",
    ]


def _free_ports(host: str, count: int) -> list[int]:
    """Distinct free ports on ``host`` (all held open until every one is chosen)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _create_bucket(store: ObjectStore, process: subprocess.Popen[bytes]) -> None:
    """Create the bucket, retrying while the gateway (or the filer behind it) comes up."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
        region_name=REGION,
        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}),
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"weed exited with {process.returncode}; see {store.root / 'weed.log'}"
            )
        try:
            client.create_bucket(Bucket=store.bucket)
            client.head_bucket(Bucket=store.bucket)
            return
        except client.exceptions.BucketAlreadyOwnedByYou:
            return
        except Exception as exc:  # not up yet: connection refused, 5xx while the filer starts
            last = exc
            time.sleep(0.5)
    raise TimeoutError(
        f"the S3 gateway at {store.endpoint} did not create bucket {store.bucket!r} within "
        f"{START_TIMEOUT_S:.0f} s ({type(last).__name__}); see {store.root / 'weed.log'}"
    )


def _write_state(root: Path, pid: int, endpoint: str) -> None:
    started = psutil.Process(pid).create_time()
    state = {"pid": pid, "started": started, "endpoint": endpoint}
    (root / "state.json").write_text(json.dumps(state) + "\n")


def _recorded_process(root: Path) -> psutil.Process | None:
    """The recorded process if it still runs (a reused pid with another start time is not)."""
    try:
        state = json.loads((root / "state.json").read_text())
        process = psutil.Process(int(state["pid"]))
        if abs(process.create_time() - float(state["started"])) > 0.01:
            return None
        return process if process.status() != psutil.STATUS_ZOMBIE else None
    except (FileNotFoundError, ValueError, KeyError, TypeError, psutil.Error):
        return None


def _stop(process: psutil.Process) -> None:
    try:
        process.terminate()
        process.wait(timeout=15)
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    except psutil.NoSuchProcess:
        pass
