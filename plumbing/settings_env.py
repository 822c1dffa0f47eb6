"""The environment that rebuilds a pydantic settings object in a child process.

A part hands its settings to a child it starts (the launcher to a controller, a model
server to its preparing child) as the variables the child's own settings class reads, so
no place but the settings class spells a variable's name.
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings


def settings_environment(
    settings: BaseSettings, *, exclude: Collection[str] = ()
) -> dict[str, str]:
    """The variables that give a child exactly the fields set on `settings`, but `exclude`.

    Only fields that were set (from the environment or by keyword) are written: a child
    left to its own defaults keeps them. Nested models flatten with `__`, the
    `env_nested_delimiter` every part's settings use.
    """
    prefix = str(settings.model_config.get("env_prefix", ""))
    env: dict[str, str] = {}
    for name in sorted(settings.model_fields_set - set(exclude)):
        field = type(settings).model_fields[name]
        _flatten(field.alias or f"{prefix}{name.upper()}", getattr(settings, name), env)
    return env


def _flatten(key: str, value: object, env: dict[str, str]) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True)
    if isinstance(value, dict):
        for sub, item in value.items():
            _flatten(f"{key}__{str(sub).upper()}", item, env)
    elif isinstance(value, SecretStr):
        env[key] = value.get_secret_value()
    elif isinstance(value, bool):
        env[key] = "true" if value else "false"
    elif value is not None:
        env[key] = str(value)
