"""Shared helpers for the benchmarks: processes, HTTP readiness, wrk and its options, RSS.

Processes are started and stopped the one way `plumbing.processes` does it (own session,
whole family stopped). Use `Processes` as a context manager: whatever it spawned is
stopped on exit, on Ctrl-C and on SIGTERM alike.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn

import psutil

from plumbing.processes import Lifeline, spawn, stop
from plumbing.processes import wait_http_ok as plumbing_wait_http_ok

LUA_DIR = Path(__file__).resolve().parent / "lua"
OUT_DIR = Path(__file__).resolve().parent / "out"


# --------------------------------------------------------------------------- processes


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` plus all its descendants, in MB (10**6 bytes).

    Pages shared between parent and children are counted once per process, as `ps`
    and `top` do.
    """
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in family:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total / 1e6


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Processes:
    """Spawns processes and stops all of them (newest first) when the block exits.

    SIGTERM is turned into KeyboardInterrupt inside the block so cleanup runs on it too;
    every child holds the block's lifeline, so even a SIGKILLed benchmark leaves none.
    """

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._old_handler: Any = None
        self.lifeline = Lifeline()

    def __enter__(self) -> Processes:
        self._old_handler = signal.signal(signal.SIGTERM, _raise_on_sigterm)
        return self

    def spawn(
        self,
        name: str,
        cmd: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        proc = spawn(cmd, env={**env, **self.lifeline.env()}, log_path=log_path, cwd=cwd)
        self._procs.append((name, proc))
        return proc

    def adopt(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Stop a process started elsewhere (in its own session) with the rest."""
        self._procs.append((name, proc))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A second Ctrl-C must not cut cleanup short.
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for _name, proc in reversed(self._procs):
                stop(proc, grace_s=15)
            self._procs.clear()
            self.lifeline.close()
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, self._old_handler)


def wait_http_ok(
    url: str,
    timeout: float,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    since: float | None = None,
) -> float:
    """Poll GET `url` until it answers 200; seconds since `since` (default: now)."""
    return plumbing_wait_http_ok(url, timeout_s=timeout, process=proc, since=since, interval_s=0.05)


# --------------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. Latencies in ms; errors = non-2xx/3xx responses + socket errors."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    non_2xx: int = 0
    socket_errors: int = 0
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", re.MULTILINE)
_SOCKET = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)


def parse_wrk(output: str) -> WrkResult:
    """Parse `wrk --latency` output (needs the "Latency Distribution" block)."""
    percentiles = {
        float(m.group(1)): float(m.group(2)) * _TIME_UNITS_MS[m.group(3)]
        for m in _PERCENTILE.finditer(output)
    }
    requests = _REQUESTS.search(output)
    rps = _RPS.search(output)
    if requests is None or rps is None:
        raise ValueError(f"unrecognised wrk output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    socket_match = _SOCKET.search(output)
    n_non_2xx = int(non_2xx.group(1)) if non_2xx else 0
    n_socket = sum(int(g) for g in socket_match.groups()) if socket_match else 0
    n_requests = int(requests.group(1))
    if n_requests and (50.0 not in percentiles or 99.0 not in percentiles):
        raise ValueError(f"wrk output has no latency distribution (use --latency):\n{output}")
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=percentiles.get(50.0, float("nan")),
        p99_ms=percentiles.get(99.0, float("nan")),
        errors=n_non_2xx + n_socket,
        requests=n_requests,
        non_2xx=n_non_2xx,
        socket_errors=n_socket,
        duration_s=float(requests.group(2)) * _TIME_UNITS_MS[requests.group(3)] / 1e3,
    )


def wrk_command(
    url: str, *, lua: Path | None, threads: int, connections: int, duration: float
) -> list[str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if lua is not None:
        cmd += ["-s", str(lua)]
    return [*cmd, url]


def run_wrk(
    url: str,
    *,
    lua: Path | None,
    threads: int,
    connections: int,
    duration: float,
) -> WrkResult:
    """Run wrk against `url` and parse its summary; raises if wrk itself fails."""
    cmd = wrk_command(url, lua=lua, threads=threads, connections=connections, duration=duration)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout)


@dataclass
class BackgroundWrk:
    """A wrk running in the background (see `start_wrk`) until its -d or `finish`."""

    proc: subprocess.Popen[bytes]
    cmd: list[str]
    output: Path

    def finish(self, timeout: float = 30.0) -> WrkResult:
        """End wrk now (SIGINT: it prints its summary as at the end of -d) and parse it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=timeout)
        text = self.output.read_text()
        if self.proc.returncode != 0:
            raise RuntimeError(f"{' '.join(self.cmd)} failed ({self.proc.returncode}): {text}")
        return parse_wrk(text)


def start_wrk(
    procs: Processes,
    url: str,
    *,
    lua: Path | None,
    threads: int,
    connections: int,
    duration: float,
    output: Path,
) -> BackgroundWrk:
    """Start wrk without waiting; its output goes to `output`; `procs` stops it on exit."""
    cmd = wrk_command(url, lua=lua, threads=threads, connections=connections, duration=duration)
    output.unlink(missing_ok=True)
    proc = procs.spawn("wrk", cmd, os.environ, output)
    return BackgroundWrk(proc, cmd, output)


def add_wrk_options(
    parser: argparse.ArgumentParser,
    *,
    duration_s: float,
    rounds: int,
    rounds_help: str = "interleaved rounds; medians",
    what: str = "",
) -> None:
    """The options of every benchmark that measures with wrk: `--duration`, `--connections`,
    `--threads`, `--rounds` and `--out`; `what` names the runs they are for in the help."""
    parser.add_argument(
        "--duration", type=float, default=duration_s, help=f"seconds per {what}wrk run"
    )
    parser.add_argument("--connections", type=int, default=16, help=f"{what}wrk connections (-c)")
    parser.add_argument("--threads", type=int, default=2, help=f"{what}wrk threads (-t)")
    parser.add_argument("--rounds", type=int, default=rounds, help=rounds_help)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where results are written")


def check_wrk_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what wrk cannot run; no more threads than connections (wrk needs that)."""
    if args.duration <= 0 or args.connections < 1 or args.threads < 1 or args.rounds < 1:
        parser.error("duration, connections, threads and rounds must be positive")
    args.threads = min(args.threads, args.connections)


_LUA_BODY = re.compile(r"^wrk\.body\s*=\s*\[(=*)\[(.*?)\]\1\]", re.MULTILINE | re.DOTALL)


def lua_body(path: Path) -> str:
    """The `wrk.body = [=[...]=]` literal of a wrk Lua script (one source for the body)."""
    match = _LUA_BODY.search(path.read_text())
    if match is None:
        raise ValueError(f"{path} sets no wrk.body long-bracket string")
    return match.group(2)


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated as numpy's default; nan when empty."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    body = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in body) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(body[0]), "  ".join("-" * w for w in widths), *map(line, body[1:])])


def run_main(main: Callable[[], int]) -> NoReturn:
    """Run a benchmark's `main`; Ctrl-C and SIGTERM stop every started process first."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every started process was stopped", file=sys.stderr, flush=True)
        sys.exit(130)
