"""Token introspection (RFC 7662) at /token/introspect, for access and refresh tokens."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import Any

from appliance.keys.errors import InvalidToken, KeysNotLoaded
from appliance.oidc.challenge import ChallengeError
from appliance.oidc.clientauth import authenticate_client, parse_client_credentials
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.refreshstore import read_steps, secret_matches
from appliance.oidc.revocation import claims_revoked
from appliance.oidc.tokens import decode_refresh_token, encode_sub
from appliance.store.models import NEVER, Client, RefreshToken

log = logging.getLogger("portico.oidc.introspect")

INACTIVE: dict[str, object] = {"active": False}
# Identity claims passed through under "ext", as Dex's introspection does.
_EXTRA = ("email", "email_verified", "groups", "name", "preferred_username", "federated_claims")


async def caller(deps: Deps, snap: Snapshot, form: Mapping[str, str], authorization: str) -> Client | None:
    """The authenticated client calling, or None when unauthenticated calls are allowed and none came.
    A public client cannot authenticate, so it may not introspect (RFC 7662 2.1)."""
    creds = parse_client_credentials(form, authorization)
    if not creds.client_id and snap.config.oauth2.introspection.allow_unauthenticated:
        return None
    client = await authenticate_client(deps, snap, creds)
    if client.public and not snap.config.oauth2.introspection.allow_unauthenticated:
        raise ChallengeError("invalid_client", "Public clients cannot introspect tokens.", 401)
    return client


async def live_refresh_token(deps: Deps, snap: Snapshot, raw: str) -> RefreshToken | None:
    """The stored refresh token `raw` is the current secret of, if it is still usable."""
    try:
        token_id, secret = decode_refresh_token(raw)
    except ValueError:
        return None
    # The token and its grant's revocation, read in one trip.
    read = await deps.storage.run(read_steps(deps.storage, token_id, with_session=False))
    if read is None:
        return None
    token = read.token.value
    if not secret_matches(token.token, secret):
        return None
    now = deps.clock.now()
    policy = snap.config.expiry.refresh_tokens
    if policy.absolute_lifetime and now > token.created_at + policy.absolute_lifetime:
        return None
    if policy.valid_if_not_used_for and now > token.last_used + policy.valid_if_not_used_for:
        return None
    if read.grant_revoked:
        return None
    return token


async def live_access_token(deps: Deps, snap: Snapshot, raw: str) -> dict[str, Any] | None:
    """The claims of an access token we issued that is unexpired and not revoked."""
    try:
        claims = deps.keys.verify(raw, now=deps.clock.now())
    except (InvalidToken, KeysNotLoaded):
        return None
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not hmac.compare_digest(issuer.encode(), snap.issuer.url.encode()):
        return None
    if await claims_revoked(deps, claims):
        return None
    return claims


def _refresh_answer(snap: Snapshot, token: RefreshToken) -> dict[str, object]:
    body: dict[str, object] = {
        "active": True,
        "client_id": token.client_id,
        "sub": encode_sub(token.claims.user_id, token.connector_id),
        "scope": " ".join(token.scopes),
        "iss": snap.issuer.url,
        "iat": int(token.created_at.timestamp()),
        "token_type": "Bearer",
        "token_use": "refresh_token",
    }
    if token.expiry != NEVER:
        body["exp"] = int(token.expiry.timestamp())
    if token.claims.preferred_username or token.claims.username:
        body["username"] = token.claims.preferred_username or token.claims.username
    return body


def _access_answer(claims: dict[str, Any]) -> dict[str, object]:
    aud = claims.get("aud")
    body: dict[str, object] = {
        "active": True,
        "client_id": claims.get("azp") or (aud if isinstance(aud, str) else (aud or [""])[-1]),
        "exp": claims.get("exp"),
        "iat": claims.get("iat"),
        "iss": claims.get("iss"),
        "sub": claims.get("sub"),
        "aud": aud,
        "token_type": "Bearer",
        "token_use": "access_token",
    }
    if claims.get("jti"):
        body["jti"] = claims["jti"]
    username = claims.get("preferred_username") or claims.get("name")
    if username:
        body["username"] = username
    ext = {key: claims[key] for key in _EXTRA if key in claims}
    if ext:
        body["ext"] = ext
    return body


async def introspect(
    deps: Deps, snap: Snapshot, form: Mapping[str, str], authorization: str = ""
) -> dict[str, object]:
    """POST /token/introspect. Anything not active (unknown, expired, revoked, malformed) is just
    {"active": false}: the answer never says why (RFC 7662 2.2)."""
    await caller(deps, snap, form, authorization)
    raw = form.get("token", "")
    if not raw:
        return dict(INACTIVE)
    # A JWT has dots, a refresh token never: the hint (RFC 7662 2.1) is not needed to tell them apart.
    if "." in raw:
        claims = await live_access_token(deps, snap, raw)
        return _access_answer(claims) if claims is not None else dict(INACTIVE)
    token = await live_refresh_token(deps, snap, raw)
    return _refresh_answer(snap, token) if token is not None else dict(INACTIVE)
