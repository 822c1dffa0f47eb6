"""Builds the engine from settings: picks the backend, router, journal and lock.

The only place that knows which adapters exist; called by `bluegreen serve controller`.
"""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI

from controller.api import create_app
from controller.engine import EnginePolicy, ReleaseEngine
from controller.metrics import ControllerMetrics
from controller.model import Golden
from controller.registry import MlflowRegistry
from controller.settings import ControllerSettings, quiet_mlflow_http_retries
from controller.smoke import HttpSmokeTester


def build_engine(settings: ControllerSettings, metrics: ControllerMetrics) -> ReleaseEngine:
    quiet_mlflow_http_retries()
    golden = (
        Golden.model_validate_json(settings.golden_file.read_text())
        if settings.golden_file
        else None
    )
    policy = EnginePolicy(
        live_alias=settings.live_alias,
        stage_timeout_s=settings.stage_timeout_s,
        history_limit=settings.history_limit,
        default_golden=golden,
    )
    smoke = HttpSmokeTester(
        latency_budget_ms=settings.verify_latency_budget_ms,
        model_server_token=settings.token_value(),
    )
    registry = MlflowRegistry(tracking_uri=settings.tracking_uri)
    if settings.backend == "kubernetes":
        from controller.backends.kubernetes import (
            ConfigMapJournal,
            DeploymentColorBackend,
            LeaseLock,
            load_api_client,
        )
        from router.kubernetes import ServiceSelectorRouter

        api = load_api_client()
        common = {
            "namespace": settings.k8s_namespace,
            "release": settings.k8s_release,
            "api_client": api,
        }
        return ReleaseEngine(
            model=settings.model,
            registry=registry,
            backend=DeploymentColorBackend(
                **common, color_url_template=settings.k8s_color_url_template
            ),
            router=ServiceSelectorRouter(**common),
            journal_store=ConfigMapJournal(**common),
            lock=LeaseLock(**common, lease_seconds=settings.k8s_lease_seconds),
            smoke=smoke,
            policy=policy,
            observe=metrics.observe,
        )
    from controller.backends.local import LocalProcessBackend
    from controller.journal_file import FileJournal, FileLock
    from router.local import LocalProxyRouter

    return ReleaseEngine(
        model=settings.model,
        registry=registry,
        backend=LocalProcessBackend(
            state_dir=settings.state_dir,
            tracking_uri=settings.tracking_uri,
            ports={"blue": settings.blue_port, "green": settings.green_port},
            host=settings.host,
            extra_env=(
                {"MODEL_SERVER_ADMIN_TOKEN": settings.token_value() or ""}
                if settings.token
                else None
            ),
        ),
        router=LocalProxyRouter(url=settings.router_url, token=settings.token_value()),
        journal_store=FileJournal(settings.state_dir),
        lock=FileLock(settings.state_dir),
        smoke=smoke,
        policy=policy,
        observe=metrics.observe,
    )


def build_app(settings: ControllerSettings | None = None) -> FastAPI:
    settings = settings or ControllerSettings()
    metrics = ControllerMetrics()
    engine = build_engine(settings, metrics)
    return create_app(engine, token=settings.token_value(), metrics=metrics)


def run(*, host: str, port: int, log_level: str = "info") -> int:
    """Serve the controller API until stopped; what `bluegreen serve controller` calls."""
    import uvicorn

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        app = build_app()
    except (ValueError, OSError) as exc:
        print(f"bluegreen controller: cannot start: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
    return 0
