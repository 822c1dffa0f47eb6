"""The MLflow model registry behind the engine's `ModelRegistry` protocol.

Uses `MlflowClient` with aliases (never stages). MLflow's own HTTP retries are turned
down in `settings.py` so an unreachable server fails fast here, where tenacity retries
it a bounded number of times; "no such version" is permanent and never retried. With an
`s3://` artifact root read directly, the version's small files come from the object store
with the controller's own AWS variables: a store that does not answer or refuses them is
said so (`artifact_store.py`), not taken for a version without those files.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from tenacity import Retrying

from controller import artifact_store
from controller.domain import Color, ResolvedVersion, utcnow
from controller.errors import (
    ArtifactStoreUnavailable,
    RegistryUnavailable,
    VersionNotFound,
)
from plumbing.retry import retry_transient

log = logging.getLogger("bluegreen.registry")

_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})
SERVING_EXAMPLE = "serving_input_example.json"
MLMODEL = "MLmodel"
RELEASE_TAG = "bluegreen.release"
"""How the controller's release of a followed alias's version ended."""


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, RegistryUnavailable | ArtifactStoreUnavailable)


def _retrying() -> Retrying:
    return retry_transient(_unavailable, attempts=3, first_wait_s=0.3, log=log, what="MLflow")


class MlflowRegistry:
    """Resolves versions and aliases, reads serving examples, moves the serving alias."""

    def __init__(self, *, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        self._tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def resolve(self, model: str, *, version: str | None, alias: str | None) -> ResolvedVersion:
        return _retrying()(self._resolve_once, model, version=version, alias=alias)

    def _resolve_once(
        self, model: str, *, version: str | None, alias: str | None
    ) -> ResolvedVersion:
        from mlflow.exceptions import MlflowException, RestException

        if (version is None) == (alias is None):
            raise VersionNotFound("give exactly one of version or alias")
        what = f"models:/{model}/{version}" if version else f"models:/{model}@{alias}"
        try:
            if version is not None:
                found = self._client.get_model_version(model, version)
            elif alias is not None:
                found = self._client.get_model_version_by_alias(model, alias)
        except RestException as exc:
            if exc.error_code in _NOT_FOUND_CODES:
                raise VersionNotFound(f"{what} is not in the registry") from None
            raise RegistryUnavailable(f"registry error for {what}: {exc.message}") from None
        except MlflowException as exc:
            raise RegistryUnavailable(f"MLflow unreachable: {_first_line(exc)}") from None
        return ResolvedVersion(
            model=model,
            version=str(found.version),
            run_id=found.run_id,
            source=found.source,
            serving_input_example=self._artifact_text(model, str(found.version), SERVING_EXAMPLE),
            signature_inputs=self._signature_inputs(model, str(found.version)),
        )

    def _signature_inputs(self, model: str, version: str) -> str | None:
        """The `inputs` JSON of the version's MLmodel signature (the schema gate reads it)."""
        import yaml

        text = self._artifact_text(model, version, MLMODEL)
        try:
            mlmodel = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            return None
        signature = mlmodel.get("signature") if isinstance(mlmodel, dict) else None
        inputs = signature.get("inputs") if isinstance(signature, dict) else None
        return inputs if isinstance(inputs, str) else None

    def _artifact_text(self, model: str, version: str, name: str) -> str | None:
        """One small file of the version's model directory, or None when it has none.

        Raises `ArtifactStoreUnavailable` or `ArtifactStoreRefused` when the store, not the
        file, is the problem."""
        import mlflow
        from mlflow.exceptions import MlflowException

        what = f"{name} of models:/{model}/{version}"
        try:
            root = self._client.get_model_version_download_uri(model, version)
            with tempfile.TemporaryDirectory(prefix="bluegreen-artifact-") as tmp:
                path = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{root.rstrip('/')}/{name}",
                    dst_path=tmp,
                    tracking_uri=self._tracking_uri,
                )
                return Path(path).read_text()
        except Exception as exc:
            store_error = artifact_store.store_error(exc, what=what)
            if store_error is not None:
                raise store_error from None
            if not isinstance(exc, MlflowException | OSError):
                raise
            log.info("models:/%s/%s has no %s: %s", model, version, name, _first_line(exc))
            return None

    def mark_live(self, model: str, *, version: str, alias: str, color: Color) -> None:
        _retrying()(self._mark_live_once, model, version=version, alias=alias, color=color)

    def _mark_live_once(self, model: str, *, version: str, alias: str, color: Color) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.set_registered_model_alias(model, alias, version)
            self._client.set_model_version_tag(model, version, "bluegreen.color", color)
            self._client.set_model_version_tag(model, version, "bluegreen.promoted_at", utcnow())
        except MlflowException as exc:
            raise RegistryUnavailable(
                f"could not move alias {alias!r}: {_first_line(exc)}"
            ) from None

    def alias_target(self, model: str, alias: str) -> tuple[str, str | None] | None:
        return _retrying()(self._alias_target_once, model, alias)

    def _alias_target_once(self, model: str, alias: str) -> tuple[str, str | None] | None:
        from mlflow.exceptions import MlflowException, RestException

        try:
            found = self._client.get_model_version_by_alias(model, alias)
        except RestException as exc:
            if exc.error_code in _NOT_FOUND_CODES:
                return None
            raise RegistryUnavailable(
                f"registry error for {model}@{alias}: {exc.message}"
            ) from None
        except MlflowException as exc:
            raise RegistryUnavailable(f"MLflow unreachable: {_first_line(exc)}") from None
        return str(found.version), (found.tags or {}).get(RELEASE_TAG)

    def tag_release(self, model: str, *, version: str, outcome: str) -> None:
        _retrying()(self._tag_release_once, model, version=version, outcome=outcome)

    def _tag_release_once(self, model: str, *, version: str, outcome: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            # MLflow caps tag values at 5000 characters; a reason is one line, but be sure.
            self._client.set_model_version_tag(model, version, RELEASE_TAG, outcome[:5000])
        except MlflowException as exc:
            raise RegistryUnavailable(f"could not tag v{version}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = (getattr(exc, "message", None) or str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
