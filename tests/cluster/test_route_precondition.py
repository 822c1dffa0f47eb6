"""An unrelated write to the live Service during a release must not abort its flip.

The real API server bumps `resourceVersion` on every write to an object (a label, an
annotation, a load-balancer status). The flip's precondition should be the selector the
release started from, not the whole object's revision: a label added by someone else while
the standby stages must leave the release free to promote.
"""

from __future__ import annotations

from tests.cluster.conftest import ClusterModels
from tests.cluster.release import ChartRelease
from tests.support.kube import wait_for


def test_unrelated_service_write_during_stage_keeps_release(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    release.install(values)
    api = release.controller()
    op_id = api.switch(version=models.other, wait=False)["id"]
    wait_for("green pinned to the new version", lambda: release.pinned("green") == models.other)

    release.kube.core.patch_namespaced_service(
        release.name, release.namespace, {"metadata": {"labels": {"team": "payments"}}}
    )

    done = wait_for(
        "the release to finish",
        lambda: (lambda o: o if o["status"] != "running" else None)(api.operation(op_id)),
        timeout=180,
    )
    assert done["status"] == "promoted", done
    assert release.live_color() == "green"
