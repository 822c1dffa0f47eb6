"""Model-server configuration, read once from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from plumbing.connections import ConnectionLimits
from plumbing.secret_files import secret_from_file


class ModelServerSettings(BaseSettings):
    """What one color serves and the limits it enforces."""

    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", populate_by_name=True, env_nested_delimiter="__"
    )

    tracking_uri: str = Field(default="http://127.0.0.1:5000", alias="MLFLOW_TRACKING_URI")
    """MLflow tracking server holding the model registry."""
    model_name: str = Field(alias="MODEL_NAME", min_length=1)
    """Registered model name."""
    model_version: str = Field(alias="MODEL_VERSION")
    """The pinned registry version: a number, never a stage or an alias."""
    color: Literal["blue", "green"] = Field(default="blue", alias="SERVING_COLOR")
    """Which color this process serves as; reported in headers and metrics."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, alias="MODEL_SERVER_MAX_BODY_BYTES", gt=0)
    """Request bodies above this size are refused with 413."""
    max_rows: int = Field(default=10_000, alias="MODEL_SERVER_MAX_ROWS", gt=0)
    """Rows one request may carry; more is refused with 413 (one request must not stall all)."""
    max_batch_rows: int = Field(default=256, alias="MODEL_SERVER_MAX_BATCH_ROWS", gt=0)
    """Upper bound on rows merged from concurrent requests into one predict call."""
    load_retry_seconds: float = Field(default=30.0, alias="MODEL_SERVER_LOAD_RETRY_SECONDS", ge=0)
    """How long to keep retrying a registry that is unreachable before giving up."""
    admin_token: str | None = Field(default=None, alias="MODEL_SERVER_ADMIN_TOKEN", repr=False)
    """Bearer token of the admin calls (`/serving-state`, `/shadow/*`); unset leaves them open."""
    admin_token_file: Path | None = Field(default=None, alias="MODEL_SERVER_ADMIN_TOKEN_FILE")
    """`admin_token` read from this file instead (a mounted Secret; the chart's way)."""
    cache_dir: str | None = Field(default=None, alias="MODEL_SERVER_CACHE_DIR")
    """The local model cache (`model_cache.py`): prepared versions, reused by re-pins,
    rollbacks and restarts. Unset: `$XDG_CACHE_HOME/bluegreen/models` (`~/.cache/...`), or a
    fresh temp dir when that is not writable. Must be private to the model server."""
    user_cache_dir: str | None = Field(default=None, alias="XDG_CACHE_HOME")
    """The user's cache directory (XDG): the default home of the model cache."""
    prepare_socket: Path | None = Field(default=None, alias="MODEL_SERVER_PREPARE_SOCKET")
    """A warm preparer's Unix socket (`prepare_service.py`; the one-machine stack runs one):
    a cache miss is prepared there, with MLflow and skops already imported, and in a child
    process of this server's own when nothing answers on it."""
    serving_model_config: str = Field(default="", alias="SERVING_MODEL_CONFIG")
    """MLflow's model config for its scoring code (MLflow reads it itself); part of the model
    cache's fingerprint, so a changed config prepares the version again."""
    limits: ConnectionLimits = Field(default_factory=ConnectionLimits, alias="MODEL_SERVER_LIMITS")
    """Client connection limits (`MODEL_SERVER_LIMITS__HEAD_TIMEOUT_S`, ...)."""

    @field_validator("model_version")
    @classmethod
    def _version_is_a_number(cls, value: str) -> str:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(
                f"MODEL_VERSION must be a registry version number, got {value!r} "
                "(stages and aliases are not allowed: pin the version)"
            )
        return str(int(value))

    @model_validator(mode="after")
    def _read_admin_token_file(self) -> Self:
        self.admin_token = secret_from_file(
            self.admin_token, self.admin_token_file, setting="MODEL_SERVER_ADMIN_TOKEN"
        )
        return self
