"""Release-analysis benchmark: what shadow mirroring costs live traffic, how fast a bake
breach puts traffic back on the old version.

    .venv/bin/python -m bench.analysis [--rounds 3] [--duration 8] [--trials 2]

Starts the local stack (MLflow, blue/green model servers, router, controller) on free
ports in a temp dir, serving iris v1 on blue with v2 warm on green, and:

1. shadow cost: interleaved rounds of `wrk` through the router with mirroring off, on at
   the controller's defaults (every request sampled, at most `shadow_max_rps` a second
   mirrored), and, to show what the cap bounds, on without a cap (the largest allowed) for
   every request and for a `--sample` of them; blue mirrors to green, which predicts and
   compares, driven by the controller's own shadow adapter. Same length each; medians of
   req/s, p50 and p99 side by side, each mode's req/s and p99 as a ratio of mirroring
   off's, with what was mirrored, skipped by the cap and dropped, and the targets for the
   defaults: req/s >= 0.85x and p99 <= 1.25x of off, each HOLDS or MISSED. On one machine
   the standby shares the cores with the live server, so the "on" figures include the
   standby's work; on Kubernetes it runs on pods of its own.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common
from bluegreen.client import ControllerClient
from bluegreen.iris import IRIS_ROWS, register_constant, train_and_register
from bluegreen.stack import LocalStack, StackPorts
from bluegreen.traffic import TrafficProbe
from controller.domain.analysis import MIRROR_RPS_MAX, AnalysisPolicy
from controller.serving_probe import HttpShadowTraffic

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "iris-analysis"
PREDICT_LUA = common.LUA_DIR / "predict_rows.lua"
BAKE_S = 30.0
# Enough requests for a verdict within a second of the flip at bench load.
THRESHOLDS = {"min_requests": 50, "interval_s": 0.25}
OFF, DEFAULTS = "off", "defaults"
# What mirroring at the controller's defaults may cost live traffic, against mirroring off.
TARGET_RPS_RATIO, TARGET_P99_RATIO = 0.85, 1.25


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_wrk_options(
        parser, duration_s=8.0, rounds=3, rounds_help="rounds of every mirroring mode; medians"
    )
    parser.add_argument("--trials", type=int, default=2, help="bad releases rolled back")
    parser.add_argument(
        "--sample", type=float, default=0.1, help="the uncapped partial mirror's share"
    )
    args = parser.parse_args(argv)
    if args.trials < 1 or not 0 < args.sample < 1:
        parser.error("trials must be positive, sample in (0, 1)")
    common.check_wrk_options(parser, args)
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class MirrorMode:
    sample: float
    max_rps: float


def default_mode() -> MirrorMode:
    """What a release mirrors unless told otherwise: the settings' defaults, which are the
    chart's (tests/chart/test_chart_settings.py)."""
    defaults = AnalysisPolicy()
    return MirrorMode(defaults.shadow_sample, defaults.shadow_max_rps)


def mirror_modes(sample: float) -> dict[str, MirrorMode | None]:
    """Mirroring off, at the controller's defaults, and uncapped (every request; `sample`)."""
    return {
        OFF: None,
        DEFAULTS: default_mode(),
        "uncapped, every request": MirrorMode(1.0, MIRROR_RPS_MAX),
        f"uncapped, {sample:.0%} sampled": MirrorMode(sample, MIRROR_RPS_MAX),
    }


class Mirror:
    """Blue mirroring to green, driven by the controller's own shadow adapter."""

    def __init__(self, stack: LocalStack) -> None:
        self._live = [f"http://127.0.0.1:{stack.ports.blue}"]
        self._standby = [f"http://127.0.0.1:{stack.ports.green}"]
        self._traffic = HttpShadowTraffic(model_server_token=stack.model_server_token)

    def start(self, mode: MirrorMode) -> str:
        session = f"bench-{uuid.uuid4().hex[:8]}"
        self._traffic.start(
            self._live,
            target=self._standby[0],
            sample=mode.sample,
            max_rps=mode.max_rps,
            session=session,
            max_seconds=3600,
        )
        return session

    def stop(self, session: str) -> dict[str, Any]:
        sent = self._traffic.stop(self._live, session=session)
        report = self._traffic.report(self._standby, session=session)
        return {**sent.model_dump(), "report": report.model_dump()}


