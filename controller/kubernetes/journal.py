"""`JournalStore` in the ConfigMap `R-journal`: the operation journal on Kubernetes."""

from __future__ import annotations

import logging
import threading

from kubernetes import client
from kubernetes.client import ApiClient, ApiException
from pydantic import ValidationError

from controller.domain import Journal
from controller.errors import JournalUnavailable
from controller.kubernetes.api import (
    REQUEST_TIMEOUT,
    ApiConflict,
    call_api,
    metadata_of,
    patch_object,
    read_object,
    rejected,
    retry_on_conflict,
)

log = logging.getLogger("bluegreen.kubernetes.journal")

JOURNAL_KEY = "journal.json"


class ConfigMapJournal:
    """`JournalStore` in the ConfigMap `R-journal`, key `journal.json`.

    Each save is one patch (atomic) conditional on the resourceVersion we last saw. A
    conflict means another writer slipped in (the release lock should prevent it): we log
    it, re-read and re-apply our whole document, as the lock holder's view wins.
    """

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
        text = journal.model_dump_json()
        with self._guard:
            try:
                retry_on_conflict()(self._write, text)
            except ApiConflict:
                raise JournalUnavailable(
                    f"could not save the journal: ConfigMap {self._name} kept changing (409)"
                ) from None

    def _write(self, text: str) -> None:
        if self._revision is None:
            self._revision = self._current_revision()
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
            log.warning("journal %s changed under us; re-applying ours", self._name)
            self._revision = None  # re-read before the next attempt
            raise
        except ApiException as exc:
            if exc.status == 404:  # deleted under us: put it back with our document
                self._revision = None
                self._revision = metadata_of(self._create_raw(text)).resource_version
                return
            raise JournalUnavailable(rejected(f"save ConfigMap {self._name}", exc)) from None
        self._revision = metadata_of(saved).resource_version

    def _current_revision(self) -> str | None:
        config_map = self._read()
        return None if config_map is None else metadata_of(config_map).resource_version

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
            return self._create_raw(journal.model_dump_json())
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
            return call_api(
                f"create ConfigMap {self._name}",
                lambda: self._core.create_namespaced_config_map(
                    self._namespace, body, _request_timeout=REQUEST_TIMEOUT
                ),
                unavailable=JournalUnavailable,
            )
        except ApiException as exc:
            raise JournalUnavailable(rejected(f"create ConfigMap {self._name}", exc)) from None
