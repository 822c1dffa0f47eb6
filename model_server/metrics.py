"""Prometheus metrics of one model server, labelled with its color and pinned version."""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_MAX_CLASSES = 64  # a label per class: more would be a regressor's values, not classes
# Fixed buckets for numeric predictions, whatever the model's scale: zero, then ten per
# decade each side from 1e-3 to 1e6 (26 % apart), so the bake can compare distributions.
_VALUE_BOUNDS = tuple(round(10 ** (k / 10), 6) for k in range(-30, 61))
VALUE_BUCKETS = (*(-b for b in reversed(_VALUE_BOUNDS)), 0.0, *_VALUE_BOUNDS)
_M = TypeVar("_M", Counter, Gauge, Histogram)


class ServingMetrics:
    """The counters a dashboard needs to tell blue from green."""

    def __init__(self, *, color: str, version: str, model: str) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "color", "version")
        self._labels = {"model": model, "color": color, "version": version}

        def metric(kind: type[_M], name: str, what: str, *extra: str, **options: Any) -> _M:
            # Every series carries the model, color and version: what tells blue from green.
            return kind(name, what, [*labels, *extra], registry=self.registry, **options)

        self.requests = metric(
            Counter,
            "bluegreen_model_requests",
            "Prediction requests answered, by endpoint and HTTP status.",
            "endpoint",
            "status",
        )
        self.latency = metric(
            Histogram,
            "bluegreen_model_request_duration_seconds",
            "Time from request start to the last byte of the answer.",
            "endpoint",
            buckets=_LATENCY_BUCKETS,
        )
        self.batch_rows = metric(
            Histogram,
            "bluegreen_model_batch_rows",
            "Rows per predict call after adaptive batching.",
            buckets=_BATCH_BUCKETS,
        )
        self.scoring_path = metric(
            Counter,
            "bluegreen_model_scoring_path",
            "Scoring requests by who answered: the fast path or MLflow's own scoring code.",
            "path",
        )
        self.predictions = metric(
            Counter,
            "bluegreen_model_predictions",
            "Predicted labels of a classifier, by class (the bake step compares distributions).",
            "class",
        )
        self.values = metric(
            Histogram,
            "bluegreen_model_prediction_values",
            "Numeric predictions of a regressor, in fixed buckets (the bake compares them).",
            buckets=VALUE_BUCKETS,
        )
        self.shadow_rows = metric(
            Counter,
            "bluegreen_model_shadow_rows",
            "Rows of mirrored live requests this (standby) color predicted during a shadow "
            "step, by whether its prediction agreed with the live one's.",
            "agreed",
        )
        self.shadow_mirror = metric(
            Counter,
            "bluegreen_model_shadow_mirror_requests",
            "Live requests this (live) color sampled for a shadow session, by outcome: "
            "mirrored (the standby took them), skipped_by_cap (over the mirror rate cap), "
            "dropped (queue full, or unsent when the session ended), failed (the standby "
            "did not answer).",
            "outcome",
        )
        self.load_seconds = metric(
            Gauge,
            "bluegreen_model_load_seconds",
            "Seconds spent downloading and loading the pinned version.",
        )
        self.ready = metric(
            Gauge, "bluegreen_model_ready", "1 once the model is loaded and warmed up."
        )
        # Children resolved once: label lookup on every request is measurable at 2k req/s.
        self._latency_children: dict[str, object] = {}
        self._request_children: dict[tuple[str, int], Any] = {}
        self._batch_child = self.batch_rows.labels(**self._labels)
        self._class_children: dict[str, Any] = {}
        self._values_child = self.values.labels(**self._labels)
        self._mirror_children: dict[str, Any] = {}
        self._path_children = {
            path: self.scoring_path.labels(**self._labels, path=path) for path in ("fast", "mlflow")
        }

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        counter = self._request_children.get((endpoint, status))
        if counter is None:
            counter = self._request_children[endpoint, status] = self.requests.labels(
                **self._labels, endpoint=endpoint, status=str(status)
            )
        counter.inc()
        child = self._latency_children.get(endpoint)
        if child is None:
            child = self._latency_children[endpoint] = self.latency.labels(
                **self._labels, endpoint=endpoint
            )
        child.observe(seconds)  # type: ignore[attr-defined]

    def observe_classes(self, predictions: Any) -> None:
        """Count predicted labels (ints, strings, booleans); numbers are not classes."""
        if not isinstance(predictions, list):
            return
        counts: dict[str, int] = {}
        for label in predictions:
            if isinstance(label, float) or not isinstance(label, int | str):
                return
            key = str(label)
            counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            child = self._class_children.get(key)
            if child is None:
                if len(self._class_children) >= _MAX_CLASSES:
                    key = "other"
                child = self._class_children.get(key) or self.predictions.labels(
                    **self._labels, **{"class": key}
                )
                self._class_children[key] = child
            child.inc(n)

    def observe_values(self, predictions: Any) -> None:
        """Observe numeric predictions (floats, or one float per row); labels are classes."""
        if not isinstance(predictions, list):
            return
        for value in predictions:
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if not isinstance(value, float):
                return  # a classifier's labels, or rows of several outputs: not a regressor
            if value == value:  # NaN is no bucket's
                self._values_child.observe(value)

    def observe_shadow(self, rows: int, agreed: int) -> None:
        """One mirrored request compared: `agreed` of its `rows` predictions matched."""
        # Both series from the first comparison on: a ratio over a series that does not
        # exist yet would be missing rather than 0 or 1.
        self.shadow_rows.labels(**self._labels, agreed="true").inc(agreed)
        self.shadow_rows.labels(**self._labels, agreed="false").inc(rows - agreed)

    def observe_mirror(self, outcome: str, count: int) -> None:
        """`count` sampled live requests ended `outcome` (see `shadow_mirror`)."""
        child = self._mirror_children.get(outcome)
        if child is None:
            child = self._mirror_children[outcome] = self.shadow_mirror.labels(
                **self._labels, outcome=outcome
            )
        child.inc(count)

    def observe_path(self, path: str) -> None:
        """`fast` or `mlflow`: which code answered one scoring request."""
        self._path_children[path].inc()

    def observe_batch(self, rows: int) -> None:
        self._batch_child.observe(rows)

    def loaded(self, seconds: float) -> None:
        self.load_seconds.labels(**self._labels).set(seconds)
        self.ready.labels(**self._labels).set(1)
