"""Serving benchmark: ours, `mlflow models serve`, a bare ASGI ceiling and the router, side by side.

    python -m bench.serving [--duration 10] [--connections 16] [--rounds 3] [--quick]
                            [--predict] [--out bench/out]

Starts a real MLflow tracking server in a temp dir, trains and registers an iris model,
starts `mlflow models serve`, the bare ASGI + predict ceiling (`bench/bare_asgi.py`) and our
model server one after the other (start→first 200 of each alone), starts ours once more on
the same model cache (a re-pin or rollback), puts the local router in front of ours, checks
they all predict the same, then drives each with wrk in interleaved rounds and prints
medians and the issue's targets. See bench/README.md.
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
from bench.serving_servers import (
    MODEL_NAME,
    ROOT,
    Server,
    start_bare,
    start_mlflow_serve,
    start_ours,
    start_router,
    start_tracking_server,
    write_estimator,
)
from plumbing.processes import stop

INVOCATIONS_LUA = common.LUA_DIR / "invocations_split.lua"
PREDICT_LUA = common.LUA_DIR / "predict_rows.lua"

# The targets (issue 15), checked on every run.
START_RATIO_MAX = 0.5  # ours start→ready / mlflow's
RSS_MAX_MB = 200.0
CEILING_RATIO_MIN = 1.5  # ours c16 req/s / bare ASGI's
SINGLE_P50_SLACK_MS = 0.1  # ours 1-client p50 - bare's
ROUTER_RPS_MIN = 0.85  # through the router / direct
ROUTER_ADDED_P50_MAX_MS = 0.5


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    common.add_wrk_options(parser, duration_s=10.0, rounds=3)
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target")
    parser.add_argument(
        "--settle", type=float, default=1.0, help="idle seconds before each wrk run"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one round of 3 s runs (about a minute and a half)"
    )
    parser.add_argument("--predict", action="store_true", help="also drive ours /predict")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup, args.settle = 3.0, 1, 1.0, 0.5
    common.check_wrk_options(parser, args)
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_load() -> str:
    """The 1/5/15-minute load averages: the figures mean little without them (shared cores)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def check_same_predictions(reference: Server, others: list[Server], predict: Server) -> list[Any]:
    """Every server answers the benchmark bodies with MLflow's predictions."""
    split_body = common.lua_body(INVOCATIONS_LUA)
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=30) as client:

        def post(url: str, body: str) -> Any:
            response = client.post(url, content=body, headers=headers)
            assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"
            return response.json()

        expected = post(reference.base_url + "/invocations", split_body)
        for server in others:
            got = post(server.base_url + "/invocations", split_body)
            assert got == expected, f"{server.label}: {got!r} != mlflow's {expected!r}"
        got = post(predict.base_url + "/predict", common.lua_body(PREDICT_LUA))
        assert got == {"prediction": expected["predictions"]}, f"/predict: {got!r}"
    return list(expected["predictions"])


def _run(
    target: Target, args: argparse.Namespace, *, single: bool, duration: float
) -> common.WrkResult:
    threads, connections = (1, 1) if single else (args.threads, args.connections)
    # Let the previous server drain what it still had queued: all share the same cores.
    time.sleep(args.settle)
    result = common.run_wrk(
        target.url, lua=target.lua, threads=threads, connections=connections, duration=duration
    )
    _log(
        f"  {target.label:<34} -t{threads} -c{connections}: {result.rps:8.1f} req/s  "
        f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
    )
    return result


def measure(targets: list[Target], args: argparse.Namespace) -> None:
    if args.warmup > 0:
        _log(f"warm-up, {args.warmup:g} s each")
        for target in targets:
            target.warmup.append(_run(target, args, single=False, duration=args.warmup))
    for round_no in range(1, args.rounds + 1):
        _log(f"round {round_no}/{args.rounds} ({machine_load()})")
        for target in targets:
            target.loaded.append(_run(target, args, single=False, duration=args.duration))
        for target in targets:
            target.single.append(_run(target, args, single=True, duration=args.duration))


def _fmt(value: float, digits: int) -> str:
    return "—" if value != value else f"{value:,.{digits}f}"  # nan: not measured


def render_table(targets: list[Target], args: argparse.Namespace) -> str:
    header = [
        "server", "start→200 s", "RSS MB", "req/s c16", "p50 ms", "p99 ms", "1-client p50 ms",
        "errors",
    ]  # fmt: skip
    rows = []
    for t in targets:
        s = t.summary()
        rows.append(
            [
                t.label,
                _fmt(t.server.start_ready_s, 2),
                _fmt(t.server.rss_mb, 0),
                _fmt(s["rps"], 0),
                _fmt(s["p50_ms"], 2),
                _fmt(s["p99_ms"], 2),
                _fmt(s["single_p50_ms"], 3),
                str(t.errors),
            ]
        )
    return "\n".join(
        [
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency, "
            f"single-row bodies; medians of {args.rounds} interleaved rounds; "
            "1-client = -t1 -c1",
            common.format_table(header, rows),
        ]
    )


