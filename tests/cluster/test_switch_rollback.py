"""A release and a rollback of the real chart under continuous load through the live Service.

The controller runs as a pod under the chart's ServiceAccount and Role; it stages the new
version into green (two replicas), smoke-tests green through its color Service by DNS name,
flips the live Service's selector and points the MLflow alias. The load goes to the live
Service's ClusterIP through the real kube-proxy: no request may fail, and every request sent
once the route has settled after the controller answered is served by the new version (the
lag is printed; `load.ROUTE_SETTLES_S` bounds it).
"""

from __future__ import annotations

from mlflow import MlflowClient

from tests.cluster.conftest import ClusterModels
from tests.cluster.load import ROUTE_SETTLES_S, PredictLoad, switch_then_roll_back
from tests.cluster.release import ChartRelease


def test_switch_and_rollback_under_load(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    release.install(values)
    assert release.live_color() == "blue"
    # Before the first release, green is a warm copy of the live version (never versionless).
    release.wait_color_ready("blue", 2)
    release.wait_color_ready("green", 2)
    assert release.pinned("green") == models.good
    api = release.controller()

    with PredictLoad(release.live_url()) as load:
        load.wait_for_answers(20)
        t = switch_then_roll_back(api, models.other)
    assert (t.switch["from_color"], t.switch["to_color"]) == ("blue", "green")

    assert not load.failures(), load.failures()[:5]
    assert set(load.versions(until=t.asked)) == {models.good}
    lag = load.last_answer(models.good, since=t.switched, until=t.rolling)
    print(f"the old version answered until {lag:.2f} s after the switch's answer")
    after_switch = load.versions(since=t.switched + ROUTE_SETTLES_S, until=t.rolling)
    assert after_switch and set(after_switch) == {models.other}, after_switch
    after_rollback = load.versions(since=t.rolled + ROUTE_SETTLES_S)
    assert set(after_rollback) == {models.good}, after_rollback

    # The route and the pins are on the API server, where the controller wrote them.
    assert release.live_color() == "blue"
    assert (release.pinned("blue"), release.pinned("green")) == (models.good, models.other)
    release.wait_color_ready("green", 2, timeout=30)  # standby stays warm for the next flip
    status = api.status()
    assert status["live"]["color"] == "blue" and status["live"]["version"] == models.good
    assert status["standby"]["version"] == models.other
    registry = MlflowClient(tracking_uri=models.tracking_uri, registry_uri=models.tracking_uri)
    assert registry.get_model_version_by_alias(models.model, "live").version == models.good
