"""`bluegreen demo`: the whole job end to end on the local stack, then exit.

Trains and registers two iris versions (v1 underfit, v2 well fit), serves v1, switches
to v2 while client traffic runs through the router, rolls back, then releases a bad
version (v3 answers "setosa" for every flower: it loads and passes the smoke test) with a
bake window, which catches it on live traffic and flips back on its own. Prints what held.
Exits 0 only if every step held: no failed request, every request that started after a
flip served by the new version, a rollback within a second, and the bad version rolled
back automatically.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bluegreen.client import ControllerClient, ControllerError
from bluegreen.iris import IRIS_ROWS, register_demo_versions
from bluegreen.settings import CliSettings
from bluegreen.stack import LocalStack, StackError, StackPorts
from bluegreen.traffic import TrafficProbe

MODEL = "iris-demo"
# Long enough for the bake to see its minimum requests; a breach ends it early.
BAKE_S = 20
Echo = Callable[[str], None]


def run_demo(*, keep: bool = False, echo: Echo = print) -> int:
    # The demo prints its own story; MLflow's run links and sklearn's convergence
    # warning for the deliberately underfit v1 would only bury it.
    import mlflow  # configures its loggers on import: quiet them after

    logging.getLogger(mlflow.__name__).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", module="sklearn")
    state_dir = Path(tempfile.mkdtemp(prefix="bluegreen-demo-"))
    stack = LocalStack(
        model=MODEL,
        state_dir=state_dir,
        ports=StackPorts.free(),
        tracking_uri=CliSettings().tracking_uri,
    )
    checks: dict[str, bool] = {}
    try:
        echo(f"[1/7] starting MLflow ({state_dir})")
        tracking_uri = stack.start_mlflow()
        echo("[2/7] training and registering three iris versions")
        # MLflow prints run links and registrations
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            registered = register_demo_versions(tracking_uri=tracking_uri, model=MODEL)
        v1, v2, v3 = registered.underfit, registered.well_fit, registered.bad
        echo(
            f"      v{v1.version}: accuracy {v1.accuracy:.2f} (underfit)   "
            f"v{v2.version}: accuracy {v2.accuracy:.2f} (well fit)   "
            f"v{v3}: says setosa for every flower (bad)"
        )
        echo(f"[3/7] serving v{v1.version} on blue behind the router")
        stack.start(version=v1.version)
        client = ControllerClient(stack.controller_url)
        # One flower of each species per request: the bake compares predicted classes.
        with TrafficProbe(
            url=f"{stack.router_url}/predict", clients=4, payload=IRIS_ROWS
        ) as traffic:
            time.sleep(1.5)
            echo(f"[4/7] switching to v{v2.version} under load")
            switch = client.switch(version=v2.version)
            flipped_at = time.monotonic()
            time.sleep(2.0)
            echo("[5/7] rolling back")
            rollback_started = time.monotonic()
            rollback = client.rollback()
            rolled_back_at = time.monotonic()
            rollback_seconds = rolled_back_at - rollback_started
            time.sleep(1.5)
            echo(f"[6/7] releasing v{v3} with a {BAKE_S} s bake window under load")
            bad_started = time.monotonic()
            bad = client.switch(version=v3, bake_s=BAKE_S)
            caught_at = time.monotonic()
            time.sleep(1.5)
        records = traffic.snapshot()
        after_switch = [r for r in records if flipped_at <= r.started < rollback_started]
        after_rollback = [r for r in records if rolled_back_at <= r.started < bad_started]
        after_caught = [r for r in records if r.started >= caught_at]
        failed = [r for r in records if r.status != 200]
        bake = (bad.get("analysis") or {}).get("bake") or {}
        checks["switch promoted"] = switch["status"] == "promoted"
        checks["rollback done"] = rollback["status"] == "rolled_back"
        checks["no failed requests"] = not failed and len(records) > 0
        checks[f"after the switch every request served by v{v2.version}"] = bool(
            after_switch
        ) and all(r.version == v2.version for r in after_switch)
        checks[f"after the rollback every request served by v{v1.version}"] = bool(
            after_rollback
        ) and all(r.version == v1.version for r in after_rollback)
        checks["rollback under 1 s"] = rollback_seconds < 1.0
        checks[f"v{v3} rolled back automatically during bake"] = (
            bad["status"],
            bad.get("failed_step"),
        ) == ("rolled_back", "bake")
        checks[f"after the automatic rollback every request served by v{v1.version}"] = bool(
            after_caught
        ) and all(r.version == v1.version for r in after_caught)
        echo("[7/7] summary")
        _summary(
            echo,
            switch=switch,
            rollback_seconds=rollback_seconds,
            traffic=traffic,
            v1=v1.version,
            v2=v2.version,
            failed=len(failed),
        )
        _bake_summary(echo, bad=bad, bake=bake, version=v3, traffic=traffic)
    except (StackError, ControllerError) as exc:
        echo(f"demo failed: {exc}  (logs in {stack.logs})")
        keep = True
        checks["stack ran"] = False
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(state_dir, ignore_errors=True)
    for name, held in checks.items():
        echo(f"  [{'ok' if held else 'FAILED'}] {name}")
    ok = bool(checks) and all(checks.values())
    echo("demo " + ("passed: every step held" if ok else "FAILED"))
    return 0 if ok else 1


def _summary(
    echo: Echo,
    *,
    switch: dict[str, Any],
    rollback_seconds: float,
    traffic: TrafficProbe,
    v1: str,
    v2: str,
    failed: int,
) -> None:
    echo(f"  versions      v{v1} (blue, first live) -> v{v2} (green) -> back to v{v1}")
    echo(
        "  switch steps  " + "  ".join(f"{s['name']} {s['seconds']:.2f}s" for s in switch["steps"])
    )
    echo(f"  switch total  {switch['seconds']:.2f}s   rollback {rollback_seconds * 1000:.0f} ms")
    served = traffic.by_version()
    echo(
        "  requests      "
        + "  ".join(f"v{k}: {n}" for k, n in sorted(served.items()))
        + f"   failed: {failed}"
    )


def _bake_summary(
    echo: Echo, *, bad: dict[str, Any], bake: dict[str, Any], version: str, traffic: TrafficProbe
) -> None:
    echo(
        f"  bad release   v{version}: {bad['status']} at {bad.get('failed_step')}: "
        f"{bad.get('reason')}"
    )
    live, baseline = bake.get("live") or {}, bake.get("baseline") or {}
    echo(
        f"  bake          breached {bake.get('breached_check')} after "
        f"{bake.get('seconds', 0):.1f} s of {BAKE_S} s; {live.get('requests')} requests "
        f"judged against a baseline of {baseline.get('requests')}; "
        f"flip back {bake.get('flip_back_ms')} ms"
    )
    echo(f"  cost          v{version} answered {traffic.by_version().get(version, 0)} requests")
