"""The CLI's own configuration, read from the environment (prefix `BLUEGREEN_`).

The local stack's ports live in `stack.StackPorts`; what belongs to the controller (the
serving alias, the stage timeout) is read from `controller.settings`, never repeated here.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BLUEGREEN_", extra="ignore", populate_by_name=True
    )

    controller: str = "http://127.0.0.1:8080"
    """The controller the `switch`, `rollback` and `status` commands talk to."""
    token: SecretStr | None = None
    """The controller's API token, sent as `Authorization: Bearer ...` on mutating calls."""

    tracking_uri: str | None = Field(default=None, alias="MLFLOW_TRACKING_URI")
    """`bluegreen up` and `demo`: an MLflow server to use instead of starting one."""

    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token else None
