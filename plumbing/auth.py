"""The one bearer-token check, used by every part's mutating endpoints."""

from __future__ import annotations

import hmac


def bearer_matches(authorization: str | bytes | None, token: str | None) -> bool:
    """Whether an `Authorization` header carries `token`; always true when no token is set.

    Compared in constant time, so a caller learns nothing from how long a refusal took.
    """
    if token is None:
        return True
    given = authorization.encode("latin-1") if isinstance(authorization, str) else authorization
    return hmac.compare_digest(given or b"", f"Bearer {token}".encode())


def bearer_header(token: str | None) -> dict[str, str]:
    """Headers a client sends to authenticate with `token` (none when it is unset)."""
    return {"Authorization": f"Bearer {token}"} if token else {}
