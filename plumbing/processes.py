"""The one way to start, recognise, wait for and stop a child process.

Used by the local stack (launcher), the local color backend (controller), the benchmarks
and the tests. Every child leads its own session, so stopping it stops whatever it
started too (`mlflow server` runs uvicorn as a child). A process is recognised by its
identity (pid, start time, command line), never by a pid alone: a pid recorded before a
reboot may belong to an unrelated process now.

Children die with the stack that started them through a *lifeline*: a pipe whose write
end only the stack holds. Every child inherits the read end (and passes it on); when the
stack dies, even by SIGKILL, the kernel closes the write end and every child sees EOF.
Our own parts watch it in-process (`watch_lifeline`); other programs run under
`python -m plumbing.lifeline`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

LIFELINE_ENV = "PLUMBING_LIFELINE_FD"


class ProcessDidNotStart(RuntimeError):
    """A child exited, or never answered, while we waited for it to come up."""


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a pid is: with the boot, start time and command line, a reused pid is not mistaken.

    `started` is in seconds since boot (the kernel's own count, which no clock change
    moves: a wall-clock start time shifts whenever NTP steps the clock, and then every
    recorded process would look like a stranger); `boot` tells one boot from the next.
    """

    pid: int
    started: float
    cmdline: tuple[str, ...]
    boot: str = ""

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                started = _started_since_boot(process)
                return cls(pid, started, tuple(process.cmdline()), _boot_id())
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return None

    def alive(self) -> bool:
        """The same process is still running (not a zombie, not a newcomer on its pid)."""
        now = ProcessIdentity.of(self.pid)
        if now is None or now != self:
            return False
        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def as_json(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "started": self.started,
            "cmdline": list(self.cmdline),
            "boot": self.boot,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> ProcessIdentity:
        """A recorded identity; one without a boot id (an older record) matches nothing."""
        cmdline = raw.get("cmdline")
        started = raw.get("started")
        pid = raw.get("pid")
        boot = raw.get("boot", "")
        if not isinstance(pid, int) or not isinstance(started, int | float):
            raise ValueError(f"not a process identity: {dict(raw)!r}")
        if not isinstance(cmdline, list) or not isinstance(boot, str):
            raise ValueError(f"not a process identity: {dict(raw)!r}")
        return cls(pid, float(started), tuple(str(part) for part in cmdline), boot)


def _started_since_boot(process: psutil.Process) -> float:
    """Seconds from boot to the process's start, from the kernel's clock ticks."""
    try:
        stat = Path(f"/proc/{process.pid}/stat").read_bytes()
    except OSError:  # no procfs (not Linux): psutil's wall-clock figure, to the second
        return float(round(process.create_time()))
    ticks = int(stat.rsplit(b")", 1)[1].split()[19])  # field 22, starttime
    return ticks / _CLOCK_TICKS


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"boot-{round(psutil.boot_time())}"


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment for a child: `base` (default: ours) plus `extra`, venv first on PATH.

    `mlflow server` and `mlflow models serve` start uvicorn by name, so the venv's `bin/`
    must be on PATH even when the parent was started by its full path.
    """
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    env.update(extra)
    return env


def python_module_command(module: str, *args: str) -> list[str]:
    """`python -m module args...` with this interpreter: how parts start each other."""
    return [sys.executable, "-m", module, *args]


def spawn(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path | None = None,
    append: bool = True,
) -> subprocess.Popen[bytes]:
    """Start `command` in its own session, output to `log_path`, holding the lifeline."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lifeline = _lifeline_fd(env)
    with open(log_path, "ab" if append else "wb") as log:  # the child keeps its own copy
        return subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(lifeline,) if lifeline is not None else (),
        )


def identity(process: subprocess.Popen[bytes]) -> ProcessIdentity:
    """The identity of a child we just started (raises if it is already gone).

    Just after exec the kernel may show an empty command line for a moment; an identity
    taken then would never match the running process again, so wait for the real one.
    """
    deadline = time.monotonic() + 5.0
    while True:
        found = ProcessIdentity.of(process.pid)
        if found is None:
            raise ProcessDidNotStart(f"{process.args!r} exited at once ({process.poll()})")
        if found.cmdline or time.monotonic() > deadline:
            return found
        time.sleep(0.005)


def stop(
    process: subprocess.Popen[bytes] | ProcessIdentity,
    *,
    grace_s: float = 10.0,
    kill: bool = False,
) -> None:
    """Stop a process, its session and any descendant that left it; SIGKILL after `grace_s`.

    A `ProcessIdentity` (a process we did not start, or started in an earlier life) is
    signalled only while it is still that same process.
    """
    pid = process.pid
    if isinstance(process, ProcessIdentity) and not process.alive():
        return
    family = _descendants(pid)
    first = signal.SIGKILL if kill else signal.SIGTERM
    _signal(pid, family, first)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _running(process, family):
        time.sleep(0.05)
    _signal(pid, [p for p in family if _pid_alive(p)], signal.SIGKILL)
    if isinstance(process, subprocess.Popen):
        process.wait()
    else:
        while _running(process, []):
            time.sleep(0.02)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_http_ok(
    url: str,
    *,
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
    what: str = "",
    interval_s: float = 0.1,
    since: float | None = None,
) -> float:
    """Poll GET `url` until it answers 200; seconds since `since` (default: the call).

    Fails early when `process` exits.
    """
    started = time.monotonic() if since is None else since
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise ProcessDidNotStart(f"{what or url} exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return time.monotonic() - started
            time.sleep(interval_s)
    raise ProcessDidNotStart(f"{what or url} not up within {timeout_s:.0f} s")


# -- the lifeline ---------------------------------------------------------------------


class Lifeline:
    """Held by whatever starts a stack: its children die when it does (see the module doc)."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()  # both close-on-exec; spawn passes the read end

    def env(self) -> dict[str, str]:
        """Add to a child's environment so it (and its own children) hold the lifeline."""
        return {LIFELINE_ENV: str(self._read)}

    def close(self) -> None:
        """Cut the lifeline: every child still holding it sees EOF and stops."""
        for fd in (self._write, self._read):
            with contextlib.suppress(OSError):
                os.close(fd)


def watch_lifeline(on_lost: Callable[[], None] | None = None) -> bool:
    """In a child: stop this process when the stack that started it dies.

    `on_lost` runs first (e.g. ask uvicorn to exit gracefully); SIGTERM follows, and a
    hard exit if we are still here 10 s later. False when no lifeline was given.
    """
    fd = _lifeline_fd(os.environ)
    if fd is None:
        return False

    def wait_for_eof() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1):
                pass
        if on_lost is not None:
            on_lost()
        else:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        os._exit(1)

    threading.Thread(target=wait_for_eof, name="lifeline", daemon=True).start()
    return True


def _lifeline_fd(env: Mapping[str, str]) -> int | None:
    raw = env.get(LIFELINE_ENV, "")
    if not raw.isdigit():
        return None
    try:
        os.fstat(int(raw))
    except OSError:
        return None
    return int(raw)


# -- signalling -------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _signal(pid: int, family: list[int], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)  # the session outlives its leader's exit
        else:
            os.kill(pid, sig)
    for other in family:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(other, sig)


def _running(process: subprocess.Popen[bytes] | ProcessIdentity, family: list[int]) -> bool:
    leader = process.poll() is None if isinstance(process, subprocess.Popen) else process.alive()
    return leader or any(_pid_alive(p) for p in family)


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
