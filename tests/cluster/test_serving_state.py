"""Every pod of a color learns whether it is live, not just the one kube-proxy picked.

A model server tells clients of a standby to go elsewhere (`Connection: close`) and reports
`live` in `/model-info`. With two replicas per color behind real EndpointSlices, the
controller's notice must reach each ready pod of both colors after a flip; here each pod is
asked directly at its own address (the host reaches pod addresses, as a node does).
"""

from __future__ import annotations

import httpx

from tests.cluster.conftest import ClusterModels
from tests.cluster.release import ChartRelease


def _roles(release: ChartRelease, color: str) -> dict[str, bool]:
    pods = release.ready_pods(color)
    assert len(pods) == 2, f"{color}: {len(pods)} ready pods"
    return {
        p.metadata.name: httpx.get(f"http://{p.status.pod_ip}:8080/model-info", timeout=5).json()[
            "live"
        ]
        for p in pods
    }


def test_every_pod_learns_its_role_after_a_flip(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    release.install(values)
    release.wait_color_ready("blue", 2)
    assert all(_roles(release, "blue").values())

    op = release.controller().switch(version=models.other)
    assert op["status"] == "promoted", op

    green, blue = _roles(release, "green"), _roles(release, "blue")
    assert all(green.values()), f"green pods not told they are live: {green}"
    assert not any(blue.values()), f"blue pods still say live after the flip: {blue}\n" + "\n".join(
        line for line in release.controller_log().splitlines() if "could not tell" in line
    )
