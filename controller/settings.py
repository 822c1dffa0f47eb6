"""Controller configuration, read once from the environment (prefix `BLUEGREEN_`).

The one place every controller default lives; `wiring.py` hands the values to the engine
and the adapters, and the launcher reads the same class for what it needs of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.domain.analysis import (
    SHADOW_MAX_RPS_DEFAULT,
    AnalysisPolicy,
    AnalysisThresholds,
    MirrorRate,
    WindowSeconds,
)
from plumbing.connections import ConnectionLimits
from plumbing.secret_files import secret_from_file
from plumbing.settings_env import settings_environment


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


class ControllerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BLUEGREEN_", extra="ignore", populate_by_name=True, env_nested_delimiter="__"
    )

    model: str = "iris"
    """Registered model this controller releases."""
    tracking_uri: str = Field(default="http://127.0.0.1:5000", alias="MLFLOW_TRACKING_URI")
    """MLflow tracking server with the model registry."""
    token: SecretStr | None = None
    """Bearer token for the API's mutating calls; unset leaves them open (local use only)."""
    model_server_token: SecretStr | None = None
    """The model servers' own admin token (for the live/standby notice); never the API token."""
    token_file: Path | None = None
    """`token` read from this file instead (a mounted Secret; the chart's way)."""
    model_server_token_file: Path | None = None
    """`model_server_token` read from this file instead (a mounted Secret)."""
    router_token: SecretStr | None = None
    """Local backend: the local router's admin token (for the flip)."""
    backend: Literal["local", "kubernetes"] = "local"
    """Where colors run: local processes or Kubernetes Deployments."""
    live_alias: str = "live"
    """MLflow alias that follows whatever is serving."""
    stage_timeout_s: float = Field(default=180.0, gt=0)
    """Bounded wait for a staged color to turn ready."""
    verify_latency_budget_ms: float = Field(default=500.0, gt=0)
    """Smoke-test `/predict` median latency must stay under this."""
    golden_file: Path | None = None
    """Default golden smoke test: JSON `{"inputs": ..., "expected": [...]}`."""
    history_limit: int = Field(default=200, gt=0)
    """Operations kept in the journal."""
    state_dir: Path = Path(".bluegreen")
    """Local backend: journal, lock, process records and logs."""
    host: str = "127.0.0.1"
    """Local backend: where model servers listen."""
    blue_port: int = 8001
    """Local backend: the blue model server's port."""
    green_port: int = 8002
    """Local backend: the green model server's port."""
    warm_preparer: bool = True
    """Local backend: keep one warm preparer process (MLflow and skops imported once) that
    prepares every version a color has not served before, so a first stage skips those
    imports; off, each model server prepares a cache miss in a fresh child."""
    router_url: str = "http://127.0.0.1:8000"
    """Local backend: the local router's base URL."""
    k8s_namespace: str = "default"
    """Kubernetes backend: the namespace of the release."""
    k8s_release: str = "bluegreen"
    """Kubernetes backend: the object name prefix R (`R-blue`, `R-green`, Service `R`)."""
    k8s_color_url_template: str = "http://{release}-{color}.{namespace}.svc:80"
    """How the controller reaches one color for the smoke test (the chart renders its port)."""
    k8s_lease_seconds: int = Field(default=30, gt=0)
    """Kubernetes backend: how long the release Lease lasts without renewal."""
    k8s_pod_endpoints: bool = True
    """Kubernetes backend: reach every ready pod (EndpointSlices) for the smoke test and the
    live notice; off for a controller outside the cluster, which reaches the color URL only."""
    role_refresh_s: float = Field(default=10.0, ge=0)
    """Kubernetes backend: re-tell every pod its role (and keep the colors at their target
    replicas) this often, so a missed notice or a restarted pod heals; 0: only on a flip."""
    shadow_s: WindowSeconds = 0.0
    """Default seconds of shadow traffic before a flip (0: off); `shadow_s` per switch."""
    shadow_max_rps: MirrorRate = SHADOW_MAX_RPS_DEFAULT
    """Default cap on the requests the live color mirrors a second during a shadow window,
    split evenly between its pods; `shadow_max_rps` per switch. Over it a request is not
    mirrored (counted `skipped_by_cap`), so the shadow costs live serving what the cap
    costs, not what the traffic costs. 50: the shadow gate judges nothing before
    `min_requests` (50) comparisons, so at 50 a second any window of a second or more can
    be judged at the defaults, and the 10 to 60 s windows a release uses gather 500 to 3000
    comparisons (at 500, a 95 % agreement is known to about +-2 %). What it costs live
    traffic is `bench.analysis`'s to measure."""
    min_agreement: float | None = Field(default=None, ge=0, le=1)
    """Default shadow gate (None: report agreement without gating)."""
    bake_s: WindowSeconds = 0.0
    """Default seconds of bake after a flip (0: off); `bake_s` per switch."""
    analysis: AnalysisThresholds = Field(default_factory=AnalysisThresholds)
    """Default thresholds (`BLUEGREEN_ANALYSIS__MAX_P99_RATIO`, ...; see `analysis.py`)."""
    pause: bool = False
    """Default for `pause` on a switch: stop before the flip until `POST /promote`."""
    pause_timeout_s: float = Field(default=3600.0, gt=0)
    """A paused release not promoted within this is aborted on its own."""
    scale_down_delay_s: float | None = Field(default=None, ge=0)
    """The warm window: this long after a release settles (bake included) the standby is
    scaled down to `standby_replicas`; None keeps it warm for good. Within it a rollback is
    one flip; after it, rollback stages the previous version again (scales it back up),
    verifies it and flips."""
    standby_replicas: int = Field(default=0, ge=0)
    """What the warm window leaves the standby: on Kubernetes its Deployment's replicas (0
    frees them all; more keeps a few pods warm, not held to the chart's count), locally 0
    stops its process and more keeps it running."""
    rollback_window: int = Field(default=10, ge=1, le=200)
    """`POST /rollback {"version"}` may return to any of this many versions that were live."""
    notify_urls: str = ""
    """Comma-separated URLs that receive each release event as a signed POST; a URL
    prefixed `slack+` (`slack+https://hooks.slack.com/...`) gets Slack's message format."""
    notify_secret: SecretStr | None = None
    """Key of the `X-Bluegreen-Signature: sha256=<hex HMAC>` header on notifications."""
    notify_secret_file: Path | None = None
    """`notify_secret` read from this file instead (a mounted Secret)."""
    notify_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """How long one notification delivery may take before it counts as failed."""
    follow_alias: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]+$")
    """Release whatever version this registry alias points at (`champion`); unset: off."""
    follow_interval_s: float = Field(default=60.0, gt=0)
    """How often the follower reads the alias, so a lost webhook delivery changes nothing."""
    mlflow_webhook_secret: SecretStr | None = None
    """The secret of MLflow's registry webhook; unset: `POST /webhooks/mlflow` answers 404."""
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    """Request bodies above this are refused with 413 (a golden file is small)."""
    limits: ConnectionLimits = Field(default_factory=ConnectionLimits)
    """Client connection limits (`BLUEGREEN_LIMITS__HEAD_TIMEOUT_S`, ...)."""

    @model_validator(mode="after")
    def _read_token_files(self) -> Self:
        token = secret_from_file(_secret(self.token), self.token_file, setting="BLUEGREEN_TOKEN")
        self.token = SecretStr(token) if token else None
        model_server_token = secret_from_file(
            _secret(self.model_server_token),
            self.model_server_token_file,
            setting="BLUEGREEN_MODEL_SERVER_TOKEN",
        )
        self.model_server_token = SecretStr(model_server_token) if model_server_token else None
        notify_secret = secret_from_file(
            _secret(self.notify_secret), self.notify_secret_file, setting="BLUEGREEN_NOTIFY_SECRET"
        )
        self.notify_secret = SecretStr(notify_secret) if notify_secret else None
        return self

    def analysis_policy(self) -> AnalysisPolicy:
        return AnalysisPolicy(
            **self.analysis.model_dump(),
            shadow_s=self.shadow_s,
            shadow_max_rps=self.shadow_max_rps,
            min_agreement=self.min_agreement,
            bake_s=self.bake_s,
        )

    def token_value(self) -> str | None:
        return _secret(self.token)

    def model_server_token_value(self) -> str | None:
        return _secret(self.model_server_token)

    def router_token_value(self) -> str | None:
        return _secret(self.router_token)

    def notify_secret_value(self) -> str | None:
        return _secret(self.notify_secret)

    def mlflow_webhook_secret_value(self) -> str | None:
        return _secret(self.mlflow_webhook_secret)

    def notify_targets(self) -> list[str]:
        return [url.strip() for url in self.notify_urls.split(",") if url.strip()]

    def environment(self) -> dict[str, str]:
        """The variables that give a child controller exactly the fields set here.

        The launcher builds a controller's environment from a settings object with this,
        so no other place spells the controller's variable names.
        """
        return settings_environment(self)


def quiet_mlflow_http_retries() -> None:
    """MLflow retries for minutes by default; we retry with our own bounded backoff."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
