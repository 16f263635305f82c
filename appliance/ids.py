"""The one source of random identifiers and secrets."""

from __future__ import annotations

import base64
import secrets

_DEVICE_LETTERS = "BCDFGHJKLMNPQRSTVWXZ"


def new_id() -> str:
    """16 random bytes in lowercase base32 without padding, starting with a letter (as Dex)."""
    while True:
        value = base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()
        if value[0].isalpha():
            return value


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret."""
    return secrets.token_urlsafe(nbytes)


def new_hmac_key() -> bytes:
    return secrets.token_bytes(32)


def new_user_code() -> str:
    """A device-flow user code `XXXX-XXXX` from Dex's alphabet."""
    chars = "".join(secrets.choice(_DEVICE_LETTERS) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"
