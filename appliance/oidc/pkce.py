"""Proof Key for Code Exchange (RFC 7636): checking the shape of challenges and verifiers, computing
challenges and checking verifiers against them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Collection

from appliance.errors import OAuthError
from appliance.store.models import PKCE

S256 = "S256"
PLAIN = "plain"
# RFC 7636 4.1: a verifier (and so a plain challenge) is 43 to 128 unreserved characters; 4.2: an S256
# challenge is the unpadded base64url of a SHA-256 digest, 43 characters. Anything else can never match.
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_UNRESERVED = "A-Z a-z 0-9 - . _ ~"


def check_challenge(challenge: str, method: str, supported: Collection[str]) -> PKCE:
    """The PKCE part of an authorization (or device) request, RFC 7636 4.3-4.4: `method` is the
    code_challenge_method parameter ("" = plain). OAuthError invalid_request for an unsupported method
    or a malformed challenge; no challenge means no PKCE (the method alone is ignored, as Dex does)."""
    if not challenge:
        return PKCE()
    method = method or PLAIN
    if method not in supported:
        raise OAuthError("invalid_request", f"Unsupported PKCE challenge method ({json.dumps(method)}).")
    if method == S256 and not _S256_CHALLENGE.fullmatch(challenge):
        raise OAuthError("invalid_request", "Invalid code_challenge: with S256 it is the base64url SHA-256 "
                         "of the verifier, 43 characters of A-Z a-z 0-9 - _ (RFC 7636 4.2).")
    if method == PLAIN and not _VERIFIER.fullmatch(challenge):
        raise OAuthError("invalid_request", "Invalid code_challenge: with plain it is the verifier, 43 to "
                         f"128 characters of {_UNRESERVED} (RFC 7636 4.1).")
    return PKCE(challenge, method)


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
    a verifier without a challenge is invalid_request, a challenge without a verifier invalid_grant.
    A verifier of the wrong shape (RFC 7636 4.1) is invalid_request, before any comparison."""
    if verifier and pkce.code_challenge and not _VERIFIER.fullmatch(verifier):
        raise OAuthError("invalid_request", f"Invalid code_verifier: 43 to 128 characters of {_UNRESERVED} "
                         "(RFC 7636 4.1).")
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
