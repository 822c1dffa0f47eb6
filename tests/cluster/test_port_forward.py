"""The README's operator checks through `kubectl port-forward`, and what a flip does to them.

`kubectl port-forward svc/R-green`, `svc/R` and `svc/R-controller` answer as the README shows.
A forward resolves its Service to one pod when it starts: across a switch, the forward to the
live Service keeps answering from the pod it picked (now the standby, the old version), a new
forward answers from the new live color, and the forward to `R-green` breaks when staging
replaces the pod it was attached to. The chart's NOTES and the README say so.
"""

from __future__ import annotations

import json

from tests.cluster.conftest import ClusterModels
from tests.cluster.portforward import PortForward
from tests.cluster.release import ChartRelease
from tests.support.kube import wait_for


def _forward(release: ChartRelease, service: str) -> PortForward:
    svc = release.kube.core.read_namespaced_service(service, release.namespace)
    return PortForward(
        kubeconfig=release.sandbox.kubeconfig,
        namespace=release.namespace,
        target=f"svc/{service}",
        remote_port=svc.spec.ports[0].port,
    )


def _model_info(forward: PortForward) -> tuple[str, str]:
    status, body = forward.get_retrying("/model-info")
    assert status == 200, body
    info = json.loads(body)
    return str(info["version"]), str(info["color"])


def _broken(forward: PortForward) -> bool:
    if not forward.alive():
        return True
    try:
        status, _ = forward.get("/model-info", timeout=3)
    except OSError:
        return True
    return status != 200


def test_port_forward_checks_across_a_switch(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    release.install_warm(values)
    name = release.name

    with _forward(release, f"{name}-controller") as ctl:
        status, body = ctl.get_retrying("/healthz")
        assert status == 200, body

    with _forward(release, name) as live, _forward(release, f"{name}-green") as green:
        assert _model_info(live) == (models.good, "blue")
        assert _model_info(green) == (models.good, "green")  # the warm copy

        op = release.controller().switch(version=models.other)
        assert op["status"] == "promoted", op

        # The forward to the live Service stays on the blue pod it picked at its start.
        assert _model_info(live) == (models.good, "blue")
        # Staging replaced the green pods: the forward attached to one of them is gone.
        wait_for("the forward to the replaced green pod to break", lambda: _broken(green), 60)

    with _forward(release, name) as live_again, _forward(release, f"{name}-green") as green:
        assert _model_info(live_again) == (models.other, "green")
        assert _model_info(green) == (models.other, "green")
