"""Release-analysis benchmark: what shadow mirroring costs live traffic, how fast a bake
breach puts traffic back on the old version.

    .venv/bin/python -m bench.analysis [--rounds 3] [--duration 8] [--trials 2]

Starts the local stack (MLflow, blue/green model servers, router, controller) on free
ports in a temp dir, serving iris v1 on blue with v2 warm on green, and:

1. shadow cost: interleaved rounds of `wrk` through the router with mirroring off, on for
   every request, and on for a `--sample` of them (blue mirrors to green, which predicts
   and compares), same length each; medians of req/s, p50 and p99 side by side, with what
   was mirrored and dropped. On one machine the standby shares the cores with the live
   server, so the "on" figures include the standby's work; on Kubernetes it runs on pods
   of its own.
2. breach → old version: releases v3 (a classifier that answers one class: it passes the
   smoke test) with a bake window under load, `--trials` times; reports when the breach was
   seen, the controller's flip-back time, and from a client probe how long live requests
   reached v3 (first to last request it served) and how many.

Prints a table and writes OUT/analysis.json. Exits 1 if a live request failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench import common
from bluegreen.client import ControllerClient
from bluegreen.iris import IRIS_ROWS, register_constant, train_and_register
from bluegreen.stack import LocalStack, StackPorts
from bluegreen.traffic import TrafficProbe

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "iris-analysis"
PREDICT_LUA = common.LUA_DIR / "predict_rows.lua"
BAKE_S = 30.0
# Enough requests for a verdict within a second of the flip at bench load.
THRESHOLDS = {"min_requests": 50, "interval_s": 0.25}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_wrk_options(
        parser, duration_s=8.0, rounds=3, rounds_help="off/on shadow rounds; medians"
    )
    parser.add_argument("--trials", type=int, default=2, help="bad releases rolled back")
    parser.add_argument("--sample", type=float, default=0.1, help="the partial mirror's share")
    args = parser.parse_args(argv)
    if args.trials < 1 or not 0 < args.sample < 1:
        parser.error("trials must be positive, sample in (0, 1)")
    common.check_wrk_options(parser, args)
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Mirror:
    """Blue mirroring to green, driven the way the controller's shadow step drives it."""

    def __init__(self, stack: LocalStack) -> None:
        self._live = f"http://127.0.0.1:{stack.ports.blue}"
        self._standby = f"http://127.0.0.1:{stack.ports.green}"
        self._headers = {"authorization": f"Bearer {stack.model_server_token}"}

    def start(self, sample: float) -> str:
        session = f"bench-{uuid.uuid4().hex[:8]}"
        answer = httpx.put(
            f"{self._live}/shadow/mirror",
            json={"session": session, "target": self._standby, "sample": sample},
            headers=self._headers,
        )
        answer.raise_for_status()
        return session

    def stop(self, session: str) -> dict[str, Any]:
        ended = httpx.delete(f"{self._live}/shadow/mirror", headers=self._headers)
        ended.raise_for_status()
        report = httpx.get(f"{self._standby}/shadow/report", params={"session": session})
        report.raise_for_status()
        return {**ended.json(), "report": report.json()}


def measure_shadow_cost(
    stack: LocalStack, args: argparse.Namespace
) -> tuple[dict[str, list[common.WrkResult]], list[dict[str, Any]]]:
    url = f"{stack.router_url}/predict"
    samples = {"off": 0.0, "on, every request": 1.0, f"on, {args.sample:.0%} sampled": args.sample}
    runs: dict[str, list[common.WrkResult]] = {mode: [] for mode in samples}
    sessions: list[dict[str, Any]] = []
    mirror = Mirror(stack)
    wrk = {"lua": PREDICT_LUA, "threads": args.threads, "connections": args.connections}
    common.run_wrk(url, duration=2.0, **wrk)  # warm-up, not counted
    for index in range(args.rounds):
        for mode, sample in samples.items():
            time.sleep(1.0)
            session = mirror.start(sample) if sample else None
            try:
                runs[mode].append(common.run_wrk(url, duration=args.duration, **wrk))
            finally:
                if session is not None:
                    sessions.append({"mode": mode, **mirror.stop(session)})
            got = runs[mode][-1]
            mirrored = ""
            if session is not None:
                mirrored = (
                    f"; mirrored {sessions[-1]['mirrored']}, dropped {sessions[-1]['dropped']}"
                )
            _log(
                f"round {index + 1} {mode}: {got.rps:.0f} req/s p50 {got.p50_ms:.2f} ms "
                f"p99 {got.p99_ms:.2f} ms{mirrored}"
            )
    return runs, sessions


