"""ConfigMapJournal and LeaseLock against the API stand-in."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from controller.domain import Journal, Operation, OperationId, Stable
from controller.errors import ReleaseInProgress
from controller.kubernetes.api import micro_time
from controller.kubernetes.journal import ConfigMapJournal
from controller.kubernetes.lease import LeaseLock
from tests.kubernetes.cluster import ClusterEmulator
from tests.support.emulated_cluster import NAMESPACE, RELEASE

JOURNAL = f"{RELEASE}-journal"
LEASE = f"{RELEASE}-release-lock"


def journal_store(api: client.ApiClient) -> ConfigMapJournal:
    return ConfigMapJournal(namespace=NAMESPACE, release=RELEASE, api_client=api)


def lock(api: client.ApiClient, *, seconds: int = 30, identity: str | None = None) -> LeaseLock:
    return LeaseLock(
        namespace=NAMESPACE,
        release=RELEASE,
        api_client=api,
        lease_seconds=seconds,
        identity=identity,
    )


def stored_journal(api: client.ApiClient) -> Journal:
    config_map = client.CoreV1Api(api).read_namespaced_config_map(JOURNAL, NAMESPACE)
    return Journal.model_validate_json(config_map.data["journal.json"])


def lease_spec(api: client.ApiClient) -> dict[str, Any]:
    lease = client.CoordinationV1Api(api).read_namespaced_lease(LEASE, NAMESPACE)
    return api.sanitize_for_serialization(lease)["spec"]


def put_lease(api: client.ApiClient, *, holder: str, renewed: datetime, seconds: int = 30) -> None:
    client.CoordinationV1Api(api).create_namespaced_lease(
        NAMESPACE,
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE},
            "spec": {
                "holderIdentity": holder,
                "acquireTime": micro_time(renewed),
                "renewTime": micro_time(renewed),
                "leaseDurationSeconds": seconds,
                "leaseTransitions": 3,
            },
        },
    )


def sample_journal(version: str) -> Journal:
    op = Operation(
        id=OperationId(f"sw-{version}"),
        kind="switch",
        model="iris",
        status="promoted",
        started_at="2026-11-23T12:00:00.000+00:00",
    )
    op.target_version = version
    return Journal(model="iris", previous=Stable(color="blue", version="1"), history=[op])


# -- journal -----------------------------------------------------------------------------


def test_first_load_creates_the_config_map(api: client.ApiClient) -> None:
    assert journal_store(api).load("iris") == Journal(model="iris")
    assert stored_journal(api) == Journal(model="iris")


def test_save_and_load_round_trip_across_instances(api: client.ApiClient) -> None:
    writer = journal_store(api)
    writer.load("iris")
    writer.save(sample_journal("2"))
    assert journal_store(api).load("iris") == sample_journal("2")  # a restarted controller


def test_a_concurrent_writer_is_detected_and_ours_reapplied(
    api: client.ApiClient, emulator: ClusterEmulator
) -> None:
    ours, theirs = journal_store(api), journal_store(api)
    ours.load("iris")
    theirs.load("iris")
    theirs.save(sample_journal("7"))
    ours.save(sample_journal("2"))  # our revision is stale now
    assert emulator.conflicts == 1
    assert stored_journal(api) == sample_journal("2")
    ours.save(sample_journal("3"))  # and we carry the fresh revision afterwards
    assert emulator.conflicts == 1
    assert stored_journal(api) == sample_journal("3")


def test_losing_the_create_race_reads_the_winners_journal(api: client.ApiClient) -> None:
    winner = journal_store(api)
    winner.load("iris")
    winner.save(sample_journal("4"))
    loser = journal_store(api)
    # The loser saw no ConfigMap a moment ago and creates it now: 409, then it reads theirs.
    created = loser._create(Journal(model="iris"))
    assert Journal.model_validate_json(created.data["journal.json"]) == sample_journal("4")


# -- lease -------------------------------------------------------------------------------


def test_lease_is_created_held_and_released_on_exit(api: client.ApiClient) -> None:
    ours = lock(api, identity="ctl-a")
    with ours.hold("sw-1") as holder:
        assert holder == "ctl-a/sw-1"
        spec = lease_spec(api)
        assert spec["holderIdentity"] == "ctl-a/sw-1"
        assert spec["leaseDurationSeconds"] == 30
    assert not lease_spec(api).get("holderIdentity")
    with lock(api, identity="ctl-b").hold("sw-2"):  # free again for anyone
        assert lease_spec(api)["holderIdentity"] == "ctl-b/sw-2"


def test_lease_is_released_when_the_release_fails(api: client.ApiClient) -> None:
    with pytest.raises(RuntimeError), lock(api, identity="ctl-a").hold("sw-1"):
        raise RuntimeError("stage failed")
    assert not lease_spec(api).get("holderIdentity")


def test_a_live_holder_keeps_the_lease(api: client.ApiClient) -> None:
    put_lease(api, holder="other-controller/sw-9", renewed=datetime.now(UTC))
    with (
        pytest.raises(ReleaseInProgress, match="held by other-controller/sw-9"),
        lock(api).hold("sw-1"),
    ):
        pytest.fail("acquired a lease another controller holds")
    assert lease_spec(api)["holderIdentity"] == "other-controller/sw-9"


def test_a_second_release_in_the_same_controller_is_refused(api: client.ApiClient) -> None:
    ours = lock(api, identity="ctl-a")
    with ours.hold("sw-1"), pytest.raises(ReleaseInProgress, match="ctl-a/sw-1"), ours.hold("sw-2"):
        pytest.fail("two releases at once")


def test_an_expired_lease_is_taken_over(api: client.ApiClient) -> None:
    put_lease(api, holder="dead-controller/sw-9", renewed=datetime.now(UTC) - timedelta(minutes=2))
    with lock(api, identity="ctl-a").hold("sw-1"):
        spec = lease_spec(api)
        assert spec["holderIdentity"] == "ctl-a/sw-1"
        assert spec["leaseTransitions"] == 4


def test_a_racing_taker_wins_and_we_get_release_in_progress(
    api: client.ApiClient, emulator: ClusterEmulator
) -> None:
    put_lease(api, holder="", renewed=datetime.now(UTC))
    emulator.interfere("leases", LEASE)  # another controller writes between our read and write
    with pytest.raises(ReleaseInProgress), lock(api).hold("sw-1"):
        pytest.fail("won a race that the API server said we lost")
    assert emulator.conflicts == 1


def test_the_lease_is_renewed_while_held(api: client.ApiClient) -> None:
    with lock(api, seconds=1, identity="ctl-a").hold("sw-1"):
        first = lease_spec(api)["renewTime"]
        time.sleep(1.5)  # longer than the lease: only renewal keeps it
        assert lease_spec(api)["renewTime"] != first
        with pytest.raises(ReleaseInProgress), lock(api, seconds=1).hold("sw-2"):
            pytest.fail("took over a lease that is being renewed")
