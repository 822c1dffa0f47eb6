"""Prometheus metrics of the controller: operations, step durations, what is live."""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.domain import Operation, OperationKind, OperationStatus

_STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180)


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.operations = Counter(
            "bluegreen_operations",
            "Switches and rollbacks by outcome.",
            ["kind", "status"],
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "bluegreen_step_duration_seconds",
            "Duration of each release step.",
            ["step", "ok"],
            buckets=_STEP_BUCKETS,
            registry=self.registry,
        )
        self.live_version = Gauge(
            "bluegreen_live_version",
            "Version number that is live, by color.",
            ["color"],
            registry=self.registry,
        )

        # Every outcome exported from the start at 0: Prometheus's increase() cannot see a
        # series whose first sample is already 1, so an alert on the first failure would miss.
        for kind in get_args(OperationKind):
            for status in get_args(OperationStatus):
                self.operations.labels(kind=kind, status=status)

    def observe(self, op: Operation) -> None:
        self.operations.labels(kind=op.kind, status=op.status).inc()
        for step in op.steps:
            if step.seconds is not None:
                self.step_seconds.labels(step=step.name, ok=str(bool(step.ok)).lower()).observe(
                    step.seconds
                )
        live_color = op.to_color if op.status in ("promoted", "rolled_back") else None
        if live_color and op.target_version and op.target_version.isdigit():
            self.live_version.clear()
            self.live_version.labels(color=live_color).set(int(op.target_version))
