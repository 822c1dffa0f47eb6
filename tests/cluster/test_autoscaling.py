"""The chart with autoscaling on: HPAs per color, the real HPA controller, and a release.

With `autoscaling.enabled` the chart leaves a color's replicas to its HorizontalPodAutoscaler
(the real one of kube-controller-manager; there is no metrics server, so it only enforces
`minReplicas`). A release scales the empty standby to `minReplicas`, promotes it, and both
colors end at `minReplicas` with two ready pods each.
"""

from __future__ import annotations

from kubernetes import client

from tests.cluster.conftest import ClusterModels
from tests.cluster.load import PredictLoad
from tests.cluster.release import ChartRelease


def test_autoscaling_install_and_release(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    values["autoscaling"] = {"enabled": True, "minReplicas": 2, "maxReplicas": 3}
    release.install(values)
    hpas = client.AutoscalingV2Api(release.kube.api).list_namespaced_horizontal_pod_autoscaler(
        release.namespace
    )
    names = {h.metadata.name: h.spec.scale_target_ref.name for h in hpas.items}
    assert names == {"bg-blue": "bg-blue", "bg-green": "bg-green"}
    release.wait_color_ready("blue", 2, timeout=120)  # the HPA raises blue to minReplicas

    with PredictLoad(release.live_url()) as load:
        load.wait_for_answers(10)
        op = release.controller().switch(version=models.other)
        assert op["status"] == "promoted", op

    assert not load.failures(), load.failures()[:5]
    assert release.live_color() == "green"
    release.wait_color_ready("green", 2, timeout=30)
    release.wait_color_ready("blue", 2, timeout=30)


def test_autoscaled_standby_matches_live_replicas_at_the_flip(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    values["autoscaling"] = {"enabled": True, "minReplicas": 2, "maxReplicas": 4}
    release.install(values)
    release.wait_color_ready("blue", 2, timeout=120)
    # As if its HPA had scaled it under load (no metrics server here: the HPA then keeps
    # any count within [min, max]).
    release.kube.apps.patch_namespaced_deployment_scale(
        f"{release.name}-blue", release.namespace, {"spec": {"replicas": 3}}
    )
    release.wait_color_ready("blue", 3)

    op = release.controller().switch(version=models.other)

    assert op["status"] == "promoted", op
    assert release.replicas("green") >= 3, "green went live with fewer replicas than blue ran"
