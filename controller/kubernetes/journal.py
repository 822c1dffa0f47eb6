"""`JournalStore` in the ConfigMap `R-journal`: the operation journal on Kubernetes.

Every save is one patch conditional on the revision we last saw. A 409 means another
controller wrote since (one whose lease lapsed, or one we never heard of): we re-read its
journal and merge, keeping its operations beside ours, instead of writing over them. The
document is kept under the 1 MiB object limit by `journal_size`.
"""

from __future__ import annotations

import logging
import threading

from kubernetes import client
from kubernetes.client import ApiClient, ApiException
from pydantic import ValidationError

from controller.domain import Journal
from controller.errors import JournalUnavailable
from controller.kubernetes.api import (
    ApiConflict,
    create_object,
    metadata_of,
    patch_object,
    read_object,
    rejected,
    retry_on_conflict,
)
from controller.kubernetes.journal_size import journal_text

log = logging.getLogger("bluegreen.kubernetes.journal")

JOURNAL_KEY = "journal.json"


class ConfigMapJournal:
    """`JournalStore` in the ConfigMap `R-journal`, key `journal.json`."""

    def __init__(self, *, namespace: str, release: str, api_client: ApiClient) -> None:
        self._namespace = namespace
        self._name = f"{release}-journal"
        self._core = client.CoreV1Api(api_client)
        self._revision: str | None = None
        self._guard = threading.Lock()  # the revision we hold is per store, not per thread

    def load(self, model: str) -> Journal:
        with self._guard:
            config_map = self._read() or self._create(Journal(model=model))
            self._revision = metadata_of(config_map).resource_version
        text = (config_map.data or {}).get(JOURNAL_KEY)
        if not text:
            return Journal(model=model)
        try:
            journal = Journal.model_validate_json(text)
        except ValidationError as exc:
            raise JournalUnavailable(
                f"ConfigMap {self._name} holds an unreadable {JOURNAL_KEY}: {exc.errors()[:1]}"
            ) from None
        if journal.model != model:
            log.warning(
                "journal %s was kept for model %r, not %r: starting a new one",
                self._name,
                journal.model,
                model,
            )
            return Journal(model=model)
        return journal

    def save(self, journal: Journal) -> None:
        with self._guard:
            try:
                retry_on_conflict()(self._merge_and_write, journal)
            except ApiConflict:
                raise JournalUnavailable(
                    f"could not save the journal: ConfigMap {self._name} kept changing (409)"
                ) from None

    def _merge_and_write(self, journal: Journal) -> None:
        if self._revision is None:  # after a conflict: someone else wrote; keep theirs too
            stored = self._read()
            self._revision = None if stored is None else metadata_of(stored).resource_version
            journal = merged(
                journal, _parse((stored.data or {}).get(JOURNAL_KEY) if stored else None)
            )
        self._write(journal_text(journal))

    def _write(self, text: str) -> None:
        body = {
            "metadata": {"resourceVersion": self._revision},
            "data": {JOURNAL_KEY: text},
        }
        try:
            saved = patch_object(
                f"save the journal in ConfigMap {self._name}",
                self._core.patch_namespaced_config_map,
                self._name,
                self._namespace,
                body,
                unavailable=JournalUnavailable,
            )
        except ApiConflict:
            log.warning("journal %s changed under us; merging with the stored one", self._name)
            self._revision = None  # re-read before the next attempt
            raise
        except ApiException as exc:
            if exc.status == 404:  # deleted under us: put it back with our document
                self._revision = None
                self._revision = metadata_of(self._create_raw(text)).resource_version
                return
            raise JournalUnavailable(rejected(f"save ConfigMap {self._name}", exc)) from None
        self._revision = metadata_of(saved).resource_version

    def _read(self) -> client.V1ConfigMap | None:
        return read_object(
            f"read ConfigMap {self._name}",
            self._core.read_namespaced_config_map,
            self._name,
            self._namespace,
            unavailable=JournalUnavailable,
        )

    def _create(self, journal: Journal) -> client.V1ConfigMap:
        """Create the ConfigMap; if another controller just did, read theirs."""
        try:
            return self._create_raw(journal_text(journal))
        except ApiConflict:
            existing = self._read()
            if existing is None:
                raise JournalUnavailable(
                    f"ConfigMap {self._name} both exists and does not (409, then 404)"
                ) from None
            return existing

    def _create_raw(self, text: str) -> client.V1ConfigMap:
        body = client.V1ConfigMap(
            api_version="v1",
            kind="ConfigMap",
            metadata=client.V1ObjectMeta(
                name=self._name, labels={"app.kubernetes.io/component": "journal"}
            ),
            data={JOURNAL_KEY: text},
        )
        try:
            return create_object(
                f"create ConfigMap {self._name}",
                self._core.create_namespaced_config_map,
                self._namespace,
                body,
                unavailable=JournalUnavailable,
            )
        except ApiException as exc:
            raise JournalUnavailable(rejected(f"create ConfigMap {self._name}", exc)) from None


def _parse(text: str | None) -> Journal | None:
    try:
        return Journal.model_validate_json(text) if text else None
    except ValidationError:
        return None


def merged(ours: Journal, stored: Journal | None) -> Journal:
    """Ours (we hold the lock: our running operation wins), plus every finished operation
    only the stored journal knows, in the order they started. When it knows operations that
    started after all of ours, it saw later flips: its rollback point is the newer one."""
    if stored is None or stored.model != ours.model:
        return ours
    known = {op.id for op in ours.history}
    if ours.current is not None:
        known.add(ours.current.id)
    theirs = [op for op in stored.history if op.id not in known]
    if not theirs:
        return ours
    log.warning("journal: keeping %d operation(s) another controller recorded", len(theirs))
    history = sorted([*theirs, *ours.history], key=lambda op: op.started_at)
    newest_ours = max((op.started_at for op in ours.history), default="")
    previous = (
        stored.previous if max(op.started_at for op in theirs) > newest_ours else ours.previous
    )
    return ours.model_copy(update={"history": history, "previous": previous})
