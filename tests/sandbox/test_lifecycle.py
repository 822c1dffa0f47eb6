"""A second sandbox beside the first: separate ranges and ports; `down` leaves nothing."""

from __future__ import annotations

import subprocess
import time

from kube_sandbox import fixture, netutil, teardown
from kube_sandbox.layout import Layout, State

from tests.sandbox.helpers import Kube, deployment, http_get, service, wait_for
from tests.support.sandbox import PODS_PATH


def test_second_sandbox_then_down_leaves_nothing(sandbox, tmp_path) -> None:
    t0 = time.monotonic()
    other = fixture.up(tmp_path / "second", node="standin", path=PODS_PATH)
    up_s = time.monotonic() - t0
    try:
        assert other.pod_cidr != sandbox.pod_cidr
        assert other.service_cidr != sandbox.service_cidr
        assert other.apiserver != sandbox.apiserver
        kube = Kube(other)
        kube.create("default", deployment("web", replicas=1))
        kube.create("default", service("web"))
        kube.wait_available("default", "web", 1)
        url = other.service_url("default", "web")
        wait_for("the Service answering", lambda: http_get(url)[0] == 200, 20)
        # kubectl-style check that the admin kubeconfig speaks to a real v1.34 API server
        version = kube.api.call_api("GET", f"{other.apiserver}/version")
        version.read()
        assert b'"gitVersion": "v1.34.10"' in version.data or b"v1.34.10" in version.data
        state = State.load(Layout(other.dir).state_json)
        assert [n for n in netutil.netns_list() if n.startswith(state.netns_prefix)]
    finally:
        other.down()
    left = teardown.leftovers(Layout(other.dir), state)
    assert left == {"processes": [], "netns": [], "links": [], "mounts": []}
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(other.dir) not in ps
    assert up_s < 120, f"up took {up_s:.0f} s"