def _paired(a: list[common.WrkResult], b: list[common.WrkResult], figure: str, how: str) -> float:
    """Median over rounds of a/b (how="ratio") or a-b ("diff") of one figure, round by round.

    Runs of one round are interleaved, minutes apart from the next round's: pairing them
    cancels most of what other work on a shared machine does to both.
    """
    values = [
        getattr(x, figure) / getattr(y, figure)
        if how == "ratio"
        else getattr(x, figure) - getattr(y, figure)
        for x, y in zip(a, b, strict=True)
    ]
    return common.median(values)


def verdicts(by_key: dict[str, Target], starts: dict[str, float]) -> dict[str, Any]:
    """The issue's targets, each with its figure and whether it holds."""
    ours, mlflow, bare, router = (by_key[k] for k in ("ours", "mlflow", "bare", "router"))
    ours_rss = ours.server.rss_mb
    start_ratio = starts["ours"] / starts["mlflow"]
    repin_ratio = starts["ours_repin"] / starts["mlflow"]
    ceiling = _paired(ours.loaded, bare.loaded, "rps", "ratio")
    p50_gap = _paired(ours.single, bare.single, "p50_ms", "diff")
    router_share = _paired(router.loaded, ours.loaded, "rps", "ratio")
    router_added = _paired(router.single, ours.single, "p50_ms", "diff")
    return {
        "start_over_mlflow": {"value": start_ratio, "holds": start_ratio <= START_RATIO_MAX},
        "repin_start_over_mlflow": {"value": repin_ratio, "holds": repin_ratio <= START_RATIO_MAX},
        "rss_mb": {"value": ours_rss, "holds": ours_rss <= RSS_MAX_MB},
        "c16_over_bare": {"value": ceiling, "holds": ceiling >= CEILING_RATIO_MIN},
        "single_p50_minus_bare_ms": {"value": p50_gap, "holds": p50_gap <= SINGLE_P50_SLACK_MS},
        "router_rps_share": {"value": router_share, "holds": router_share >= ROUTER_RPS_MIN},
        "router_added_single_p50_ms": {
            "value": router_added,
            "holds": router_added < ROUTER_ADDED_P50_MAX_MS,
        },
        "router_added_c16_p50_ms": {
            "value": _paired(router.loaded, ours.loaded, "p50_ms", "diff"),
            "holds": None,
        },
        "ours_over_mlflow_rps": {
            "value": _paired(ours.loaded, mlflow.loaded, "rps", "ratio"),
            "holds": None,
        },
    }


def render_verdicts(v: dict[str, Any], starts: dict[str, float]) -> str:
    def mark(key: str) -> str:
        return {True: "HOLDS", False: "MISSED", None: ""}[v[key]["holds"]]

    def val(key: str) -> float:
        return float(v[key]["value"])

    return "\n".join(
        [
            "targets (ratios and differences: medians over rounds of the round's own pair)",
            f"start→ready  ours {starts['ours']:.2f} s / mlflow {starts['mlflow']:.2f} s = "
            f"{val('start_over_mlflow'):.2f}  (<= {START_RATIO_MAX}) {mark('start_over_mlflow')}",
            f"  re-pin on the model cache {starts['ours_repin']:.2f} s = "
            f"{val('repin_start_over_mlflow'):.2f} of mlflow's  {mark('repin_start_over_mlflow')}",
            f"RSS          ours {val('rss_mb'):.0f} MB  (<= {RSS_MAX_MB:.0f}) {mark('rss_mb')}",
            f"c16 req/s    ours / bare ASGI = {val('c16_over_bare'):.2f}x  "
            f"(>= {CEILING_RATIO_MIN}) {mark('c16_over_bare')}",
            f"1-client p50 ours - bare ASGI = {val('single_p50_minus_bare_ms'):+.3f} ms  "
            f"(<= {SINGLE_P50_SLACK_MS}) {mark('single_p50_minus_bare_ms')}",
            f"router       req/s {val('router_rps_share') * 100:.0f} % of direct  "
            f"(>= {ROUTER_RPS_MIN * 100:.0f} %) {mark('router_rps_share')}; "
            f"adds {val('router_added_single_p50_ms'):+.3f} ms 1-client p50  "
            f"(< {ROUTER_ADDED_P50_MAX_MS}) {mark('router_added_single_p50_ms')}, "
            f"{val('router_added_c16_p50_ms'):+.2f} ms c16 p50",
            f"ours / mlflow models serve req/s = {val('ours_over_mlflow_rps'):.1f}x",
        ]
    )


