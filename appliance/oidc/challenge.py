"""OAuth errors that carry an HTTP authentication challenge (RFC 6749 5.2, RFC 6750 3)."""

from __future__ import annotations

from appliance.errors import OAuthError


class ChallengeError(OAuthError):
    """An OAuthError answered with a `WWW-Authenticate` header (`challenge`, "" for none)."""

    def __init__(self, error: str, description: str = "", status: int = 401, challenge: str = "") -> None:
        super().__init__(error, description, status)
        self.challenge = challenge
