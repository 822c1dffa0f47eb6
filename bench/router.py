"""Router benchmark: a real model server straight, and through the local router.

    .venv/bin/python -m bench.router [--duration 8] [--rounds 3] [--out bench/out]

Starts a real MLflow tracking server in a temp dir, trains and registers an iris model,
starts our model server and `python -m router` in front of it (blue), then drives
`/predict` with one bare row with wrk, direct and through the router in interleaved
rounds (`-t2 -c16` for throughput, `-t1 -c1` for the single-client p50), and prints the
medians, the share of direct throughput the router keeps and the p50 it adds
(issue 15's target: at least 85 % and under 0.5 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from bench.serving import PREDICT_LUA, Target, measure
from bench.serving_servers import MODEL_NAME, start_ours, start_router, start_tracking_server

TARGET_KEPT = 0.85
TARGET_ADDED_P50_MS = 0.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    common.add_wrk_options(parser, duration_s=8.0, rounds=3)
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target")
    parser.add_argument("--settle", type=float, default=1.0, help="idle seconds before a run")
    args = parser.parse_args(argv)
    common.check_wrk_options(parser, args)
    return args


def compare(direct: Target, routed: Target) -> dict[str, float]:
    d, r = direct.summary(), routed.summary()
    return {
        "direct_rps": d["rps"],
        "router_rps": r["rps"],
        "kept": r["rps"] / d["rps"],
        "direct_p50_ms": d["p50_ms"],
        "router_p50_ms": r["p50_ms"],
        "direct_single_p50_ms": d["single_p50_ms"],
        "router_single_p50_ms": r["single_p50_ms"],
        "added_single_p50_ms": r["single_p50_ms"] - d["single_p50_ms"],
    }


def render(result: dict[str, float], args: argparse.Namespace, load: str) -> str:
    rows = [
        (
            "direct /predict",
            f"{result['direct_rps']:,.0f}",
            f"{result['direct_p50_ms']:.2f}",
            f"{result['direct_single_p50_ms']:.3f}",
        ),
        (
            "through the router",
            f"{result['router_rps']:,.0f}",
            f"{result['router_p50_ms']:.2f}",
            f"{result['router_single_p50_ms']:.3f}",
        ),
    ]
    table = common.format_table(
        ("", f"req/s -t{args.threads} -c{args.connections}", "p50 ms", "single-client p50 ms"),
        rows,
    )
    kept, added = result["kept"], result["added_single_p50_ms"]
    return (
        f"{table}\n\nrouter keeps {kept:.1%} of direct throughput "
        f"(target >= {TARGET_KEPT:.0%}: {'ok' if kept >= TARGET_KEPT else 'MISSED'}); "
        f"adds {added:.3f} ms single-client p50 "
        f"(target < {TARGET_ADDED_P50_MS} ms: {'ok' if added < TARGET_ADDED_P50_MS else 'MISSED'})"
        f"\nmedians of {args.rounds} interleaved rounds of {args.duration:g} s; load before: {load}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir: Path = args.out.resolve()
    logs = out_dir / "logs-router"
    logs.mkdir(parents=True, exist_ok=True)
    common.wrk_command("http://127.0.0.1/", lua=None, threads=1, connections=1, duration=1)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with (
        tempfile.TemporaryDirectory(prefix="bench-router-") as tmp_name,
        common.Processes() as procs,
    ):
        tmp = Path(tmp_name)
        tracking_uri = start_tracking_server(procs, tmp / "mlflow", logs)
        from bluegreen.iris import train_and_register

        with contextlib.redirect_stdout(sys.stderr):
            registered = train_and_register(tracking_uri=tracking_uri, model=MODEL_NAME)
        model = start_ours(procs, tracking_uri, registered.version, tmp, logs)
        router = start_router(procs, model, tmp, logs)  # both colors: the one model server
        direct = Target("direct", "direct /predict", model, "/predict", PREDICT_LUA)
        routed = Target("router", "router /predict", router, "/predict", PREDICT_LUA)
        measure([direct, routed], args)
        errors = direct.errors + routed.errors
    result = compare(direct, routed)
    print(render(result, args, load))
    print(f"errors: {errors}" + ("" if errors == 0 else "  (FAIL)"))
    report = {
        "benchmark": "router",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_before": load,
        "config": vars(args) | {"out": str(args.out)},
        "result": result,
        "rounds": {
            t.key: {
                "loaded": [r.to_dict() for r in t.loaded],
                "single": [r.to_dict() for r in t.single],
            }
            for t in (direct, routed)
        },
        "errors": errors,
    }
    (out_dir / "router.json").write_text(json.dumps(report, indent=2))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    common.run_main(main)
