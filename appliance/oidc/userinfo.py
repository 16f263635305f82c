"""The UserInfo endpoint (OIDC Core 5.3): a bearer access token in, its verified claims out."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from appliance.keys.errors import InvalidToken, KeysNotLoaded
from appliance.oidc.challenge import ChallengeError
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.revocation import claims_revoked

log = logging.getLogger("portico.oidc.userinfo")

_CHALLENGE = 'Bearer error="invalid_token"'


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 6750 2.1)."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        # No credentials at all: a bare challenge, no error code (RFC 6750 3.1).
        raise ChallengeError("invalid_request", "Bearer token required.", 401, "Bearer")
    return token


async def userinfo(deps: Deps, snap: Snapshot, authorization: str) -> dict[str, Any]:
    """The claims of the access token, as Dex returns them; invalid, expired or revoked: 401
    invalid_token."""
    token = bearer_token(authorization)
    try:
        claims = deps.keys.verify(token, now=deps.clock.now())
    except (InvalidToken, KeysNotLoaded) as exc:
        log.info("userinfo: token rejected: %s", exc)
        raise ChallengeError("invalid_token", "Invalid bearer token.", 401, _CHALLENGE) from None
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not hmac.compare_digest(issuer.encode(), snap.issuer.url.encode()):
        log.info("userinfo: token from another issuer")
        raise ChallengeError("invalid_token", "Invalid bearer token.", 401, _CHALLENGE)
    if await claims_revoked(deps, claims):
        log.info("userinfo: token revoked")
        raise ChallengeError("invalid_token", "Invalid bearer token.", 401, _CHALLENGE)
    return claims
