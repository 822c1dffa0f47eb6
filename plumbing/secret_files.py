"""Secrets read from files: the `*_FILE` variant of a token setting.

A Kubernetes Secret mounted as a volume (or a Docker secret) is a file; reading it from
there keeps the token out of the process environment, which `kubectl describe`, crash
dumps and child processes can see. Each part's settings call this from their one
validator, so the rest of the part sees only the resolved token.
"""

from __future__ import annotations

from pathlib import Path


def secret_from_file(direct: str | None, path: Path | None, *, setting: str) -> str | None:
    """The secret given directly or in the file at `path`; never both.

    Surrounding whitespace (the newline `echo` and editors add) is dropped. A file that
    cannot be read or holds nothing is an error rather than "no token": an unset token
    leaves the mutating endpoints open, so a mount gone wrong must not do that silently.
    The errors name the setting and the path, never the secret.
    """
    if path is None:
        return direct
    if direct:
        raise ValueError(f"{setting} and {setting}_FILE are both set: give one")
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{setting}_FILE: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        # the codec's message quotes a byte of the file: say only what is wrong
        raise ValueError(f"{setting}_FILE: {path} is not UTF-8 text") from None
    if not value:
        raise ValueError(f"{setting}_FILE: {path} is empty")
    return value
