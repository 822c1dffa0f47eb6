"""`ReleaseLock` on a coordination.k8s.io/v1 Lease: one release at a time across controllers.

Fenced the way client-go's leader election is: another holder's lease counts as expired
only once we have seen the same record unchanged for its whole duration on our own
monotonic clock (never by comparing its `renewTime` with our wall clock: the clocks of two
nodes differ); each renewal is one bounded request, so a slow API server cannot stretch a
renewal past the lease; and `hold` yields a `LeaseHandle` whose `check()` the engine calls
right before it flips traffic, which refuses once the lease was lost or not renewed in time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from controller.errors import BackendUnavailable, DependencyUnavailable, ReleaseInProgress
from controller.kubernetes.api import (
    ApiConflict,
    create_object,
    metadata_of,
    micro_time,
    patch_object,
    read_object,
    rejected,
)

log = logging.getLogger("bluegreen.kubernetes.lease")


class LeaseHandle:
    """Proof of holding the lease, as `ReleaseLock.hold` yields it (`ports.Fence`)."""

    def __init__(self, lock: LeaseLock, me: str, renewed_at: float) -> None:
        self._lock = lock
        self.me = me
        self.renewed_at = renewed_at  # monotonic, at the start of the last successful write
        self.lost: str | None = None

    def check(self) -> None:
        """Raise `ReleaseInProgress` unless the lease is still ours and fresh."""
        age = time.monotonic() - self.renewed_at
        if self.lost is None and age >= self._lock.seconds:
            self.lost = f"not renewed for {age:.0f} s (lease {self._lock.seconds} s)"
        if self.lost is None:
            holder = self._lock.holder()
            if holder != self.me:
                self.lost = f"now held by {holder or 'nobody'}"
        if self.lost is not None:
            raise ReleaseInProgress(
                f"lost the release lock ({self.lost}); not flipping traffic: another "
                "controller may be releasing"
            )

    def __str__(self) -> str:
        return self.me


class LeaseLock:
    """`ReleaseLock` on the Lease `R-release-lock`: taken when absent, released (no holder) or
    expired as seen on our clock; renewed every third of its duration while held."""

    def __init__(
        self,
        *,
        namespace: str,
        release: str,
        api_client: ApiClient,
        lease_seconds: int = 30,
        identity: str | None = None,
    ) -> None:
        self._namespace = namespace
        self._name = f"{release}-release-lock"
        self._coordination = client.CoordinationV1Api(api_client)
        self.seconds = lease_seconds
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # client-go's observedRecord/observedTime: the other holder's record, and when we
        # (monotonic) first saw it in that state.
        self._observed: tuple[tuple[Any, ...], float] | None = None

    @contextmanager
    def hold(self, holder: str) -> Iterator[LeaseHandle]:
        me = f"{self.identity}/{holder}"
        started = time.monotonic()
        self._acquire(me)
        handle = LeaseHandle(self, me, started)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew_until, args=(handle, stop), name=f"lease-{holder}", daemon=True
        )
        renewer.start()
        try:
            yield handle
        finally:
            stop.set()
            renewer.join(timeout=self.seconds / 3)
            self._release(me)

    def holder(self) -> str | None:
        """Who holds the lease now (one bounded read)."""
        lease = self._read(quick=True)
        return lease.spec.holder_identity if lease is not None and lease.spec else None

    # -- acquire -------------------------------------------------------------------------

    def _acquire(self, me: str) -> None:
        lease = self._read()
        if lease is None:
            self._create(me)
            return
        holder = lease.spec.holder_identity if lease.spec else None
        if holder and not self._expired(lease):
            raise ReleaseInProgress(self._held_message(lease))
        if holder:
            log.warning("taking over lease %s from %s: it expired", self._name, holder)
        transitions = (lease.spec.lease_transitions or 0) if lease.spec else 0
        now = micro_time(datetime.now(UTC))
        body = {
            "metadata": {"resourceVersion": metadata_of(lease).resource_version},
            "spec": {
                "holderIdentity": me,
                "acquireTime": now,
                "renewTime": now,
                "leaseDurationSeconds": self.seconds,
                "leaseTransitions": transitions + 1,
            },
        }
        try:
            self._patch(body, what="take")
        except ApiConflict:  # someone else took it between our read and our write
            raise ReleaseInProgress(self._held_message(self._read())) from None
        self._observed = None

    def _create(self, me: str) -> None:
        now = datetime.now(UTC)
        body = client.V1Lease(
            api_version="coordination.k8s.io/v1",
            kind="Lease",
            metadata=client.V1ObjectMeta(name=self._name),
            spec=client.V1LeaseSpec(
                holder_identity=me,
                acquire_time=now,
                renew_time=now,
                lease_duration_seconds=self.seconds,
                lease_transitions=0,
            ),
        )
        try:
            create_object(
                f"create Lease {self._name}",
                self._coordination.create_namespaced_lease,
                self._namespace,
                body,
            )
        except ApiConflict:  # another controller created it first: it holds the lock
            raise ReleaseInProgress(self._held_message(self._read())) from None
        except ApiException as exc:
            raise BackendUnavailable(rejected(f"create Lease {self._name}", exc)) from None

    def _expired(self, lease: client.V1Lease) -> bool:
        """Unchanged for its whole duration since we first saw it, on our monotonic clock."""
        spec = lease.spec or client.V1LeaseSpec()
        record = (spec.holder_identity, spec.renew_time, spec.acquire_time, spec.lease_transitions)
        now = time.monotonic()
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, now)
            return False
        return now - self._observed[1] >= (spec.lease_duration_seconds or self.seconds)

    def _held_message(self, lease: client.V1Lease | None) -> str:
        if lease is None or lease.spec is None or not lease.spec.holder_identity:
            return f"another release is in progress (lease {self._name} changed under us)"
        spec = lease.spec
        seconds = spec.lease_duration_seconds or self.seconds
        return (
            f"another release is in progress: lease {self._name} is held by "
            f"{spec.holder_identity} (it expires {seconds} s after its last renewal)"
        )

    # -- renew and release ---------------------------------------------------------------

    def _renew_until(self, handle: LeaseHandle, stop: threading.Event) -> None:
        while handle.lost is None and not stop.wait(self.seconds / 3):
            started = time.monotonic()
            try:
                if not self._renew(handle.me):
                    handle.lost = "taken over while held"
                    return
                handle.renewed_at = started
            except (DependencyUnavailable, ApiConflict) as exc:
                log.warning("could not renew lease %s (will retry): %s", self._name, exc)

    def _renew(self, me: str) -> bool:
        """Push renewTime forward with bounded requests; False when the lease is not ours."""
        lease = self._read(quick=True)
        holder = lease.spec.holder_identity if lease and lease.spec else None
        if lease is None or holder != me:
            log.error("lost lease %s to %s while holding it", self._name, holder or "nobody")
            return False
        body = {
            "metadata": {"resourceVersion": metadata_of(lease).resource_version},
            "spec": {"renewTime": micro_time(datetime.now(UTC))},
        }
        self._patch(body, what="renew", quick=True)
        return True

    def _release(self, me: str) -> None:
        """Clear the holder if it is still us; a failure only delays the next release."""
        try:
            lease = self._read()
            if lease is None or lease.spec is None or lease.spec.holder_identity != me:
                return
            body = {
                "metadata": {"resourceVersion": metadata_of(lease).resource_version},
                "spec": {"holderIdentity": None},
            }
            self._patch(body, what="release")
        except (DependencyUnavailable, ApiConflict) as exc:
            log.warning(
                "could not release lease %s; it expires in %d s: %s", self._name, self.seconds, exc
            )

    def _quick(self) -> dict[str, Any]:
        """One attempt that cannot outlast a third of the lease: a renewal is never late twice."""
        budget = max(self.seconds / 3, 1.0)
        return {"timeout": (min(5.0, budget), budget), "attempts": 1}

    def _read(self, *, quick: bool = False) -> client.V1Lease | None:
        return read_object(
            f"read Lease {self._name}",
            self._coordination.read_namespaced_lease,
            self._name,
            self._namespace,
            **(self._quick() if quick else {}),
        )

    def _patch(self, body: dict[str, Any], *, what: str, quick: bool = False) -> None:
        try:
            patch_object(
                f"{what} Lease {self._name}",
                self._coordination.patch_namespaced_lease,
                self._name,
                self._namespace,
                body,
                **(self._quick() if quick else {}),
            )
        except ApiException as exc:
            raise BackendUnavailable(rejected(f"{what} Lease {self._name}", exc)) from None
