"""The model server buckets a regressor's numeric predictions, and only those."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from controller.serving_probe import parse_snapshot
from model_server.metrics import ServingMetrics

pytestmark = pytest.mark.unit


def test_numeric_predictions_land_in_fixed_buckets_and_labels_do_not() -> None:
    metrics = ServingMetrics(color="green", version="4", model="housing")
    metrics.observe_values([1.5, 2.25, -0.5])
    metrics.observe_values([[3.0], [4.0]])  # one output per row
    metrics.observe_values([0, 1, 2])  # a classifier's labels: not values
    metrics.observe_values([[1.0, 2.0]])  # several outputs per row: not a regressor's
    snapshot = parse_snapshot(generate_latest(metrics.registry).decode())
    assert snapshot.values.count == 5
    assert snapshot.values.buckets[0.0] == 1  # only -0.5 is at or below zero
    assert snapshot.values.buckets[2.511886] == 3  # cumulative: -0.5, 1.5 and 2.25
