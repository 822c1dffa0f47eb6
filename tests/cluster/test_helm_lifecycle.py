"""`helm upgrade` and `helm rollback` after the controller released: the route and pins stay.

After install the controller owns the live Service's selector and each color's pin (and
the replicas of a color it staged). The chart reads them back with `lookup` on upgrade;
helm v4 applies server-side, helm v3 merges three-way (old manifest, new manifest, live
object) on the client; both are run. An upgrade that changes the replica count must neither move
traffic nor re-pin, and must scale both colors; a `helm rollback` must not flip traffic
back to what the install rendered: helm v4's server-side apply is refused on the
controller's fields.
"""

from __future__ import annotations

import threading
import time

from tests.cluster.conftest import ClusterModels
from tests.cluster.load import ROUTE_SETTLES_S, PredictLoad
from tests.cluster.release import ChartRelease


def _release_green(release: ChartRelease, values: dict, models: ClusterModels) -> None:
    release.install(values)
    op = release.controller().switch(version=models.other)
    assert op["status"] == "promoted", op
    assert release.live_color() == "green"
    # The load that follows measures the upgrade, not the flip: fresh connections reach green
    # once kube-proxy has caught up with the selector.
    time.sleep(ROUTE_SETTLES_S)


def test_helm_upgrade_after_release_keeps_route_and_pins(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    _upgrade_after_release(release, values, models)


def test_helm3_upgrade_after_release_keeps_route_and_pins(
    release_helm3: ChartRelease, values: dict, models: ClusterModels
) -> None:
    _upgrade_after_release(release_helm3, values, models)


def _upgrade_after_release(release: ChartRelease, values: dict, models: ClusterModels) -> None:
    _release_green(release, values, models)

    with PredictLoad(release.live_url()) as load:
        load.wait_for_answers(10)
        release.upgrade("--set", "modelServer.replicaCount=3")
        release.wait_color_ready("green", 3)
        release.wait_color_ready("blue", 3)

    assert not load.failures(), load.failures()[:5]
    assert set(load.versions()) == {models.other}
    assert release.live_color() == "green"
    assert (release.pinned("blue"), release.pinned("green")) == (models.good, models.other)
    status = release.controller().status()
    assert status["live"] == {"color": "green", "version": models.other, "ready": True}


def test_helm_rollback_is_refused_and_keeps_route_and_pins(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    """`helm rollback` re-applies the install's stored manifest (blue live, the install's pins).
    Helm v4 applies it server-side, and every field it would reset is owned by the
    controller's field manager: the API server refuses with a conflict, and traffic and pins
    stay where the controller put them (the README says to use `bluegreen rollback`)."""
    _release_green(release, values, models)

    with PredictLoad(release.live_url()) as load:
        load.wait_for_answers(10)
        refused = release.rollback(1, check=False)

    assert refused.returncode != 0, refused.stdout
    said = refused.stdout + refused.stderr
    assert "conflict" in said and "bluegreen-controller" in said, said
    assert not load.failures(), load.failures()[:5]
    assert set(load.versions()) == {models.other}
    assert release.live_color() == "green"
    assert (release.pinned("blue"), release.pinned("green")) == (models.good, models.other)
    release.wait_color_ready("green", 2, timeout=30)


def test_helm3_upgrade_with_autoscaling_keeps_live_replicas(
    release_helm3: ChartRelease, values: dict, models: ClusterModels
) -> None:
    values["autoscaling"] = {"enabled": True, "minReplicas": 2, "maxReplicas": 3}
    release = release_helm3
    _release_green(release, values, models)
    release.wait_color_ready("green", 2)

    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(release.replicas("green"))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        release.upgrade()  # nothing changed in values: any upgrade does it
        time.sleep(2)
    finally:
        stop.set()
        watcher.join(5)

    assert seen and min(seen) >= 2, f"live green's spec.replicas during the upgrade: {seen}"
    assert release.live_color() == "green"
