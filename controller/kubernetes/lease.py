"""`ReleaseLock` on a coordination.k8s.io/v1 Lease: one release at a time across controllers."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from controller.errors import BackendUnavailable, DependencyUnavailable, ReleaseInProgress
from controller.kubernetes.api import (
    REQUEST_TIMEOUT,
    ApiConflict,
    call_api,
    metadata_of,
    micro_time,
    patch_object,
    read_object,
    rejected,
)

log = logging.getLogger("bluegreen.kubernetes.lease")


class LeaseLock:
    """`ReleaseLock` on the coordination.k8s.io/v1 Lease `R-release-lock`.

    Taken when absent, released (empty holder) or expired (renewTime + duration in the
    past: a dead controller does not hold it forever); renewed in the background while
    held; released on exit. Every take-over is conditional on the resourceVersion read,
    so of two controllers racing for it exactly one wins.
    """

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
        self._seconds = lease_seconds
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    @contextmanager
    def hold(self, holder: str) -> Iterator[str]:
        me = f"{self.identity}/{holder}"
        self._acquire(me)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew_until, args=(me, stop), name=f"lease-{holder}", daemon=True
        )
        renewer.start()
        try:
            yield me
        finally:
            stop.set()
            renewer.join(timeout=REQUEST_TIMEOUT[1])
            self._release(me)

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
                "leaseDurationSeconds": self._seconds,
                "leaseTransitions": transitions + 1,
            },
        }
        try:
            self._patch(body, what="take")
        except ApiConflict:  # someone else took it between our read and our write
            raise ReleaseInProgress(self._held_message(self._read())) from None

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
                lease_duration_seconds=self._seconds,
                lease_transitions=0,
            ),
        )
        try:
            call_api(
                f"create Lease {self._name}",
                lambda: self._coordination.create_namespaced_lease(
                    self._namespace, body, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiConflict:  # another controller created it first: it holds the lock
            raise ReleaseInProgress(self._held_message(self._read())) from None
        except ApiException as exc:
            raise BackendUnavailable(rejected(f"create Lease {self._name}", exc)) from None

    def _expired(self, lease: client.V1Lease) -> bool:
        spec = lease.spec or client.V1LeaseSpec()
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:  # held without any time: we cannot tell when it ends
            return True
        seconds = spec.lease_duration_seconds or self._seconds
        return renewed + timedelta(seconds=seconds) < datetime.now(UTC)

    def _held_message(self, lease: client.V1Lease | None) -> str:
        if lease is None or lease.spec is None or not lease.spec.holder_identity:
            return f"another release is in progress (lease {self._name} changed under us)"
        spec = lease.spec
        renewed = spec.renew_time or spec.acquire_time
        until = (
            renewed + timedelta(seconds=spec.lease_duration_seconds or self._seconds)
            if renewed
            else None
        )
        return (
            f"another release is in progress: lease {self._name} is held by "
            f"{spec.holder_identity}" + (f" until {until.isoformat()}" if until else "")
        )

    # -- renew and release ---------------------------------------------------------------

    def _renew_until(self, me: str, stop: threading.Event) -> None:
        while not stop.wait(self._seconds / 3):
            try:
                if not self._renew(me):
                    return
            except (DependencyUnavailable, ApiConflict) as exc:
                log.warning("could not renew lease %s (will retry): %s", self._name, exc)

    def _renew(self, me: str) -> bool:
        """Push renewTime forward; False when the lease is no longer ours."""
        lease = self._read()
        holder = lease.spec.holder_identity if lease and lease.spec else None
        if lease is None or holder != me:
            log.error("lost lease %s to %s while holding it", self._name, holder or "nobody")
            return False
        body = {
            "metadata": {"resourceVersion": metadata_of(lease).resource_version},
            "spec": {"renewTime": micro_time(datetime.now(UTC))},
        }
        self._patch(body, what="renew")
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
                "could not release lease %s; it expires in %d s: %s", self._name, self._seconds, exc
            )

    def _read(self) -> client.V1Lease | None:
        return read_object(
            f"read Lease {self._name}",
            self._coordination.read_namespaced_lease,
            self._name,
            self._namespace,
        )

    def _patch(self, body: dict[str, Any], *, what: str) -> None:
        try:
            patch_object(
                f"{what} Lease {self._name}",
                self._coordination.patch_namespaced_lease,
                self._name,
                self._namespace,
                body,
            )
        except ApiException as exc:
            raise BackendUnavailable(rejected(f"{what} Lease {self._name}", exc)) from None
