"""Switch benchmark: router overhead, then switch/rollback cycles under continuous load.

    .venv/bin/python -m bench.switch [--cycles 5] [--out bench/out]

Starts the local stack (MLflow, blue/green model servers, router, controller) on free
ports in a temp dir with two registered iris versions, serving v1. Measures what the
router costs against the blue model server directly, then alternates switch (to v2) and
rollback (to v1) while wrk and a TrafficProbe run through the router, and reports failed
requests, flip → all-new-requests-on-the-new-version times and operation durations.
Writes OUT/switch.json and OUT/switch.png. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench import common
from bluegreen.client import ControllerClient
from bluegreen.stack import LocalStack, StackPorts
from bluegreen.traffic import Served, TrafficProbe

ROOT = Path(__file__).resolve().parents[1]

MODEL_NAME = "iris-switch"
PREDICT_LUA = common.LUA_DIR / "predict_rows.lua"
ROLLBACK_TARGET_S = 1.0
# The load wrk is stopped (SIGINT) once the cycles are done; -d only bounds a runaway.
LOAD_MAX_S = 3600.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=5, help="operations: switch, rollback, ...")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between operations")
    common.add_wrk_options(
        parser,
        duration_s=10.0,
        rounds=2,
        rounds_help="router-overhead rounds; medians",
        what="router-overhead ",
    )
    parser.add_argument("--load-threads", type=int, default=1, help="cycle-phase wrk -t")
    parser.add_argument("--load-connections", type=int, default=8, help="cycle-phase wrk -c")
    parser.add_argument("--probe-clients", type=int, default=2, help="TrafficProbe threads")
    parser.add_argument("--bin", type=float, default=0.2, help="plot bin in seconds")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.pause < 0:
        parser.error("cycles must be positive, pause not negative")
    if not 0.05 <= args.bin <= 1.0:
        parser.error("--bin must be between 0.05 and 1 s")
    common.check_wrk_options(parser, args)
    args.load_threads = min(args.load_threads, args.load_connections)
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------- router overhead


@dataclass
class OverheadTarget:
    key: str
    label: str
    url: str
    rounds: list[common.WrkResult]

    def summary(self) -> dict[str, float]:
        return {
            "rps": common.median(r.rps for r in self.rounds),
            "p50_ms": common.median(r.p50_ms for r in self.rounds),
            "p99_ms": common.median(r.p99_ms for r in self.rounds),
            "errors": sum(r.errors for r in self.rounds),
        }


def check_bodies(direct_url: str, router_url: str) -> None:
    """Both answer the wrk body alike; the router names the color it used."""
    body = common.lua_body(PREDICT_LUA)
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=30) as client:
        direct = client.post(direct_url, content=body, headers=headers)
        routed = client.post(router_url, content=body, headers=headers)
    for name, answer in (("direct", direct), ("router", routed)):
        assert answer.status_code == 200, f"{name}: {answer.status_code} {answer.text}"
    assert direct.json() == routed.json(), f"{direct.json()!r} != {routed.json()!r}"
    assert routed.headers.get("x-serving-color") == "blue", dict(routed.headers)


def measure_overhead(targets: list[OverheadTarget], args: argparse.Namespace) -> None:
    def run(target: OverheadTarget, duration: float) -> common.WrkResult:
        time.sleep(1.0)  # let the previous run drain: everything shares the cores
        result = common.run_wrk(
            target.url,
            lua=PREDICT_LUA,
            threads=args.threads,
            connections=args.connections,
            duration=duration,
        )
        _log(
            f"  {target.label:<16} {result.rps:8.1f} req/s  p50 {result.p50_ms:6.2f} ms  "
            f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}"
        )
        return result

    _log("router overhead: warm-up, 2 s each")
    warmup_errors = sum(run(t, 2.0).errors for t in targets)
    if warmup_errors:
        raise RuntimeError(f"{warmup_errors} errors during the warm-up")
    for round_no in range(1, args.rounds + 1):
        _log(f"router overhead: round {round_no}/{args.rounds}")
        for target in targets:
            target.rounds.append(run(target, args.duration))


# ---------------------------------------------------------------------------- switching


@dataclass
class Cycle:
    index: int
    kind: str  # "switch" | "rollback"
    target_version: str
    status: str
    to_color: str | None
    called_at: float  # monotonic, client side
    returned_at: float
    client_s: float
    server_s: float
    steps: dict[str, float]
    flip_step: str  # "promote" (switch) or "rollback"
    flip_at: float  # start of the flip step, converted to monotonic
    flip_step_s: float
    all_new_at: float | None = None  # first request from which on all are the new version
    old_after_flip: int = 0  # requests started after flip_at still served by the old one
    requests_after_flip: int = 0

    @property
    def ok(self) -> bool:
        expected = "promoted" if self.kind == "switch" else "rolled_back"
        return self.status == expected and self.all_new_at is not None

    @property
    def flip_to_all_new_ms(self) -> float | None:
        return None if self.all_new_at is None else (self.all_new_at - self.flip_at) * 1e3

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flip_to_all_new_ms": self.flip_to_all_new_ms, "ok": self.ok}


def to_monotonic(iso_utc: str, wall_minus_mono: float) -> float:
    return datetime.fromisoformat(iso_utc).timestamp() - wall_minus_mono


def run_cycle(
    client: ControllerClient,
    index: int,
    target_version: str,
    wall_minus_mono: float,
) -> Cycle:
    kind = "switch" if index % 2 == 0 else "rollback"
    called_at = time.monotonic()
    started = time.perf_counter()
    record = client.switch(version=target_version) if kind == "switch" else client.rollback()
    client_s = time.perf_counter() - started
    returned_at = time.monotonic()
    steps = {s["name"]: float(s["seconds"] or 0.0) for s in record["steps"]}
    flip_step = "promote" if kind == "switch" else "rollback"
    flip = next((s for s in record["steps"] if s["name"] == flip_step), None)
    if flip is None:
        raise RuntimeError(f"{kind} record has no {flip_step} step: {record}")
    cycle = Cycle(
        index=index,
        kind=kind,
        target_version=str(record.get("target_version") or target_version),
        status=str(record["status"]),
        to_color=record.get("to_color"),
        called_at=called_at,
        returned_at=returned_at,
        client_s=client_s,
        server_s=float(record["seconds"] or 0.0),
        steps=steps,
        flip_step=flip_step,
        flip_at=to_monotonic(flip["started_at"], wall_minus_mono),
        flip_step_s=float(flip["seconds"] or 0.0),
    )
    _log(
        f"  {index + 1}: {kind} -> v{cycle.target_version} ({cycle.to_color}) {cycle.status} "
        f"in {client_s:.3f} s  steps "
        + " ".join(f"{name} {seconds:.3f}" for name, seconds in steps.items())
    )
    return cycle


def settle_flips(cycles: list[Cycle], records: list[Served], probe_end: float) -> None:
    """For each flip: from which request on (until the next operation) all were new."""
    ordered = sorted(records, key=lambda r: r.started)
    for position, cycle in enumerate(cycles):
        window_end = cycles[position + 1].called_at if position + 1 < len(cycles) else probe_end
        window = [r for r in ordered if cycle.flip_at <= r.started < window_end]
        cycle.requests_after_flip = len(window)
        wrong = [i for i, r in enumerate(window) if r.version != cycle.target_version]
        cycle.old_after_flip = len(wrong)
        first_new = wrong[-1] + 1 if wrong else 0
        cycle.all_new_at = window[first_new].started if first_new < len(window) else None


# ------------------------------------------------------------------------------ figure


def draw(
    path: Path,
    records: list[Served],
    cycles: list[Cycle],
    versions: list[str],
    *,
    origin: float,
    bin_s: float,
    failed: int,
    load: common.WrkResult,
    load_label: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = max(r.started for r in records) - origin
    n_bins = int(end / bin_s) + 1
    edges = [i * bin_s for i in range(n_bins + 1)]
    series: dict[str, list[float]] = {v: [0.0] * n_bins for v in [*versions, "failed"]}
    for r in records:
        key = "failed" if r.status != 200 else (r.version or "failed")
        if key not in series:
            series[key] = [0.0] * n_bins
        series[key][min(int((r.started - origin) / bin_s), n_bins - 1)] += 1 / bin_s

    colors = {versions[0]: "#1f77b4", versions[1]: "#2ca02c", "failed": "#d62728"}
    fig, ax = plt.subplots(figsize=(13, 5.5), dpi=110)
    bottom = [0.0] * n_bins
    for key, values in series.items():
        if key == "failed" and not any(values):
            continue
        top = [b + v for b, v in zip(bottom, values, strict=True)]
        label = "failed" if key == "failed" else f"v{key}"
        ax.stairs(top, edges, baseline=bottom, fill=True, alpha=0.85, label=label,
                  color=colors.get(key, "#7f7f7f"), zorder=2)  # fmt: skip
        bottom = top
    peak = max(bottom) if bottom else 1.0
    ax.set_ylim(0, peak * 1.32)
    for cycle in cycles:
        x = cycle.flip_at - origin
        if cycle.kind == "switch" and cycle.flip_at - cycle.called_at > 0.3:
            ax.axvspan(cycle.called_at - origin, x, color="#ffbf00", alpha=0.2, lw=0,
                       zorder=0, label="stage + verify")  # fmt: skip
        ax.axvline(x, color="black", lw=1.1, ls="--", zorder=3)
        lag = cycle.flip_to_all_new_ms
        text = f"{cycle.kind} → v{cycle.target_version}\n" + (
            f"all new +{lag:.0f} ms" if lag is not None else "never all new"
        )
        ax.text(x + 0.08, peak * 1.3, text, va="top", ha="left", fontsize=8.5)
    ax.set_xlim(0, end + bin_s)
    ax.set_xlabel("seconds since the probe started")
    ax.set_ylabel(f"probe requests/s by serving version ({bin_s * 1000:.0f} ms bins)")
    ax.set_title(
        f"bluegreen: {len(cycles)} switch/rollback operations under load — "
        f"failed requests: {failed}\n"
        f"probe: stacked by version; meanwhile {load_label} through the router at "
        f"{load.rps:.0f} req/s; dashed = flip step start (promote / rollback)",
        fontsize=10.5,
    )
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # one "stage + verify" entry
    ax.legend(unique.values(), unique.keys(), loc="lower right", framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------- report


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "n": len(values),
        "p50": common.percentile(values, 50),
        "p99": common.percentile(values, 99),
        "max": max(values),
    }


def render(report: dict[str, Any], cycles: list[Cycle], targets: list[OverheadTarget]) -> str:
    cfg = report["config"]
    out = [
        f"router overhead: wrk -t{cfg['threads']} -c{cfg['connections']} "
        f"-d{cfg['duration_s']:g}s --latency, POST /predict bare row; "
        f"medians of {cfg['rounds']} interleaved rounds",
    ]
    rows = []
    for t in targets:
        s = t.summary()
        rows.append([t.label, _f(s["rps"]), _f(s["p50_ms"], 2), _f(s["p99_ms"], 2),
                     str(s["errors"])])  # fmt: skip
    ratio = report["router_overhead"]["router_over_direct"]
    rows.append(["router / direct", f"{ratio['rps']:.2f}x", f"{ratio['p50_ms']:.2f}x",
                 f"{ratio['p99_ms']:.2f}x", ""])  # fmt: skip
    out += [common.format_table(["target", "req/s", "p50 ms", "p99 ms", "errors"], rows), ""]

    load = report["load"]["wrk"]
    out.append(
        f"switch cycles under load: wrk -t{cfg['load_threads']} -c{cfg['load_connections']} "
        f"through the router ({load['rps']:.0f} req/s, {load['duration_s']:.1f} s) + "
        f"TrafficProbe ({cfg['probe_clients']} clients, {report['load']['probe_requests']} "
        f"requests); {cfg['pause_s']:g} s between operations"
    )
    rows = []
    for c in cycles:
        rows.append([
            f"{c.index + 1} {c.kind}", f"v{c.target_version} {c.to_color}", c.status,
            _f(c.client_s * 1e3), _f(c.steps.get("stage", 0) * 1e3) if c.kind == "switch" else "-",
            _f(c.steps.get("verify", 0) * 1e3) if c.kind == "switch" else "-",
            _f(c.flip_step_s * 1e3, 1), _f(c.flip_to_all_new_ms, 1), str(c.old_after_flip),
        ])  # fmt: skip
    header = ["op", "to", "status", "client ms", "stage ms", "verify ms", "flip step ms",
              "flip→all new ms", "old after flip"]  # fmt: skip
    out += [common.format_table(header, rows), ""]

    def stat_line(name: str, stats: dict[str, float] | None, target: str = "") -> str:
        if stats is None:
            return f"{name:<28} -"
        return (
            f"{name:<28} p50 {stats['p50'] * 1e3:7.1f} ms  p99 {stats['p99'] * 1e3:7.1f} ms  "
            f"max {stats['max'] * 1e3:7.1f} ms  (n={stats['n']}){target}"
        )

    times = report["times"]
    rb = times["rollback_client_s"]
    verdict = "" if rb is None else ("  HOLDS" if rb["p99"] < ROLLBACK_TARGET_S else "  MISSED")
    lag = times["flip_to_all_new_s"]
    out += [
        stat_line("rollback (client)", rb, f"  target p99 < {ROLLBACK_TARGET_S:g} s:{verdict}"),
        stat_line("switch total (client)", times["switch_client_s"]),
        stat_line("switch total, 1st (stages)", times["first_switch_client_s"]),
        stat_line("switch total, already staged", times["restaged_switch_client_s"]),
        stat_line("promote step", times["promote_step_s"]),
        stat_line("flip → all new requests", lag),
    ]
    f = report["failed"]
    out.append(
        f"failed requests: {f['total']}  (wrk non-2xx {f['wrk_non_2xx']}, wrk socket "
        f"{f['wrk_socket_errors']}, probe {f['probe']}, router-overhead runs "
        f"{f['overhead_runs']})" + ("" if f["total"] == 0 else "  FAIL")
    )
    return "\n".join(out)


def copy_logs(stack_logs: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    if stack_logs.is_dir():
        shutil.copytree(stack_logs, dest)


# -------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir: Path = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs" / "switch"
    common.wrk_command(
        "http://127.0.0.1/", lua=None, threads=1, connections=1, duration=1
    )  # has wrk?

    state_dir = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    stack = LocalStack(
        model=MODEL_NAME,
        state_dir=state_dir,
        ports=StackPorts.free(),
    )
    probe: TrafficProbe | None = None
    with common.Processes() as procs:
        try:
            _log(f"state in {state_dir}; logs will be copied to {logs}")
            tracking_uri = stack.start_mlflow()
            _log(f"mlflow up at {tracking_uri}; training two versions")
            from bluegreen.iris import train_and_register

            with contextlib.redirect_stdout(sys.stderr):  # MLflow prints run links
                v1 = train_and_register(
                    tracking_uri=tracking_uri, model=MODEL_NAME, C=0.01, max_iter=3
                ).version
                v2 = train_and_register(
                    tracking_uri=tracking_uri, model=MODEL_NAME, C=1.0, max_iter=300
                ).version
            _log(f"registered v{v1} and v{v2}; starting the stack with v{v1}")
            stack.start(version=v1)
            client = ControllerClient(stack.controller_url)

            # 1. router overhead
            direct_url = f"http://127.0.0.1:{stack.ports.blue}/predict"
            routed_url = f"{stack.router_url}/predict"
            check_bodies(direct_url, routed_url)
            targets = [
                OverheadTarget("direct", "blue direct", direct_url, []),
                OverheadTarget("router", "through router", routed_url, []),
            ]
            measure_overhead(targets, args)

            # 2. cycles under load
            wall_minus_mono = time.time() - time.monotonic()
            load = common.start_wrk(
                procs,
                routed_url,
                lua=PREDICT_LUA,
                threads=args.load_threads,
                connections=args.load_connections,
                duration=LOAD_MAX_S,
                output=out_dir / "switch-wrk.txt",
            )
            probe = TrafficProbe(url=routed_url, clients=args.probe_clients)
            probe.start()
            origin = time.monotonic()
            _log(f"load running (wrk + probe); {args.cycles} operations")
            time.sleep(args.pause)
            cycles: list[Cycle] = []
            for index in range(args.cycles):
                target = v2 if index % 2 == 0 else v1
                cycles.append(run_cycle(client, index, target, wall_minus_mono))
                time.sleep(args.pause)
            probe.stop()
            probe_end = time.monotonic()
            load_result = load.finish()
            client.close()
        finally:
            if probe is not None:
                probe.stop()
            _log("stopping the stack")
            with contextlib.suppress(Exception):
                copy_logs(stack.logs, logs)
            stack.stop()
            shutil.rmtree(state_dir, ignore_errors=True)

    records = probe.snapshot()
    settle_flips(cycles, records, probe_end)
    probe_failed = sum(1 for r in records if r.status != 200)
    overhead_errors = sum(r.errors for t in targets for r in t.rounds)
    failed_total = load_result.errors + probe_failed + overhead_errors

    switches = [c for c in cycles if c.kind == "switch"]
    rollbacks = [c for c in cycles if c.kind == "rollback"]
    lags = [c.flip_to_all_new_ms / 1e3 for c in cycles if c.flip_to_all_new_ms is not None]
    times = {
        "rollback_client_s": _stats([c.client_s for c in rollbacks]),
        "rollback_server_s": _stats([c.server_s for c in rollbacks]),
        "switch_client_s": _stats([c.client_s for c in switches]),
        "first_switch_client_s": _stats([c.client_s for c in switches[:1]]),
        "restaged_switch_client_s": _stats([c.client_s for c in switches[1:]]),
        "promote_step_s": _stats([c.flip_step_s for c in switches]),
        "rollback_step_s": _stats([c.flip_step_s for c in rollbacks]),
        "flip_to_all_new_s": _stats(lags),
    }
    direct, routed = (t.summary() for t in targets)
    rollback_p99 = times["rollback_client_s"]["p99"] if times["rollback_client_s"] else 0.0
    checks = {
        "no failed requests": failed_total == 0,
        f"rollback p99 < {ROLLBACK_TARGET_S:g} s": rollback_p99 < ROLLBACK_TARGET_S,
        "every operation finished and every flip reached all-new": all(c.ok for c in cycles),
    }
    png = out_dir / "switch.png"
    report: dict[str, Any] = {
        "benchmark": "switch",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "cycles": args.cycles,
            "pause_s": args.pause,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "threads": args.threads,
            "connections": args.connections,
            "load_threads": args.load_threads,
            "load_connections": args.load_connections,
            "probe_clients": args.probe_clients,
            "bin_s": args.bin,
            "model": MODEL_NAME,
            "versions": {"v1": v1, "v2": v2},
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "router_overhead": {
            "targets": {
                t.key: {
                    "label": t.label,
                    "url": t.url,
                    "common.median": t.summary(),
                    "rounds": [r.to_dict() for r in t.rounds],
                }
                for t in targets
            },
            "router_over_direct": {
                "rps": routed["rps"] / direct["rps"],
                "p50_ms": routed["p50_ms"] / direct["p50_ms"],
                "p99_ms": routed["p99_ms"] / direct["p99_ms"],
            },
        },
        "load": {
            "wrk_cmd": load.cmd,
            "wrk": load_result.to_dict(),
            "probe_requests": len(records),
            "probe_by_version": {f"v{k}": n for k, n in sorted(probe.by_version().items())},
        },
        "cycles": [c.to_dict() for c in cycles],
        "times": times,
        "failed": {
            "total": failed_total,
            "wrk_non_2xx": load_result.non_2xx,
            "wrk_socket_errors": load_result.socket_errors,
            "probe": probe_failed,
            "overhead_runs": overhead_errors,
        },
        "checks": checks,
        "png": str(png),
    }
    draw(png, records, cycles, [v1, v2], origin=origin, bin_s=args.bin,
         failed=failed_total, load=load_result,
         load_label=f"wrk -t{args.load_threads} -c{args.load_connections}")  # fmt: skip
    print(render(report, cycles, targets))
    for name, held in checks.items():
        print(f"[{'ok' if held else 'FAILED'}] {name}")
    out_file = out_dir / "switch.json"
    out_file.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {out_file}  figure: {png}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    common.run_main(main)