def measure_shadow_cost(
    stack: LocalStack, args: argparse.Namespace
) -> tuple[dict[str, list[common.WrkResult]], list[dict[str, Any]]]:
    url = f"{stack.router_url}/predict"
    modes = mirror_modes(args.sample)
    runs: dict[str, list[common.WrkResult]] = {name: [] for name in modes}
    sessions: list[dict[str, Any]] = []
    mirror = Mirror(stack)
    wrk = {"lua": PREDICT_LUA, "threads": args.threads, "connections": args.connections}
    common.run_wrk(url, duration=2.0, **wrk)  # warm-up, not counted
    for index in range(args.rounds):
        for name, mode in modes.items():
            time.sleep(1.0)
            session = mirror.start(mode) if mode is not None else None
            try:
                runs[name].append(common.run_wrk(url, duration=args.duration, **wrk))
            finally:
                if session is not None:
                    sessions.append({"mode": name, **mirror.stop(session)})
            got = runs[name][-1]
            mirrored = ""
            if session is not None:
                last = sessions[-1]
                mirrored = (
                    f"; mirrored {last['mirrored']}, skipped by the cap "
                    f"{last['skipped_by_cap']}, dropped {last['dropped']}"
                )
            _log(
                f"round {index + 1} {name}: {got.rps:.0f} req/s p50 {got.p50_ms:.2f} ms "
                f"p99 {got.p99_ms:.2f} ms{mirrored}"
            )
    return runs, sessions


def cost_ratios(runs: dict[str, list[common.WrkResult]]) -> dict[str, dict[str, float]]:
    """Each mode's median req/s and p99 over mirroring off's (same run, interleaved)."""
    off_rps = common.median(r.rps for r in runs[OFF])
    off_p99 = common.median(r.p99_ms for r in runs[OFF])
    return {
        mode: {
            "rps": common.median(r.rps for r in values) / off_rps if off_rps else float("nan"),
            "p99": common.median(r.p99_ms for r in values) / off_p99 if off_p99 else float("nan"),
        }
        for mode, values in runs.items()
    }


def verdicts(ratios: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """The targets for mirroring at the defaults, each held or missed."""
    at_defaults = ratios[DEFAULTS]
    return {
        "throughput": {
            "value": at_defaults["rps"],
            "target": f">= {TARGET_RPS_RATIO}x of off",
            "holds": at_defaults["rps"] >= TARGET_RPS_RATIO,
        },
        "p99": {
            "value": at_defaults["p99"],
            "target": f"<= {TARGET_P99_RATIO}x of off",
            "holds": at_defaults["p99"] <= TARGET_P99_RATIO,
        },
    }


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


def render(
    runs: dict[str, list[common.WrkResult]],
    trials: list[dict[str, Any]],
    sessions: list[dict[str, Any]],
) -> str:
    ratios = cost_ratios(runs)
    held = verdicts(ratios)

    def cells(mode: str) -> list[str]:
        values = runs[mode]
        mine = [s for s in sessions if s["mode"] == mode]
        return [
            mode,
            f"{common.median(r.rps for r in values):.0f}",
            f"{ratios[mode]['rps']:.2f}x",
            f"{common.median(r.p50_ms for r in values):.2f}",
            f"{common.median(r.p99_ms for r in values):.2f}",
            f"{ratios[mode]['p99']:.2f}x",
            str(sum(s["mirrored"] for s in mine)) if mine else "-",
            str(sum(s["skipped_by_cap"] for s in mine)) if mine else "-",
            str(sum(s["dropped"] for s in mine)) if mine else "-",
            str(sum(r.errors for r in values)),
        ]

    defaults = default_mode()
    lines = [
        "shadow cost to live traffic, through the router (medians of interleaved rounds; "
        f"defaults: {defaults.sample:.0%} sampled, at most {defaults.max_rps:g} mirrored a "
        "second):",
        common.format_table(
            [
                "mirroring",
                "req/s",
                "vs off",
                "p50 ms",
                "p99 ms",
                "vs off",
                "mirrored",
                "over cap",
                "dropped",
                "errors",
            ],
            [cells(m) for m in runs],
        ),
        "",
        "mirroring at the defaults against mirroring off:",
        *(
            f"  {name:<10} {v['value']:.2f}x  target {v['target']:<14} "
            f"{'HOLDS' if v['holds'] else 'MISSED'}"
            for name, v in held.items()
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
        "shadow_ratios": cost_ratios(runs),
        "shadow_targets": verdicts(cost_ratios(runs)),
        "sessions": sessions,
        "breach": trials,
        "failed_requests": errors,
    }
    (out_dir / "analysis.json").write_text(json.dumps(report, indent=2))
    print(render(runs, trials, sessions))
    print(f"failed live requests: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    common.run_main(main)
