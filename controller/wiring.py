"""Builds the engine from settings: picks the backend, router, journal and lock.

The only place that knows which adapters exist; called by `controller.main`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller.analysis.analyzer import Probes
from controller.domain import Golden
from controller.engine import EnginePolicy, ReleaseEngine
from controller.follow import AliasFollower, WebhookVerifier
from controller.metrics import ControllerMetrics
from controller.mlflow_registry import MlflowRegistry
from controller.notify import WebhookNotifier
from controller.ports import ColorBackend, ColorPods, JournalStore, ReleaseLock, TrafficRouter
from controller.serving_probe import HttpServingMetrics, HttpShadowTraffic
from controller.settings import ControllerSettings, quiet_mlflow_http_retries
from controller.smoke import HttpSmokeTester


@dataclass(frozen=True)
class Platform:
    """The four adapters that differ between one machine and Kubernetes."""

    backend: ColorBackend
    router: TrafficRouter
    journal_store: JournalStore
    release_lock: ReleaseLock
    pods: ColorPods | None = None
    """Every ready pod of a color, and replica matching; None where a color is one process."""
    housekeeping: Callable[[], None] | None = None
    """Run on the role keeper's timer (the Kubernetes colors' target replicas)."""
    started: Callable[[], None] | None = None
    """Run once the engine is built (the state read and valid): what the platform starts then."""


def build_engine(settings: ControllerSettings, metrics: ControllerMetrics) -> ReleaseEngine:
    quiet_mlflow_http_retries()
    golden = (
        Golden.model_validate_json(settings.golden_file.read_text())
        if settings.golden_file
        else None
    )
    platform = kubernetes_platform(settings) if settings.backend == "kubernetes" else None
    platform = platform or local_platform(settings)
    engine = ReleaseEngine(
        model=settings.model,
        registry=MlflowRegistry(tracking_uri=settings.tracking_uri),
        backend=platform.backend,
        router=platform.router,
        journal_store=platform.journal_store,
        release_lock=platform.release_lock,
        smoke=HttpSmokeTester(
            latency_budget_ms=settings.verify_latency_budget_ms,
            model_server_token=settings.model_server_token_value(),
        ),
        policy=EnginePolicy(
            live_alias=settings.live_alias,
            stage_timeout_s=settings.stage_timeout_s,
            history_limit=settings.history_limit,
            default_golden=golden,
            analysis=settings.analysis_policy(),
            pause_timeout_s=settings.pause_timeout_s,
            rollback_window=settings.rollback_window,
            scale_down_delay_s=settings.scale_down_delay_s,
            standby_replicas=settings.standby_replicas,
        ),
        probes=Probes(
            metrics=HttpServingMetrics(),
            shadow=HttpShadowTraffic(model_server_token=settings.model_server_token_value()),
        ),
        observe=metrics.observe,
        pods=platform.pods,
        notifier=WebhookNotifier(
            settings.notify_targets(),
            secret=settings.notify_secret_value(),
            timeout_s=settings.notify_timeout_s,
        )
        if settings.notify_targets()
        else None,
    )
    if platform.pods is not None and settings.role_refresh_s > 0:
        engine.roles.start(settings.role_refresh_s, also=platform.housekeeping)
    if platform.started is not None:
        platform.started()
    return engine


def build_follower(settings: ControllerSettings, engine: ReleaseEngine) -> AliasFollower | None:
    """The alias follower when `BLUEGREEN_FOLLOW_ALIAS` is set (not started)."""
    if settings.follow_alias is None:
        return None
    secret = settings.mlflow_webhook_secret_value()
    return AliasFollower(
        engine=engine,
        registry=MlflowRegistry(tracking_uri=settings.tracking_uri),
        model=settings.model,
        alias=settings.follow_alias,
        interval_s=settings.follow_interval_s,
        verifier=WebhookVerifier(secret) if secret else None,
    )


def kubernetes_platform(settings: ControllerSettings) -> Platform:
    from controller.kubernetes.api import load_api_client
    from controller.kubernetes.colors import DeploymentColorBackend
    from controller.kubernetes.journal import ConfigMapJournal
    from controller.kubernetes.lease import LeaseLock
    from controller.kubernetes.service_router import ServiceSelectorRouter

    api = load_api_client()
    namespace, release = settings.k8s_namespace, settings.k8s_release
    colors = DeploymentColorBackend(
        namespace=namespace,
        release=release,
        api_client=api,
        color_url_template=settings.k8s_color_url_template,
        pod_endpoints=settings.k8s_pod_endpoints,
    )
    return Platform(
        backend=colors,
        pods=colors,
        housekeeping=colors.reconcile_replicas,
        router=ServiceSelectorRouter(namespace=namespace, release=release, api_client=api),
        journal_store=ConfigMapJournal(namespace=namespace, release=release, api_client=api),
        release_lock=LeaseLock(
            namespace=namespace,
            release=release,
            api_client=api,
            lease_seconds=settings.k8s_lease_seconds,
        ),
    )


def local_platform(settings: ControllerSettings) -> Platform:
    from controller.local.colors import LocalProcessBackend
    from controller.local.journal import FileJournal
    from controller.local.lock import FileLock
    from controller.local.proxy_router import LocalProxyRouter

    backend = LocalProcessBackend(
        state_dir=settings.state_dir,
        tracking_uri=settings.tracking_uri,
        ports={"blue": settings.blue_port, "green": settings.green_port},
        host=settings.host,
        model_server_token=settings.model_server_token_value(),
        warm_preparer=settings.warm_preparer,
    )
    return Platform(
        backend=backend,
        # Not before: a controller that refuses its state must leave no preparer behind.
        started=backend.start_preparer,
        router=LocalProxyRouter(url=settings.router_url, token=settings.router_token_value()),
        journal_store=FileJournal(settings.state_dir),
        release_lock=FileLock(settings.state_dir),
    )
