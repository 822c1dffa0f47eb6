"""A throwaway PostgreSQL cluster (Debian's PostgreSQL) for MLflow's backend store.

`start_postgres` runs `initdb` in a fresh temp dir and the server in the foreground on
loopback and a free port, password authentication over TCP as MLflow's users run it; the
fixture `postgres` is the session's (registered by `tests/conftest.py`). PostgreSQL refuses to
run as root, so as root the cluster runs as Debian's `postgres` user (its files in a dir that
user owns); as anyone else, as that user. The server holds the session's lifeline
(`tests.support.processes.start_tied`), so a crashed test run does not leave it running (a
`pg_ctl start` daemon would outlive it). `restart()` is a fast shutdown and a start on the same
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
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from plumbing.processes import child_env, stop
from tests.support.ports import free_port
from tests.support.processes import start_tied

USER = "mlflow"
DATABASE = "mlflow"


def _bin_dir() -> Path:
    """Debian installs PostgreSQL's server programs under /usr/lib/postgresql/MAJOR/bin."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts[-3])
    if not found:
        raise RuntimeError("no PostgreSQL server: `apt-get install postgresql` (.ci/run does)")
    return found[-1].parent


@dataclass(eq=False)
class Postgres:
    """A running cluster; `uri` is what `mlflow server --backend-store-uri` takes."""

    root: Path
    port: int
    password: str = field(repr=False)
    run_as: str | None  # the system user the cluster runs as when we are root
    process: subprocess.Popen[bytes] | None = None  # the lifeline wrapper around `postgres`

    @property
    def uri(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start(self) -> None:
        command = [str(_bin_dir() / "postgres"), "-D", str(self.data)]
        if self.run_as is not None:
            command = _as_user(command, self.run_as)
        self.process = start_tied(command, env=child_env(), log_path=self.root / "postgres.log")
        wait_accepting(self, database="postgres", timeout_s=60)

    def stop(self) -> None:
        """A fast shutdown: open sessions are cut, as when a database server is restarted."""
        if self.process is None:
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            command = [str(_bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w"]
            _run([*command, "stop"], self.run_as, timeout_s=60)
        stop(self.process, grace_s=10)  # the wrapper exits with postgres; if not, it goes now
        self.process = None

    def restart(self) -> None:
        """Every connection dropped, the server back on the same port and data."""
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _as_user(command: list[str], user: str) -> list[str]:
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *command]


def _run(command: list[str], run_as: str | None, *, timeout_s: float = 60) -> None:
    if run_as is not None:
        command = _as_user(command, run_as)
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


def wait_accepting(postgres: Postgres, *, database: str = DATABASE, timeout_s: float = 30) -> None:
    """Until a TCP login with the password works (after a start or a restart)."""
    import psycopg

    uri = postgres.uri.rsplit("/", 1)[0] + f"/{database}"
    deadline = time.monotonic() + timeout_s
    while True:
        if postgres.process is not None and postgres.process.poll() is not None:
            raise RuntimeError(f"postgres exited; see {postgres.root / 'postgres.log'}")
        try:
            psycopg.connect(uri, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The session's PostgreSQL, for MLflow's backend store."""
    cluster = start_postgres()
    yield cluster
    cluster.remove()
