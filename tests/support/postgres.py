"""A throwaway PostgreSQL cluster (Debian's PostgreSQL) for MLflow's backend store.

`start_postgres` runs `initdb` and `pg_ctl` in a fresh temp dir, on loopback, on a free port,
password authentication over TCP as MLflow's users run it; the fixture `postgres` is the
session's (registered by `tests/conftest.py` through `tests/support/mlflow_s3.py`). PostgreSQL
refuses to run as root, so as root the cluster runs as Debian's `postgres` user (its files in
a dir that user owns); as anyone else, as that user. `restart()` is a fast restart on the same
port and data (for "PostgreSQL restarted mid-release"). Teardown stops it and removes the dir.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port

USER = "mlflow"
DATABASE = "mlflow"


def _bin_dir() -> Path:
    """Debian installs PostgreSQL's server programs under /usr/lib/postgresql/MAJOR/bin."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts[-3])
    if not found:
        raise RuntimeError("no PostgreSQL server: `apt-get install postgresql` (.ci/run does)")
    return found[-1].parent


@dataclass
class Postgres:
    """A running cluster; `uri` is what `mlflow server --backend-store-uri` takes."""

    root: Path
    port: int
    password: str
    run_as: str | None  # the system user the cluster runs as when we are root

    @property
    def uri(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def pg_ctl(self, *args: str, timeout_s: float = 60) -> None:
        command = [str(_bin_dir() / "pg_ctl"), "-D", str(self.data), "-w", *args]
        _run(command, self.run_as, timeout_s=timeout_s)

    def start(self) -> None:
        self.pg_ctl("-l", str(self.root / "postgres.log"), "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")

    def restart(self) -> None:
        """Every connection dropped, the server back on the same port and data."""
        self.pg_ctl("-m", "fast", "-l", str(self.root / "postgres.log"), "restart")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _run(command: list[str], run_as: str | None, *, timeout_s: float = 60) -> None:
    if run_as is not None:
        command = ["setpriv", f"--reuid={run_as}", f"--regid={run_as}", "--init-groups", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=timeout_s, cwd="/")


def start_postgres() -> Postgres:
    """initdb, then start on 127.0.0.1 and a free port; the `mlflow` database exists."""
    run_as = "postgres" if os.geteuid() == 0 else None
    # Not under pytest's tmp dirs: those are root's (0700), which the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="bluegreen-pg-"))
    password = secrets.token_urlsafe(16)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if run_as is not None:
        owner = pwd.getpwnam(run_as)
        os.chown(root, owner.pw_uid, owner.pw_gid)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    port = free_port()
    postgres = Postgres(root=root, port=port, password=password, run_as=run_as)
    try:
        _run(
            [
                str(_bin_dir() / "initdb"),
                *("-D", str(postgres.data), "-U", USER, "--pwfile", str(pwfile)),
                *("--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"),
            ],
            run_as,
        )
        pwfile.unlink()
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            f"unix_socket_directories = '{root}'",
            "fsync = off",  # a throwaway cluster: durability across a machine crash is moot
            "full_page_writes = off",
            "synchronous_commit = off",
        ]
        with open(postgres.data / "postgresql.conf", "a") as conf:
            conf.write("\n".join(settings) + "\n")
        postgres.start()
        _run(
            [str(_bin_dir() / "createdb"), "-h", str(root), "-p", str(port), "-U", USER, DATABASE],
            run_as,
        )
    except BaseException:
        postgres.remove()
        raise
    return postgres


def wait_accepting(postgres: Postgres, *, timeout_s: float = 30) -> None:
    """Until a TCP login with the password works (after a restart)."""
    import psycopg2

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg2.connect(postgres.uri, connect_timeout=2).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The session's PostgreSQL, for MLflow's backend store."""
    cluster = start_postgres()
    yield cluster
    cluster.remove()
