"""Proof Key for Code Exchange (RFC 7636): computing and checking code challenges."""

from __future__ import annotations

import base64
import hashlib
import hmac

from appliance.errors import OAuthError
from appliance.store.models import PKCE

S256 = "S256"
PLAIN = "plain"


def code_challenge(verifier: str, method: str) -> str:
    """The challenge a verifier answers (RFC 7636 4.2); ValueError for an unknown method."""
    if method == S256:
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    if method == PLAIN:
        return verifier
    raise ValueError(f"unknown code challenge method {method!r}")


def verify_pkce(verifier: str, pkce: PKCE) -> None:
    """Check a code_verifier against the challenge stored at /auth (RFC 7636 4.6), as Dex answers:
    a verifier without a challenge is invalid_request, a challenge without a verifier invalid_grant."""
    if verifier and pkce.code_challenge:
        try:
            expected = code_challenge(verifier, pkce.code_challenge_method or PLAIN)
        except ValueError:
            raise OAuthError("server_error", status=500) from None
        if not hmac.compare_digest(expected.encode(), pkce.code_challenge.encode()):
            raise OAuthError("invalid_grant", "Invalid code_verifier.")
    elif verifier:
        raise OAuthError("invalid_request", "No PKCE flow started. Cannot check code_verifier.")
    elif pkce.code_challenge:
        raise OAuthError("invalid_grant", "Expecting parameter code_verifier in PKCE flow.")
