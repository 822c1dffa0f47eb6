"""Serving benchmark: our model server against `mlflow models serve`, side by side.

    .venv/bin/python -m bench.serving [--duration 10] [--connections 16] [--rounds 3]
                                      [--out bench/out]

Starts a real MLflow tracking server in a temp dir, trains and registers an iris
model, starts both model servers (one worker each), checks they predict the same,
then drives each with wrk in interleaved rounds and prints medians. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import common
from bluegreen.stack import MLFLOW_SERVER_ENV, mlflow_server_command
from plumbing.processes import free_port, python_module_command

ROOT = Path(__file__).resolve().parents[1]

MODEL_NAME = "iris"
INVOCATIONS_LUA = common.LUA_DIR / "invocations_split.lua"
PREDICT_LUA = common.LUA_DIR / "predict_rows.lua"
TARGET_SPEEDUP = 5.0
READY_TIMEOUT_S = 180.0


@dataclass
class Server:
    key: str
    label: str
    proc: subprocess.Popen[bytes]
    base_url: str
    health_path: str
    cmd: list[str]
    start_ready_s: float = float("nan")
    rss_mb: float = float("nan")


@dataclass
class Target:
    key: str
    label: str
    server: Server
    path: str
    lua: Path
    loaded: list[common.WrkResult] = field(default_factory=list)
    single: list[common.WrkResult] = field(default_factory=list)
    warmup: list[common.WrkResult] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.base_url + self.path

    @property
    def errors(self) -> int:
        return sum(r.errors for r in [*self.warmup, *self.loaded, *self.single])

    def summary(self) -> dict[str, float]:
        return {
            "rps": common.median(r.rps for r in self.loaded),
            "p50_ms": common.median(r.p50_ms for r in self.loaded),
            "p99_ms": common.median(r.p99_ms for r in self.loaded),
            "single_p50_ms": common.median(r.p50_ms for r in self.single),
            "single_rps": common.median(r.rps for r in self.single),
        }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (-c)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (-t)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target")
    parser.add_argument(
        "--settle", type=float, default=1.0, help="idle seconds before each wrk run"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.connections < 1 or args.threads < 1 or args.rounds < 1:
        parser.error("duration, connections, threads and rounds must be positive")
    args.threads = min(args.threads, args.connections)  # wrk needs connections >= threads
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _base_env(tracking_uri: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PYTHONUNBUFFERED": "1",
    }


def start_tracking_server(procs: common.Processes, root: Path, logs: Path) -> str:
    port = free_port()
    cmd = mlflow_server_command(root, host="127.0.0.1", port=port)
    url = f"http://127.0.0.1:{port}"
    env = {**_base_env(url), **MLFLOW_SERVER_ENV}
    proc = procs.spawn("mlflow-tracking", cmd, env, logs / "mlflow-tracking.log")
    common.wait_http_ok(f"{url}/health", READY_TIMEOUT_S, proc=proc)
    return url


def start_mlflow_serve(
    procs: common.Processes, tracking_uri: str, version: str, logs: Path
) -> Server:
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"), "models", "serve",
        "-m", f"models:/{MODEL_NAME}/{version}",
        "-p", str(port), "-h", "127.0.0.1", "-w", "1", "--env-manager", "local",
    ]  # fmt: skip
    started = time.monotonic()
    proc = procs.spawn("mlflow-serve", cmd, _base_env(tracking_uri), logs / "mlflow-serve.log")
    server = Server("mlflow", "mlflow models serve", proc, f"http://127.0.0.1:{port}", "/ping", cmd)
    server.start_ready_s = common.wait_http_ok(
        server.base_url + server.health_path, READY_TIMEOUT_S, proc=proc, since=started
    )
    return server


def ours_command(port: int) -> list[str]:
    """`python -m model_server`: what the local backend and the containers run."""
    return python_module_command("model_server", "--host", "127.0.0.1", "--port", str(port))


def start_ours(
    procs: common.Processes, tracking_uri: str, version: str, tmp: Path, logs: Path
) -> Server:
    port = free_port()
    cmd = ours_command(port)
    env = {
        **_base_env(tracking_uri),
        "MODEL_NAME": MODEL_NAME,
        "MODEL_VERSION": version,
        "SERVING_COLOR": "blue",
        "MODEL_SERVER_CACHE_DIR": str(tmp / "model-cache"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    (tmp / "model-cache").mkdir(exist_ok=True)
    started = time.monotonic()
    proc = procs.spawn("ours", cmd, env, logs / "model-server.log", cwd=ROOT)
    server = Server(
        "ours", "bluegreen model_server", proc, f"http://127.0.0.1:{port}", "/readyz", cmd
    )
    server.start_ready_s = common.wait_http_ok(
        server.base_url + server.health_path, READY_TIMEOUT_S, proc=proc, since=started
    )
    return server


def check_same_predictions(mlflow: Server, ours: Server) -> list[Any]:
    """Both servers must answer the benchmark bodies with the same predictions."""
    split_body = common.lua_body(INVOCATIONS_LUA)
    rows_body = common.lua_body(PREDICT_LUA)
    headers = {"Content-Type": "application/json"}
    answers: dict[str, Any] = {}
    with httpx.Client(timeout=30) as client:
        for name, url, body in [
            ("mlflow /invocations", mlflow.base_url + "/invocations", split_body),
            ("ours /invocations", ours.base_url + "/invocations", split_body),
            ("ours /predict", ours.base_url + "/predict", rows_body),
        ]:
            response = client.post(url, content=body, headers=headers)
            assert response.status_code == 200, f"{name}: {response.status_code} {response.text}"
            answers[name] = response.json()
    reference = answers["mlflow /invocations"]
    assert answers["ours /invocations"] == reference, (
        f"/invocations differ: mlflow {reference!r} vs ours {answers['ours /invocations']!r}"
    )
    assert answers["ours /predict"] == {"prediction": reference["predictions"]}, (
        f"/predict differs: {answers['ours /predict']!r} vs mlflow {reference!r}"
    )
    return list(reference["predictions"])


def _run(
    target: Target, args: argparse.Namespace, *, single: bool, duration: float
) -> common.WrkResult:
    threads, connections = (1, 1) if single else (args.threads, args.connections)
    # Let the previous server drain what it still had queued: both share the same cores.
    time.sleep(args.settle)
    result = common.run_wrk(
        target.url, lua=target.lua, threads=threads, connections=connections, duration=duration
    )
    _log(
        f"  {target.label:<28} -t{threads} -c{connections}: {result.rps:8.1f} req/s  "
        f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
    )
    return result


def measure(targets: list[Target], args: argparse.Namespace) -> None:
    if args.warmup > 0:
        _log(f"warm-up, {args.warmup:g} s each")
        for target in targets:
            target.warmup.append(_run(target, args, single=False, duration=args.warmup))
    for round_no in range(1, args.rounds + 1):
        _log(f"round {round_no}/{args.rounds}")
        for target in targets:
            target.loaded.append(_run(target, args, single=False, duration=args.duration))
        for target in targets:
            target.single.append(_run(target, args, single=True, duration=args.duration))


def _fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def render_table(targets: list[Target], args: argparse.Namespace) -> str:
    header = [
        "server", "req/s", "p50 ms", "p99 ms", "1-client p50 ms", "RSS MB", "start→ready s",
        "errors",
    ]  # fmt: skip
    rows = [header]
    for t in targets:
        s = t.summary()
        rows.append(
            [
                t.label,
                _fmt(s["rps"], 0),
                _fmt(s["p50_ms"], 2),
                _fmt(s["p99_ms"], 2),
                _fmt(s["single_p50_ms"], 2),
                _fmt(t.server.rss_mb, 0),
                _fmt(t.server.start_ready_s, 2),
                str(t.errors),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    out = [
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency, single-row "
        f"bodies; medians of {args.rounds} interleaved rounds; 1-client = -t1 -c1",
        line(rows[0]),
        "  ".join("-" * w for w in widths),
        *(line(r) for r in rows[1:]),
    ]
    return "\n".join(out)


def ratios(targets: dict[str, Target]) -> dict[str, Any]:
    mlflow = targets["mlflow"].summary()
    result: dict[str, Any] = {}
    for key in ("ours", "ours_predict"):
        ours = targets[key].summary()
        rps_ratio = ours["rps"] / mlflow["rps"]
        p99_ratio = mlflow["p99_ms"] / ours["p99_ms"]
        result[key] = {
            "rps_ours_over_mlflow": rps_ratio,
            "p99_mlflow_over_ours": p99_ratio,
            "single_p50_mlflow_over_ours": mlflow["single_p50_ms"] / ours["single_p50_ms"],
            "rps_target_holds": rps_ratio >= TARGET_SPEEDUP,
            "p99_target_holds": p99_ratio >= TARGET_SPEEDUP,
        }
    return result


def render_ratios(result: dict[str, Any], targets: dict[str, Target]) -> str:
    def verdict(ok: bool) -> str:
        return "HOLDS" if ok else "MISSED"

    lines = []
    for key in ("ours", "ours_predict"):
        r = result[key]
        name = targets[key].label
        lines += [
            f"{name} vs mlflow models serve /invocations:",
            f"  req/s  ours/mlflow = {r['rps_ours_over_mlflow']:.2f}x   "
            f"target >= {TARGET_SPEEDUP:g}x: {verdict(r['rps_target_holds'])}",
            f"  p99    mlflow/ours = {r['p99_mlflow_over_ours']:.2f}x   "
            f"target ours <= 1/{TARGET_SPEEDUP:g}: {verdict(r['p99_target_holds'])}",
            f"  1-client p50 mlflow/ours = {r['single_p50_mlflow_over_ours']:.2f}x",
        ]
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    import mlflow

    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "python": platform.python_version(),
        "mlflow": mlflow.__version__,
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir: Path = args.out.resolve()
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    common.wrk_command(
        "http://127.0.0.1/", lua=None, threads=1, connections=1, duration=1
    )  # has wrk?

    with (
        tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name,
        common.Processes() as procs,
    ):
        tmp = Path(tmp_name)
        _log(f"logs in {logs}")
        tracking_uri = start_tracking_server(procs, tmp / "mlflow", logs)
        _log(f"mlflow tracking server up at {tracking_uri}")
        from bluegreen.iris import train_and_register

        with contextlib.redirect_stdout(sys.stderr):  # MLflow prints run links
            registered = train_and_register(tracking_uri=tracking_uri, model=MODEL_NAME)
        _log(f"registered {MODEL_NAME} v{registered.version}")

        mlflow_server = start_mlflow_serve(procs, tracking_uri, registered.version, logs)
        _log(f"mlflow models serve ready in {mlflow_server.start_ready_s:.2f} s")
        ours = start_ours(procs, tracking_uri, registered.version, tmp, logs)
        _log(f"our model server ready in {ours.start_ready_s:.2f} s")

        predictions = check_same_predictions(mlflow_server, ours)
        _log(f"same predictions from both: {predictions}")

        targets = [
            Target("mlflow", "mlflow models serve /invocations", mlflow_server, "/invocations",
                   INVOCATIONS_LUA),
            Target("ours", "ours /invocations", ours, "/invocations", INVOCATIONS_LUA),
            Target("ours_predict", "ours /predict", ours, "/predict", PREDICT_LUA),
        ]  # fmt: skip
        measure(targets, args)
        for server in (mlflow_server, ours):
            server.rss_mb = common.tree_rss_mb(server.proc.pid)
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.label} exited during the benchmark")

    by_key = {t.key: t for t in targets}
    result = ratios(by_key)
    total_errors = sum(t.errors for t in targets)
    print(render_table(targets, args))
    print()
    print(render_ratios(result, by_key))
    print(f"errors: {total_errors}" + ("" if total_errors == 0 else "  (FAIL)"))

    report = {
        "benchmark": "serving",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "duration_s": args.duration,
            "threads": args.threads,
            "connections": args.connections,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "settle_s": args.settle,
            "model": f"{MODEL_NAME} v{registered.version}",
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": _versions(),
        "predictions": predictions,
        "servers": {
            s.key: {
                "label": s.label,
                "cmd": s.cmd,
                "health": s.health_path,
                "start_ready_s": s.start_ready_s,
                "rss_mb_after_load": s.rss_mb,
            }
            for s in (mlflow_server, ours)
        },
        "targets": {
            t.key: {
                "label": t.label,
                "server": t.server.key,
                "path": t.path,
                "lua": str(t.lua.relative_to(ROOT)),
                "wrk": common.wrk_command(
                    t.url,
                    lua=t.lua,
                    threads=args.threads,
                    connections=args.connections,
                    duration=args.duration,
                ),
                "common.median": t.summary(),
                "errors": t.errors,
                "rounds": [r.to_dict() for r in t.loaded],
                "single_client_rounds": [r.to_dict() for r in t.single],
                "warmup": [r.to_dict() for r in t.warmup],
            }
            for t in targets
        },
        "ratios": result,
        "target_speedup": TARGET_SPEEDUP,
        "errors": total_errors,
    }
    out_file = out_dir / "serving.json"
    out_file.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {out_file}")
    return 1 if total_errors else 0


if __name__ == "__main__":
    common.run_main(main)
