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


def test_a_concurrent_writer_is_merged_not_clobbered(
    api: client.ApiClient, emulator: ClusterEmulator
) -> None:
    """Issue 12 item 9: a 409 re-reads the stored journal and keeps its records beside ours."""
    ours, theirs = journal_store(api), journal_store(api)
    ours.load("iris")
    theirs.load("iris")
    theirs.save(sample_journal("7"))
    ours.save(sample_journal("2"))  # our revision is stale now
    assert emulator.conflicts == 1
    stored = stored_journal(api)
    assert [op.id for op in stored.history] == ["sw-7", "sw-2"]  # theirs survived
    assert stored.previous == sample_journal("2").previous
    ours.save(
        stored.model_copy(update={"history": [*stored.history, *sample_journal("3").history]})
    )
    assert emulator.conflicts == 1  # we carry the fresh revision afterwards
    assert [op.id for op in stored_journal(api).history] == ["sw-7", "sw-2", "sw-3"]


def test_a_stale_controller_keeps_the_newer_rollback_point(api: client.ApiClient) -> None:
    """Controller A loaded the journal, then B released twice; A takes the lease and saves:
    B's records and B's (newer) rollback point survive, A's running operation is added."""
    a, b = journal_store(api), journal_store(api)
    a.load("iris")
    b.load("iris")
    later = sample_journal("5")
    later.history[0].started_at = "2026-11-24T09:00:00.000+00:00"
    later.previous = Stable(color="green", version="4")
    b.save(later)
    running = Operation(id=OperationId("sw-a"), kind="switch", model="iris")
    a.save(Journal(model="iris", previous=Stable(color="blue", version="1"), current=running))
    stored = stored_journal(api)
    assert [op.id for op in stored.history] == ["sw-5"]
    assert stored.previous == Stable(color="green", version="4")
    assert stored.current is not None and stored.current.id == "sw-a"


def test_a_journal_of_long_failures_stays_under_the_object_limit(api: client.ApiClient) -> None:
    """Issue 12 item 10: 200 operations with 8 KB error messages would be ~1.6 MB, over the
    API server's 1 MiB limit (422 on every save); texts are cut, then the oldest dropped."""
    store = journal_store(api)
    store.load("iris")
    history = []
    for i in range(200):
        op = Operation(
            id=OperationId(f"sw-{i:03d}"),
            kind="switch",
            model="iris",
            status="aborted",
            reason="stage: " + "x" * 8192,
        )
        history.append(op)
    store.save(Journal(model="iris", previous=Stable(color="blue", version="1"), history=history))
    config_map = client.CoreV1Api(api).read_namespaced_config_map(JOURNAL, NAMESPACE)
    assert len(config_map.data["journal.json"].encode()) <= 900 * 1024
    stored = stored_journal(api)
    assert stored.history[-1].id == "sw-199"  # the newest are kept
    assert stored.previous == Stable(color="blue", version="1")
    assert all(len(op.reason or "") <= 512 for op in stored.history)
    assert stored.history[-1].reason.endswith("[...]")


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
        assert str(holder) == "ctl-a/sw-1"
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


def test_an_expired_lease_is_taken_over_once_seen_unchanged_for_its_duration(
    api: client.ApiClient,
) -> None:
    """Issue 12 item 9: expiry is measured on our own clock, as client-go does: the record
    must stay unchanged for its whole duration from when we first saw it."""
    put_lease(
        api,
        holder="dead-controller/sw-9",
        renewed=datetime.now(UTC) - timedelta(minutes=2),
        seconds=1,
    )
    ours = lock(api, identity="ctl-a")
    with pytest.raises(ReleaseInProgress), ours.hold("sw-1"):
        pytest.fail("took a lease on the strength of another node's timestamps")
    time.sleep(1.1)  # unchanged for its whole duration, on our clock
    with ours.hold("sw-1"):
        spec = lease_spec(api)
        assert spec["holderIdentity"] == "ctl-a/sw-1"
        assert spec["leaseTransitions"] == 4


def test_a_holder_with_a_slow_clock_that_keeps_renewing_keeps_the_lease(
    api: client.ApiClient,
) -> None:
    """Its renewTime is two minutes behind our clock, but it changes: the holder is alive."""
    skew = timedelta(minutes=2)
    put_lease(api, holder="other/sw-9", renewed=datetime.now(UTC) - skew, seconds=1)
    ours = lock(api, identity="ctl-a")
    for _ in range(3):
        with pytest.raises(ReleaseInProgress), ours.hold("sw-1"):
            pytest.fail("took a lease that is being renewed")
        time.sleep(0.6)
        client.CoordinationV1Api(api).patch_namespaced_lease(
            LEASE,
            NAMESPACE,
            {"spec": {"renewTime": micro_time(datetime.now(UTC) - skew)}},
            _content_type="application/merge-patch+json",
        )
    assert lease_spec(api)["holderIdentity"] == "other/sw-9"


def test_a_lease_taken_over_while_held_fails_the_fence(api: client.ApiClient) -> None:
    """What the engine checks right before the flip: is the lease still ours?"""
    with lock(api, seconds=30, identity="ctl-a").hold("sw-1") as handle:
        handle.check()  # ours
        client.CoordinationV1Api(api).patch_namespaced_lease(
            LEASE,
            NAMESPACE,
            {"spec": {"holderIdentity": "ctl-b/sw-2"}},
            _content_type="application/merge-patch+json",
        )
        with pytest.raises(ReleaseInProgress, match="now held by ctl-b/sw-2"):
            handle.check()


def test_a_lease_not_renewed_in_time_fails_the_fence(
    api: client.ApiClient, emulator: ClusterEmulator
) -> None:
    """Renewals fail (API server down): once a lease's duration passed since the last
    successful renewal, the fence refuses, whatever the (unreachable) record says."""
    with lock(api, seconds=2, identity="ctl-a").hold("sw-1") as handle:
        emulator.fail_next(10_000, path_contains=f"/leases/{LEASE}")
        time.sleep(2.3)
        started = time.monotonic()
        with pytest.raises(ReleaseInProgress, match="not renewed for"):
            handle.check()
        assert time.monotonic() - started < 0.5  # decided on our clock, no API call needed


def test_a_renewal_is_one_bounded_attempt(api: client.ApiClient, emulator: ClusterEmulator) -> None:
    """A failing API server costs a renewal one request, not ~80 s of retries."""
    ours = lock(api, seconds=3, identity="ctl-a")
    with ours.hold("sw-1"):
        emulator.fail_next(10_000, path_contains=f"/leases/{LEASE}")
        before = emulator.failed_requests
        time.sleep(2.2)  # one renewal round (every second)
        assert 1 <= emulator.failed_requests - before <= 2
        emulator.fail_next(0)


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
