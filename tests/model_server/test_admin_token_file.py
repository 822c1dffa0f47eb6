"""The model server's admin token read from a mounted file (`MODEL_SERVER_ADMIN_TOKEN_FILE`).

The chart mounts only the `model-server-token` key of the token Secret and points this
setting at it, so the token is not in the pod's environment.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from model_server.settings import ModelServerSettings


@pytest.fixture(autouse=True)
def pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_NAME", "iris")
    monkeypatch.setenv("MODEL_VERSION", "1")
    monkeypatch.delenv("MODEL_SERVER_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("MODEL_SERVER_ADMIN_TOKEN_FILE", raising=False)


def test_admin_token_comes_from_its_file(tmp_path, monkeypatch):
    path = tmp_path / "model-server-token"
    path.write_text("ms-secret\n")
    monkeypatch.setenv("MODEL_SERVER_ADMIN_TOKEN_FILE", str(path))
    settings = ModelServerSettings()  # type: ignore[call-arg]  # the required fields come from the env
    assert settings.admin_token == "ms-secret"
    assert "ms-secret" not in repr(settings)


def test_admin_token_from_the_environment_still_works(monkeypatch):
    monkeypatch.setenv("MODEL_SERVER_ADMIN_TOKEN", "from-env")
    settings = ModelServerSettings()  # type: ignore[call-arg]
    assert settings.admin_token == "from-env"


def test_unset_leaves_the_admin_calls_open_as_before():
    assert ModelServerSettings().admin_token is None  # type: ignore[call-arg]


def test_both_the_token_and_its_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "model-server-token"
    path.write_text("from-file")
    monkeypatch.setenv("MODEL_SERVER_ADMIN_TOKEN", "from-env")
    monkeypatch.setenv("MODEL_SERVER_ADMIN_TOKEN_FILE", str(path))
    with pytest.raises(ValidationError, match="are both set"):
        ModelServerSettings()  # type: ignore[call-arg]


def test_a_missing_file_fails_instead_of_opening_the_admin_calls(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_SERVER_ADMIN_TOKEN_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValidationError, match="MODEL_SERVER_ADMIN_TOKEN_FILE: cannot read"):
        ModelServerSettings()  # type: ignore[call-arg]