def _versions() -> dict[str, str]:
    import mlflow

    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "python": platform.python_version(),
        "mlflow": mlflow.__version__,
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "",
    }


def start_servers(
    procs: common.Processes, tmp: Path, logs: Path, args: argparse.Namespace
) -> tuple[str, list[Server], dict[str, float]]:
    """Every server, started one at a time so each start→ready is measured alone."""
    tracking_uri = start_tracking_server(procs, tmp / "mlflow", logs)
    _log(f"mlflow tracking server up at {tracking_uri}")
    from bluegreen.iris import train_and_register

    with contextlib.redirect_stdout(sys.stderr):  # MLflow prints run links
        registered = train_and_register(tracking_uri=tracking_uri, model=MODEL_NAME)
    version = registered.version
    _log(f"registered {MODEL_NAME} v{version}")
    estimator = write_estimator(tracking_uri, version, tmp / "estimator.pkl")
    cache = tmp / "model-cache"
    starts: dict[str, float] = {}
    mlflow_server = start_mlflow_serve(procs, tracking_uri, version, logs)
    bare = start_bare(procs, estimator, logs)
    ours = start_ours(procs, tracking_uri, version, cache, logs)
    # A second start on the same cache: what a re-pin, a rollback or a restart costs.
    repin = start_ours(procs, tracking_uri, version, cache, logs, key="ours_repin")
    stop(repin.proc)
    for server in (mlflow_server, bare, ours, repin):
        starts[server.key] = server.start_ready_s
        _log(f"{server.label} ({server.key}) ready in {server.start_ready_s:.2f} s")
    router = start_router(procs, ours, tmp, logs)
    return version, [mlflow_server, bare, ours, router], starts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir: Path = args.out.resolve()
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    common.wrk_command("http://127.0.0.1/", lua=None, threads=1, connections=1, duration=1)
    load_before = machine_load()
    _log(f"logs in {logs}; {load_before}")

    with (
        tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name,
        common.Processes() as procs,
    ):
        version, servers, starts = start_servers(procs, Path(tmp_name), logs, args)
        mlflow_server, bare, ours, router = servers
        predictions = check_same_predictions(mlflow_server, [bare, ours, router], ours)
        _log(f"same predictions from all: {predictions}")
        targets = [
            Target("mlflow", "mlflow models serve /invocations", mlflow_server, "/invocations",
                   INVOCATIONS_LUA),
            Target("bare", "bare ASGI + predict /invocations", bare, "/invocations",
                   INVOCATIONS_LUA),
            Target("ours", "ours /invocations", ours, "/invocations", INVOCATIONS_LUA),
            Target("router", "ours via router /invocations", router, "/invocations",
                   INVOCATIONS_LUA),
        ]  # fmt: skip
        if args.predict:
            targets.append(Target("ours_predict", "ours /predict", ours, "/predict", PREDICT_LUA))
        measure(targets, args)
        for server in servers:
            server.rss_mb = common.tree_rss_mb(server.proc.pid)
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.label} exited during the benchmark")
    load_after = machine_load()

    by_key = {t.key: t for t in targets}
    result = verdicts(by_key, starts)
    total_errors = sum(t.errors for t in targets)
    print(render_table(targets, args))
    print()
    print(render_verdicts(result, starts))
    print(f"machine: before {load_before}; after {load_after}")
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
            "model": f"{MODEL_NAME} v{version}",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_before": load_before,
            "load_after": load_after,
        },
        "versions": _versions(),
        "predictions": predictions,
        "start_ready_s": starts,
        "servers": {
            s.key: {"label": s.label, "cmd": s.cmd, "health": s.health_path, "rss_mb": s.rss_mb}
            for s in servers
        },
        "targets": {
            t.key: {
                "label": t.label,
                "server": t.server.key,
                "path": t.path,
                "lua": str(t.lua.relative_to(ROOT)),
                "median": t.summary(),
                "errors": t.errors,
                "rounds": [r.to_dict() for r in t.loaded],
                "single_client_rounds": [r.to_dict() for r in t.single],
                "warmup": [r.to_dict() for r in t.warmup],
            }
            for t in targets
        },
        "verdicts": result,
        "errors": total_errors,
    }
    out_file = out_dir / "serving.json"
    out_file.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {out_file}")
    return 1 if total_errors else 0


if __name__ == "__main__":
    common.run_main(main)
