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


def new_totp_secret() -> str:
    """A TOTP secret: 20 random bytes (160 bits, RFC 4226 section 4), base32 without padding."""
    return base64.b32encode(secrets.token_bytes(20)).decode()


_RECOVERY_LETTERS = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32: no i, l, o, u


def new_recovery_code() -> str:
    """A second-factor recovery code `xxxxx-xxxxx` (50 random bits)."""
    chars = "".join(secrets.choice(_RECOVERY_LETTERS) for _ in range(10))
    return f"{chars[:5]}-{chars[5:]}"
