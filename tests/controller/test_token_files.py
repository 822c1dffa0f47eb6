"""The controller's tokens read from mounted files (`BLUEGREEN_TOKEN_FILE`, ...).

The chart mounts the token Secret as files and points these settings at them, so the
tokens never sit in the pod's environment. Read through the real environment, as the
controller's process does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.settings import ControllerSettings

TOKEN_ENVS = (
    "BLUEGREEN_TOKEN",
    "BLUEGREEN_TOKEN_FILE",
    "BLUEGREEN_MODEL_SERVER_TOKEN",
    "BLUEGREEN_MODEL_SERVER_TOKEN_FILE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TOKEN_ENVS:
        monkeypatch.delenv(name, raising=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_tokens_come_from_their_files(tmp_path, monkeypatch):
    monkeypatch.setenv("BLUEGREEN_TOKEN_FILE", str(write(tmp_path / "token", "api-secret\n")))
    monkeypatch.setenv(
        "BLUEGREEN_MODEL_SERVER_TOKEN_FILE", str(write(tmp_path / "ms", "ms-secret"))
    )
    settings = ControllerSettings()
    assert settings.token_value() == "api-secret"  # the trailing newline is not the token
    assert settings.model_server_token_value() == "ms-secret"


def test_environment_tokens_still_work_without_files(monkeypatch):
    monkeypatch.setenv("BLUEGREEN_TOKEN", "from-env")
    settings = ControllerSettings()
    assert settings.token_value() == "from-env"
    assert settings.model_server_token_value() is None


def test_both_a_token_and_its_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("BLUEGREEN_TOKEN", "from-env")
    monkeypatch.setenv("BLUEGREEN_TOKEN_FILE", str(write(tmp_path / "token", "from-file")))
    with pytest.raises(ValidationError, match="BLUEGREEN_TOKEN and BLUEGREEN_TOKEN_FILE"):
        ControllerSettings()


@pytest.mark.parametrize("content", [None, "", " \n"], ids=["missing", "empty", "blank"])
def test_an_unusable_token_file_fails_instead_of_opening_the_api(tmp_path, monkeypatch, content):
    """An unset token leaves the API open: a broken mount must stop the start-up instead."""
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("BLUEGREEN_MODEL_SERVER_TOKEN_FILE", str(path))
    with pytest.raises(ValidationError, match="BLUEGREEN_MODEL_SERVER_TOKEN_FILE") as raised:
        ControllerSettings()
    assert str(path) in str(raised.value)


def test_the_error_never_quotes_the_file(tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_bytes(b"\xffsecret-bytes")
    monkeypatch.setenv("BLUEGREEN_TOKEN_FILE", str(path))
    with pytest.raises(ValidationError) as raised:
        ControllerSettings()
    message = str(raised.value)
    assert "not UTF-8" in message
    assert "secret-bytes" not in message and "xff" not in message
