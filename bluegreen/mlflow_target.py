"""The `bluegreen` target of `mlflow deployments` (entry point group `mlflow.deployments`).

`mlflow deployments create -t bluegreen:/http://controller:8080 --name iris -m models:/iris/7`
runs a guarded release through the controller API (stage, smoke test, [shadow], [pause],
flip, [bake]); `get`/`list` report what is live and on standby; `predict` scores through
the live route. The deployment's name is the registered model the controller releases.
The API token comes from `BLUEGREEN_TOKEN`; the live route from the `endpoint` config key
or `BLUEGREEN_ENDPOINT` (the router, or the chart's Service).
"""

from __future__ import annotations

import os
import re
from typing import Any

import httpx
from mlflow.deployments import BaseDeploymentClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
)

from bluegreen.client import ControllerClient, ControllerError
from bluegreen.settings import CliSettings

SCHEME = "bluegreen"
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[0-9]+)|@(?P<alias>[\w\-]+))$")
_FLOATS = ("shadow_s", "shadow_max_rps", "bake_s", "min_agreement")
_KEYS = frozenset({"pause", "endpoint", *_FLOATS})

HELP = f"""\
bluegreen: zero-downtime blue/green releases of one registered model.

Target URI: bluegreen:/<controller URL>, e.g. bluegreen:/http://controller:8080
  The API token is read from BLUEGREEN_TOKEN.
Deployment name: the registered model the controller releases (e.g. iris).
Model URI: models:/NAME/VERSION or models:/NAME@ALIAS.

create / update run one release and wait for it; an aborted release raises with the
step that failed (stage, verify, shadow, bake, ...) and the controller's reason.
Config (-C key=value):
  pause=true|false     stop before the flip until `bluegreen promote` (default: controller's)
  shadow_s=SECONDS     mirror live traffic to the new version first
  shadow_max_rps=N     mirror at most N requests a second (default: controller's)
  min_agreement=0..1   shadow gate: share of predictions that must agree
  bake_s=SECONDS       watch the new version after the flip; roll back on a breach
  endpoint=URL         the live route for `predict` (else BLUEGREEN_ENDPOINT)
get / list: the live and standby colors and the versions they hold.
predict: scores through the live route (MLflow's /invocations protocol).
delete: refused; a release is undone with `bluegreen rollback`.
run_local: starts the local stack (MLflow from MLFLOW_TRACKING_URI, else its own) with
  the version given, the controller on the target URI's port, until Ctrl-C.
Keys: {", ".join(sorted(_KEYS))}
"""


def target_help() -> str:
    return HELP


def run_local(
    target: str,
    name: str,
    model_uri: str,
    flavor: str | None = None,
    config: dict[str, Any] | None = None,
) -> None:
    """Start the local stack serving `model_uri`'s version, in the foreground."""
    from bluegreen.cli import up
    from bluegreen.stack import StackPorts

    model, version, alias = parse_model_uri(model_uri, name=name)
    if alias is not None:
        raise MlflowException(
            "run_local starts the stack on one version: give models:/NAME/VERSION",
            error_code=INVALID_PARAMETER_VALUE,
        )
    controller = httpx.URL(controller_url(target))
    defaults = StackPorts()
    options = dict(config or {})
    assert up.callback is not None
    up.callback(  # the same code path as `bluegreen up`
        model=model,
        version=version,
        state_dir=os.path.abspath(str(options.get("state_dir", ".bluegreen"))),
        router_port=int(options.get("router_port", defaults.router)),
        controller_port=controller.port or defaults.controller,
        blue_port=int(options.get("blue_port", defaults.blue)),
        green_port=int(options.get("green_port", defaults.green)),
        mlflow_port=int(options.get("mlflow_port", defaults.mlflow)),
    )


