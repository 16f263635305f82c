"""Errors of the signing-key layer; callers map them to protocol errors."""

from __future__ import annotations

from appliance.errors import PorticoError


class InvalidToken(PorticoError):
    """A JWT failed verification: malformed, unknown key, wrong algorithm, bad signature or expired.

    The message names the reason only, never the token.
    """


class KeysNotLoaded(PorticoError):
    """Signing or verification was asked for before any keys were loaded from storage."""