def measure_breach(
    client: ControllerClient, stack: LocalStack, bad: str, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], int]:
    trials: list[dict[str, Any]] = []
    failed = 0
    for index in range(args.trials):
        with TrafficProbe(url=f"{stack.router_url}/predict", clients=4, payload=IRIS_ROWS) as probe:
            time.sleep(2.0)  # the old version's baseline
            op = client.switch(version=bad, bake_s=BAKE_S, analysis=THRESHOLDS)
            time.sleep(1.0)
        records = probe.snapshot()
        failed += len(probe.failed())
        bake = op["analysis"]["bake"]
        served_bad = sorted(r.started for r in records if r.version == bad)
        trials.append(
            {
                "status": op["status"],
                "failed_step": op.get("failed_step"),
                "breached_check": bake.get("breached_check"),
                "bake_seconds": bake.get("seconds"),
                "flip_back_ms": bake.get("flip_back_ms"),
                "requests_served_by_bad": len(served_bad),
                # How long live clients were on the bad version, as they saw it.
                "bad_exposure_ms": (
                    round((served_bad[-1] - served_bad[0]) * 1000, 1) if served_bad else None
                ),
                "reason": op.get("reason"),
            }
        )
        _log(f"trial {index + 1}: {json.dumps(trials[-1])}")
    return trials, failed


def render(runs: dict[str, list[common.WrkResult]], trials: list[dict[str, Any]]) -> str:
    def cells(mode: str) -> list[str]:
        values = runs[mode]
        return [
            mode,
            f"{common.median(r.rps for r in values):.0f}",
            f"{common.median(r.p50_ms for r in values):.2f}",
            f"{common.median(r.p99_ms for r in values):.2f}",
            str(sum(r.errors for r in values)),
        ]

    lines = [
        "shadow cost to live traffic, through the router (medians of interleaved rounds):",
        common.format_table(
            ["mirroring", "req/s", "p50 ms", "p99 ms", "errors"], [cells(m) for m in runs]
        ),
        "",
        "bake breach -> traffic on the old version:",
        common.format_table(
            [
                "trial",
                "verdict",
                "check",
                "breach seen after s",
                "flip back ms",
                "clients on v3 ms",
                "v3 requests",
            ],
            [
                [
                    str(i + 1),
                    f"{t['status']} at {t['failed_step']}",
                    str(t["breached_check"]),
                    f"{t['bake_seconds']}",
                    f"{t['flip_back_ms']}",
                    f"{t['bad_exposure_ms']}",
                    str(t["requests_served_by_bad"]),
                ]
                for i, t in enumerate(trials)
            ],
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir: Path = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    common.wrk_command("http://127.0.0.1/", lua=None, threads=1, connections=1, duration=1)
    state_dir = Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    stack = LocalStack(model=MODEL_NAME, state_dir=state_dir, ports=StackPorts.free())
    try:
        tracking_uri = stack.start_mlflow()
        with contextlib.redirect_stdout(sys.stderr):  # MLflow prints run links
            v1 = train_and_register(tracking_uri=tracking_uri, model=MODEL_NAME).version
            v2 = train_and_register(tracking_uri=tracking_uri, model=MODEL_NAME, C=0.5).version
            bad = register_constant(tracking_uri=tracking_uri, model=MODEL_NAME, label=0)
        _log(f"registered v{v1}, v{v2} and v{bad} (constant); starting with v{v1}")
        stack.start(version=v1)
        client = ControllerClient(stack.controller_url)
        # v2 warm on green, blue live again: the standby the shadow mirrors to.
        client.switch(version=v2)
        client.rollback()
        runs, sessions = measure_shadow_cost(stack, args)
        trials, failed = measure_breach(client, stack, bad, args)
        client.close()
    finally:
        stack.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
    errors = failed + sum(r.errors for rs in runs.values() for r in rs)
    report = {
        "shadow": {k: [r.to_dict() for r in rs] for k, rs in runs.items()},
        "sessions": sessions,
        "breach": trials,
        "failed_requests": errors,
    }
    (out_dir / "analysis.json").write_text(json.dumps(report, indent=2))
    print(render(runs, trials))
    print(f"failed live requests: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    common.run_main(main)