def controller_url(target_uri: str) -> str:
    """`bluegreen:/http://host:port` -> `http://host:port`."""
    prefix = f"{SCHEME}:/"
    rest = target_uri[len(prefix) :] if target_uri.startswith(prefix) else ""
    if not rest.startswith(("http://", "https://")):
        raise MlflowException(
            f"target {target_uri!r}: expected bluegreen:/http://HOST:PORT (the controller)",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return rest.rstrip("/")


def parse_model_uri(model_uri: str, *, name: str) -> tuple[str, str | None, str | None]:
    """(model, version, alias) from `models:/NAME/VERSION` or `models:/NAME@ALIAS`."""
    found = _MODEL_URI.match(model_uri or "")
    if found is None:
        raise MlflowException(
            f"model URI {model_uri!r}: expected models:/NAME/VERSION or models:/NAME@ALIAS",
            error_code=INVALID_PARAMETER_VALUE,
        )
    if found["name"] != name:
        raise MlflowException(
            f"deployment {name!r} releases model {name!r}, not {found['name']!r}",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return found["name"], found["version"], found["alias"]


def release_options(config: dict[str, Any] | None) -> dict[str, Any]:
    """The analysis options of a switch from `-C key=value` strings (or typed values)."""
    config = dict(config or {})
    unknown = set(config) - _KEYS
    if unknown:
        raise MlflowException(
            f"unknown config keys {sorted(unknown)}; known: {sorted(_KEYS)}",
            error_code=INVALID_PARAMETER_VALUE,
        )
    options: dict[str, Any] = {}
    try:
        for key in _FLOATS:
            if key in config:
                options[key] = float(config[key])
    except ValueError as exc:
        raise MlflowException(f"config: {exc}", error_code=INVALID_PARAMETER_VALUE) from None
    if "pause" in config:
        pause = str(config["pause"]).strip().lower()
        if pause not in ("true", "false"):
            raise MlflowException(
                f"config pause={config['pause']!r}: expected true or false",
                error_code=INVALID_PARAMETER_VALUE,
            )
        options["pause"] = pause == "true"
    return options


class BluegreenDeploymentClient(BaseDeploymentClient):
    """One controller, one model: the deployment is the model's live route."""

    def __init__(self, target_uri: str) -> None:
        self.target_uri = target_uri  # what the base class's (untyped) __init__ sets
        self._settings = CliSettings()
        self.controller = controller_url(target_uri)

    def _client(self) -> ControllerClient:
        return ControllerClient(self.controller, token=self._settings.token_value())

    def create_deployment(
        self,
        name: str,
        model_uri: str,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Release the version `model_uri` names and wait for the outcome."""
        model, version, alias = parse_model_uri(model_uri, name=name)
        options = release_options({k: v for k, v in (config or {}).items() if k != "endpoint"})
        client = self._client()
        try:
            op = client.switch(version=version, alias=alias, model=model, **options)
        except ControllerError as exc:
            raise _release_failed(model_uri, exc) from None
        except httpx.HTTPError as exc:
            raise MlflowException(f"controller {self.controller} unreachable: {exc}") from None
        finally:
            client.close()
        if op.get("status") in ("aborted", "rolled_back"):  # a bake that flipped back
            raise _release_failed(model_uri, ControllerError(200, {"operation": op}))
        return {
            "name": name,
            "flavor": flavor or "python_function",
            "version": op.get("target_version"),
            "status": op.get("status"),
            "operation": op.get("id"),
            "color": op.get("to_color"),
            "reason": op.get("reason"),
        }

    def update_deployment(
        self,
        name: str,
        model_uri: str | None = None,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        if model_uri is None:
            raise MlflowException(
                "bluegreen updates by releasing a version: give -m models:/NAME/VERSION",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return self.create_deployment(name, model_uri, flavor=flavor, config=config)

    def delete_deployment(
        self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None
    ) -> None:
        raise MlflowException(
            f"bluegreen does not delete {name!r}: its live route always serves a version. "
            "Undo a release with `bluegreen rollback` (or `POST /rollback`); stop serving by "
            "uninstalling the Helm release or stopping `bluegreen up`.",
            error_code=INVALID_PARAMETER_VALUE,
        )

    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return [self._describe(self._status())]

    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        status = self._status()
        if status.get("model") != name:
            raise MlflowException(
                f"no deployment {name!r}: the controller at {self.controller} releases "
                f"{status.get('model')!r}",
                error_code=RESOURCE_DOES_NOT_EXIST,
            )
        return self._describe(status)

    def predict(
        self,
        deployment_name: str | None = None,
        inputs: Any = None,
        endpoint: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """Score `inputs` (a DataFrame, or an MLflow scoring payload) through the live route."""
        from mlflow.deployments import PredictionsResponse

        route = self._endpoint()
        body = _scoring_payload(inputs, params)
        try:
            answer = httpx.post(f"{route}/invocations", json=body, timeout=60)
        except httpx.HTTPError as exc:
            raise MlflowException(f"live route {route} unreachable: {exc}") from None
        if answer.status_code >= 400:
            raise MlflowException(
                f"live route {route} answered {answer.status_code}: {answer.text[:300]}"
            )
        return PredictionsResponse.from_json(answer.text)  # type: ignore[no-untyped-call]

    def _endpoint(self) -> str:
        route = os.environ.get("BLUEGREEN_ENDPOINT") or self._status().get("endpoint")
        if not route:
            raise MlflowException(
                "predict needs the live route: set BLUEGREEN_ENDPOINT to the router or "
                "Service URL (e.g. http://127.0.0.1:8000)",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return str(route).rstrip("/")

    def _status(self) -> dict[str, Any]:
        client = self._client()
        try:
            return client.status()
        except (ControllerError, httpx.HTTPError) as exc:
            raise MlflowException(f"controller {self.controller}: {exc}") from None
        finally:
            client.close()

    def _describe(self, status: dict[str, Any]) -> dict[str, Any]:
        live, standby = status.get("live") or {}, status.get("standby") or {}
        operation = status.get("operation") or {}
        return {
            "name": status.get("model"),
            "controller": self.controller,
            "live_version": live.get("version"),
            "live_color": live.get("color"),
            "standby_version": standby.get("version"),
            "standby_color": standby.get("color"),
            "operation": operation.get("status"),
            "rollback_versions": status.get("rollback_versions", []),
        }


def _release_failed(model_uri: str, exc: ControllerError) -> MlflowException:
    op = exc.body.get("operation") or {}
    step = op.get("failed_step")
    reason = op.get("reason") or exc.body.get("detail") or str(exc)
    where = f" at step {step!r}" if step else ""
    code = RESOURCE_DOES_NOT_EXIST if exc.status == 404 else INVALID_PARAMETER_VALUE
    return MlflowException(
        f"release of {model_uri} aborted{where}: {reason} (live traffic untouched)"
        if step != "bake"
        else f"release of {model_uri} rolled back{where}: {reason}",
        error_code=code,
    )


def _scoring_payload(inputs: Any, params: dict[str, Any] | None) -> dict[str, Any]:
    to_dict = getattr(inputs, "to_dict", None)
    if callable(to_dict):  # a pandas DataFrame
        split = to_dict(orient="split")
        body: dict[str, Any] = {
            "dataframe_split": {"columns": split["columns"], "data": split["data"]}
        }
    elif isinstance(inputs, dict):
        body = dict(inputs)
    else:
        body = {"inputs": inputs}
    if params:
        body["params"] = params
    return body
