"""Local router configuration, read once from the environment (prefix `ROUTER_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from plumbing.connections import ConnectionLimits


class RouterSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ROUTER_", extra="ignore", env_nested_delimiter="__"
    )

    blue_url: str = "http://127.0.0.1:8001"
    """Upstream of the blue color."""
    green_url: str = "http://127.0.0.1:8002"
    """Upstream of the green color."""
    initial_color: Literal["blue", "green"] = "blue"
    """Live color when no state file exists yet."""
    state_file: Path | None = None
    """Where the live color survives a router restart."""
    admin_token: SecretStr | None = None
    """Bearer token required to flip the route."""
    max_body_bytes: int = 8 * 1024 * 1024
    """Bodies above this are refused with 413 before reaching a model server."""
    upstream_timeout_s: float = 30.0
    """Per-request upstream timeout."""
    max_connections: int = 256
    """Pooled keep-alive connections per color."""
    limits: ConnectionLimits = Field(default_factory=ConnectionLimits)
    """Client connection limits (`ROUTER_LIMITS__HEAD_TIMEOUT_S`, ...)."""

    @field_validator("blue_url", "green_url")
    @classmethod
    def _plain_http(cls, url: str) -> str:
        # The colors are model servers on this machine: plain HTTP to a host and port.
        if not url.startswith("http://") or url.rstrip("/").count("/") != 2:
            raise ValueError(f"{url!r} is not http://HOST:PORT")
        return url.rstrip("/")
