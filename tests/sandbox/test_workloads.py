"""Deployments, EndpointSlices and the proxy stand-in, on the real control plane."""

from __future__ import annotations

import itertools
import time

from tests.sandbox import helpers
from tests.sandbox.helpers import Kube, Load, deployment, http_get, service, wait_for


def _answers(url: str, n: int) -> list[str]:
    return [http_get(url)[1] for _ in range(n)]


def test_deployment_available_slices_and_round_robin(sandbox, kube: Kube, ns: str) -> None:
    kube.create(ns, deployment("echo", replicas=2))
    kube.create(ns, service("echo"))
    kube.wait_available(ns, "echo", 2)
    pods = kube.ready_pods(ns, "app=echo")
    ips = sorted(p.status.pod_ip for p in pods)
    assert len(ips) == 2 and all(ip.startswith(sandbox.pod_cidr.rsplit(".", 2)[0]) for ip in ips)
    assert all(p.status.host_ip == sandbox.host_address for p in pods)

    def slice_ips():
        slices = kube.discovery.list_namespaced_endpoint_slice(
            ns, label_selector="kubernetes.io/service-name=echo"
        ).items
        got = sorted(
            a for s in slices for e in s.endpoints or [] if e.conditions.ready for a in e.addresses
        )
        return got if got == ips else None

    wait_for("EndpointSlices listing both pods", slice_ips, 30)
    url = sandbox.service_url(ns, "echo")
    assert sandbox.services()[f"{ns}/echo:web"] == url
    names = {p.metadata.name for p in pods}
    wait_for(
        "both pods answering through the proxy",
        lambda: {a.split()[0] for a in _answers(url, 4)} == names,
        15,
    )
    answers = [a.split()[0] for a in _answers(url, 10)]
    assert set(answers) == names
    # round-robin per connection: no pod answers twice in a row
    assert all(a != b for a, b in itertools.pairwise(answers)), answers


def test_readiness_false_leaves_rotation(sandbox, kube: Kube, ns: str) -> None:
    kube.create(ns, deployment("flip", replicas=2))
    kube.create(ns, service("flip"))
    kube.wait_available(ns, "flip", 2)
    url = sandbox.service_url(ns, "flip")
    a, b = sorted(kube.ready_pods(ns, "app=flip"), key=lambda p: p.metadata.name)
    wait_for("both in rotation", lambda: len({x.split()[0] for x in _answers(url, 4)}) == 2, 15)

    http_get(f"http://{a.status.pod_ip}:8080/set-ready?v=0")
    t0 = time.monotonic()
    wait_for(
        "the unready pod out of the proxy's rotation",
        lambda: {x.split()[0] for x in _answers(url, 6)} == {b.metadata.name},
        20,
    )
    lag = time.monotonic() - t0
    pod = kube.core.read_namespaced_pod(a.metadata.name, ns)
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"
    assert pod.status.container_statuses[0].ready is False
    assert lag < 10, f"took {lag:.1f} s"

    http_get(f"http://{a.status.pod_ip}:8080/set-ready?v=1")
    wait_for(
        "the pod back in rotation", lambda: len({x.split()[0] for x in _answers(url, 6)}) == 2, 20
    )


def test_no_ready_endpoint_refuses(sandbox, kube: Kube, ns: str) -> None:
    kube.create(ns, deployment("solo", replicas=1))
    kube.create(ns, service("solo"))
    kube.wait_available(ns, "solo", 1)
    url = sandbox.service_url(ns, "solo")
    (pod,) = kube.ready_pods(ns, "app=solo")
    http_get(f"http://{pod.status.pod_ip}:8080/set-ready?v=0")

    def refused():
        try:
            http_get(url, timeout=2)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False  # reset: accepted just before the listener closed
        return False

    wait_for("connections refused with no ready endpoint", refused, 20)


def test_rolling_update_with_pre_stop_has_no_failed_request(sandbox, kube: Kube, ns: str) -> None:
    container = helpers.server_container(env={"VERSION": "v1"}, pre_stop={"sleep": {"seconds": 2}})
    kube.create(ns, deployment("roll", replicas=2, container=container))
    kube.create(ns, service("roll"))
    kube.wait_available(ns, "roll", 2)
    url = sandbox.service_url(ns, "roll")
    wait_for("both in rotation", lambda: len({x.split()[0] for x in _answers(url, 4)}) == 2, 15)
    with Load(url) as load:
        time.sleep(1)
        patch = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "server", "env": [{"name": "VERSION", "value": "v2"}]}
                        ]
                    }
                }
            }
        }
        kube.apps.patch_namespaced_deployment("roll", ns, patch)
        time.sleep(1)
        kube.wait_available(ns, "roll", 2, timeout=120)
        wait_for("old pods gone", lambda: len(kube.pods(ns, "app=roll")) == 2, 60)
        time.sleep(1)
    versions = [a.split()[1] for a in load.answers]
    assert load.failures == [], load.failures[:5]
    assert len(load.answers) > 100
    assert "v1" in versions and "v2" in versions
    assert set(versions[-20:]) == {"v2"}


def test_rolling_update_without_pre_stop_loses_requests(sandbox, kube: Kube, ns: str) -> None:
    """The race a preStop sleep closes is real here: SIGTERM beats the EndpointSlice update.

    The server exits at once on SIGTERM; connections the proxy still sends to it meanwhile
    fail. Up to three rollouts, so that a lucky one does not hide the race.
    """
    container = helpers.server_container(env={"VERSION": "v1", "EXIT_ON_SIGTERM": "1"})
    kube.create(ns, deployment("bare", replicas=2, container=container))
    kube.create(ns, service("bare"))
    kube.wait_available(ns, "bare", 2)
    url = sandbox.service_url(ns, "bare")
    wait_for("both in rotation", lambda: len({x.split()[0] for x in _answers(url, 4)}) == 2, 15)
    failures: list[str] = []
    for version in ("v2", "v3", "v4"):
        with Load(url, interval=0.002) as load:
            time.sleep(0.5)
            patch = {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "server", "env": [{"name": "VERSION", "value": version}]}
                            ]
                        }
                    }
                }
            }
            kube.apps.patch_namespaced_deployment("bare", ns, patch)
            time.sleep(1)
            kube.wait_available(ns, "bare", 2, timeout=120)
            wait_for("old pods gone", lambda: len(kube.pods(ns, "app=bare")) == 2, 60)
        failures += load.failures
        if failures:
            break
    assert failures, "no request failed in three rollouts without a preStop hook"
