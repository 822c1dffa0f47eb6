"""The `bluegreen` command: run the parts, the local stack, the demo, and drive releases."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from bluegreen.client import ControllerClient, ControllerError, ControllerUnreachable
from bluegreen.follow import OperationView, follow_call, follow_switch
from bluegreen.settings import CliSettings
from bluegreen.stack import StackPorts
from controller.domain.analysis import MIRROR_RPS_MAX, WINDOW_MAX_S, WINDOW_MIN_S

_DEFAULT_PORTS = StackPorts()


def _settings() -> CliSettings:
    return CliSettings()


_CONTROLLER = click.option(
    "--controller",
    default=lambda: _settings().controller,
    show_default="$BLUEGREEN_CONTROLLER, else http://127.0.0.1:8080",
    help="Controller base URL.",
)
_TOKEN = click.option(
    "--token",
    default=lambda: _settings().token_value(),
    show_default="$BLUEGREEN_TOKEN",
    help="Bearer token for mutating calls.",
)


_WINDOW = click.FloatRange(WINDOW_MIN_S, WINDOW_MAX_S)  # the controller's own bounds
_MIRROR_RATE = click.FloatRange(0, MIRROR_RPS_MAX, min_open=True)


@click.group()
def main() -> None:
    """Zero-downtime blue/green releases of MLflow model versions."""


@main.command()
@click.argument("part", type=click.Choice(["model", "router", "controller"]))
@click.option("--host", default=None, help="Default: 127.0.0.1.")
@click.option(
    "--port", type=int, default=None, help="Default: model 8001, router 8000, controller 8080."
)
@click.option("--log-level", default="info", show_default=True)
def serve(part: str, host: str | None, port: int | None, log_level: str) -> None:
    """Run one part in the foreground (what each container runs): `python -m PART`.

    \b
    Example:
      MLFLOW_TRACKING_URI=http://127.0.0.1:5000 MODEL_NAME=iris MODEL_VERSION=2 \\
        SERVING_COLOR=blue bluegreen serve model --port 8001
    """
    from plumbing.serve import part_main

    argv = [*(["--host", host] if host else []), *(["--port", str(port)] if port else [])]
    argv += ["--log-level", log_level]
    if part == "model":
        from model_server.__main__ import DEFAULT_PORT as model_port
        from model_server.main import run as run_model

        sys.exit(part_main("model_server", run_model, default_port=model_port, argv=argv))
    if part == "router":
        from router.__main__ import DEFAULT_PORT as router_port
        from router.main import run as run_router

        sys.exit(part_main("router", run_router, default_port=router_port, argv=argv))
    from controller.__main__ import DEFAULT_PORT as controller_port
    from controller.main import run as run_controller

    sys.exit(part_main("controller", run_controller, default_port=controller_port, argv=argv))


@main.command()
@click.option("--model", required=True, help="Registered model name.")
@click.option(
    "--version", default=None, help="Version to start on blue (default: @live, else latest)."
)
@click.option(
    "--state-dir", type=click.Path(path_type=Path), default=Path(".bluegreen"), show_default=True
)
@click.option("--router-port", default=_DEFAULT_PORTS.router, show_default=True)
@click.option("--controller-port", default=_DEFAULT_PORTS.controller, show_default=True)
@click.option("--blue-port", default=_DEFAULT_PORTS.blue, show_default=True)
@click.option("--green-port", default=_DEFAULT_PORTS.green, show_default=True)
@click.option("--mlflow-port", default=_DEFAULT_PORTS.mlflow, show_default=True)
@click.option(
    "--example",
    is_flag=True,
    help="If the model has no versions, train and register the demo's three iris versions "
    "(underfit, well fit, always 'setosa') and start on the first.",
)
def up(
    model: str,
    version: str | None,
    example: bool,
    state_dir: Path,
    router_port: int,
    controller_port: int,
    blue_port: int,
    green_port: int,
    mlflow_port: int,
) -> None:
    """Run the local stack in the foreground; Ctrl-C stops all of it.

    Starts a real MLflow server (unless MLFLOW_TRACKING_URI is set), blue and green model
    servers, the router and the controller.

    \b
    Examples:
      bluegreen up --model iris --example      # a fresh clone: registers iris v1-v3
      bluegreen up --model iris --version 3
    """
    from mlflow.exceptions import MlflowException

    from bluegreen.stack import LocalStack, StackError

    stack = LocalStack(
        model=model,
        state_dir=state_dir.resolve(),
        ports=StackPorts(
            router=router_port,
            controller=controller_port,
            blue=blue_port,
            green=green_port,
            mlflow=mlflow_port,
        ),
        tracking_uri=_settings().tracking_uri,
        token=_settings().token_value(),
    )
    try:
        stack.check_ports()  # before anything starts: nothing to stop on a refusal
    except StackError as exc:
        click.echo(f"bluegreen up: {exc}", err=True)
        sys.exit(1)
    stopping = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        tracking_uri = stack.start_mlflow()
        if example:
            _register_example(tracking_uri, model)
        started = stack.start(version=version)
        click.echo(f"bluegreen up: {model} v{started} live on blue")
        click.echo(f"  traffic     {stack.router_url}/predict")
        click.echo(f"  controller  {stack.controller_url}/status")
        click.echo(f"  page        {stack.controller_url}/")
        click.echo(f"  mlflow      {stack.tracking_uri}")
        click.echo(f"  logs        {stack.logs}")
        click.echo("Ctrl-C stops everything.")
        while not stopping:
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    raise StackError(f"{name} exited with {process.returncode}; see {stack.logs}")
            time.sleep(0.5)
    except StackError as exc:
        click.echo(f"bluegreen up: {exc}", err=True)
        sys.exit(1)
    except MlflowException as exc:  # reachable, but it refused (a bad name, a broken store)
        click.echo(f"bluegreen up: MLflow at {stack.tracking_uri}: {exc.message}", err=True)
        sys.exit(1)
    finally:
        click.echo("stopping the local stack ...")
        stack.stop()


@main.command()
@click.option("--keep", is_flag=True, help="Keep the state directory for inspection.")
def demo(keep: bool) -> None:
    """Train three iris versions, serve v1, switch to v2 under load, roll back, summarise.

    \b
    Example:
      bluegreen demo            # about a minute and a half; exit 0 when every step held
    """
    from bluegreen.demo import run_demo

    sys.exit(run_demo(keep=keep, echo=click.echo))


@main.command()
@click.option("--version", default=None, help="Registry version number.")
@click.option("--alias", default=None, help="Registry alias, e.g. champion.")
@click.option(
    "--shadow",
    "shadow_s",
    type=_WINDOW,
    default=None,
    help="Seconds of mirrored live traffic before the flip (default: the controller's).",
)
@click.option(
    "--shadow-max-rps",
    type=_MIRROR_RATE,
    default=None,
    help="Requests the live color mirrors a second at most (default: the controller's).",
)
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    default=None,
    help="Shadow gate: share of predictions that must agree (default: report only).",
)
@click.option(
    "--bake",
    "bake_s",
    type=_WINDOW,
    default=None,
    help="Seconds the new version is watched after the flip, rolled back on a breach.",
)
@click.option(
    "--pause/--no-pause",
    default=None,
    help="Stop before the flip until `bluegreen promote` (default: the controller's).",
)
@click.option(
    "--allow-schema-change",
    is_flag=True,
    help="Release even if the new input signature refuses what the live version accepts.",
)
@click.option("--no-wait", is_flag=True, help="Return at once with the operation id.")
@_CONTROLLER
@_TOKEN
def switch(
    version: str | None,
    alias: str | None,
    shadow_s: float | None,
    shadow_max_rps: float | None,
    min_agreement: float | None,
    bake_s: float | None,
    pause: bool | None,
    allow_schema_change: bool,
    no_wait: bool,
    controller: str,
    token: str | None,
) -> None:
    """Release a version: stage into the standby, smoke-test, (shadow,) flip, (bake).

    Prints each step as it starts and ends; on a terminal, a live line with the shadow and
    bake numbers. Exit 1 when the release was aborted or rolled back.

    \b
    Examples:
      bluegreen switch --version 2
      bluegreen switch --alias champion --shadow 10 --min-agreement 0.95 --bake 30
    """
    if (version is None) == (alias is None):
        raise click.UsageError("give exactly one of --version or --alias")
    client = ControllerClient(controller, token=token)
    view = OperationView(sys.stdout, live=sys.stdout.isatty(), shadow_s=shadow_s)
    try:
        op = client.switch(
            version=version,
            alias=alias,
            wait=False,
            shadow_s=shadow_s,
            shadow_max_rps=shadow_max_rps,
            min_agreement=min_agreement,
            bake_s=bake_s,
            pause=pause,
            allow_schema_change=allow_schema_change or None,
        )
        if no_wait:
            click.echo(f"started {op['id']}; follow it at {controller}/operations/{op['id']}")
            return
        op = follow_switch(client, op, view)
    except ControllerError as exc:
        _fail(exc)
    _print_operation(op)
    _exit_unless_done(op)


def _exit_unless_done(op: dict[str, Any]) -> None:
    if op["status"] == "paused":
        click.echo("paused before the flip: `bluegreen promote` or `bluegreen abort`")
        return
    if op["status"] not in ("promoted", "unchanged"):
        how = "rolled back" if op["status"] == "rolled_back" else "aborted"
        click.echo(f"release {how} at {op.get('failed_step')}: {op.get('reason')}", err=True)
        sys.exit(1)


@main.command()
@_CONTROLLER
@_TOKEN
def promote(controller: str, token: str | None) -> None:
    """Continue the paused release: flip, then bake.

    \b
    Example:
      bluegreen switch --version 2 --pause && bluegreen promote
    """
    client = ControllerClient(controller, token=token)
    view = OperationView(sys.stdout, live=sys.stdout.isatty())
    try:
        op = follow_switch(client, client.promote(wait=False), view)
    except ControllerError as exc:
        _fail(exc)
    _print_operation(op)
    _exit_unless_done(op)


@main.command()
@_CONTROLLER
@_TOKEN
def abort(controller: str, token: str | None) -> None:
    """Stop the paused or running release before its flip (during a bake: roll back).

    \b
    Example:
      bluegreen abort --controller http://127.0.0.1:8080
    """
    try:
        op = ControllerClient(controller, token=token).abort()
    except ControllerError as exc:
        _fail(exc)
    _print_operation(op)


@main.command()
@click.option(
    "--to-version",
    default=None,
    help="Any recently live version (staged and verified first if the standby lacks it).",
)
@_CONTROLLER
@_TOKEN
def rollback(to_version: str | None, controller: str, token: str | None) -> None:
    """Flip traffic back to the previous version (no model load); during a bake, end it.
    With --to-version, go back to any recently live version.

    \b
    Examples:
      BLUEGREEN_TOKEN=... bluegreen rollback --controller http://127.0.0.1:8080
      bluegreen rollback --to-version 3
    """
    client = ControllerClient(controller, token=token)
    view = OperationView(sys.stdout, live=sys.stdout.isatty())
    try:
        op = follow_call(client, lambda: client.rollback(version=to_version), view, kind="rollback")
    except ControllerError as exc:
        _fail(exc)
    _print_operation(op)


@main.command()
@_CONTROLLER
def status(controller: str) -> None:
    """Show which color is live and what each color holds.

    \b
    Example:
      bluegreen status --controller http://127.0.0.1:8080
    """
    try:
        state = ControllerClient(controller).status()
    except ControllerError as exc:
        _fail(exc)
    click.echo(f"model {state['model']}  (route revision {state.get('route_revision')})")
    click.echo(f"{'ROLE':<9}{'COLOR':<7}{'VERSION':<9}READY")
    for role in ("live", "standby"):
        part = state[role]
        click.echo(
            f"{role:<9}{part['color']:<7}{part['version'] or '-':<9}"
            f"{'yes' if part['ready'] else 'no'}"
        )
    if state.get("operation"):
        op = state["operation"]
        step = op["steps"][-1]["name"] if op["steps"] else "starting"
        click.echo(f"running: {op['kind']} {op['id']} ({step})")


def _print_operation(op: dict[str, Any]) -> None:
    target = op.get("target_version")
    where = f"{op.get('from_color')} -> {op.get('to_color')}" if op.get("to_color") else ""
    click.echo(
        f"{op['kind']} {op['id']}: {op['status']}  v{target} {where}  "
        f"({op.get('seconds') or 0:.2f}s)"
    )
    if op.get("reason"):
        click.echo(f"  reason: {op['reason']}")
    for step, result in (op.get("analysis") or {}).items():
        if result:
            click.echo(f"  {step}: {result.get('verdict')}")
            for check in result.get("checks", []):
                click.echo(f"    {check['name']:<15} {check['verdict']:<12} {check['detail']}")


def _register_example(tracking_uri: str, model: str) -> None:
    from bluegreen.iris import ensure_demo_versions
    from controller.settings import ControllerSettings

    click.echo(f"bluegreen up: --example: looking for {model!r} in {tracking_uri} ...")
    made = ensure_demo_versions(
        tracking_uri=tracking_uri, model=model, alias=ControllerSettings().live_alias
    )
    if made is None:
        click.echo(f"  {model!r} has versions already; registered nothing")
        return
    click.echo(
        f"  registered v{made.underfit.version} (underfit, accuracy "
        f"{made.underfit.accuracy:.2f}), v{made.well_fit.version} (well fit, accuracy "
        f"{made.well_fit.accuracy:.2f}), v{made.bad} (says setosa for every flower)"
    )


def _fail(exc: ControllerError) -> NoReturn:
    if isinstance(exc, ControllerUnreachable):
        click.echo(f"bluegreen: {exc.body['detail']}", err=True)
        sys.exit(1)
    click.echo(f"error {exc.status}: {exc.body.get('error')}: {exc.body.get('detail')}", err=True)
    op = exc.body.get("operation")
    if op:
        click.echo(f"  failed step: {op.get('failed_step')}", err=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
