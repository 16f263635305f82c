"""Minting the access and ID tokens of one authorization: audience, trust re-check, signing."""

from __future__ import annotations

from datetime import datetime

from appliance.errors import OAuthError
from appliance.ids import new_id
from appliance.oidc import scopes as sc
from appliance.oidc.authorize import peer_trusts
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.tokens import MintedTokens, mint_tokens
from appliance.store.models import Claims


async def mint(
    deps: Deps,
    snap: Snapshot,
    *,
    client_id: str,
    claims: Claims,
    connector_id: str,
    scopes: tuple[str, ...],
    nonce: str,
    code: str | None = None,
    grant_id: str = "",
    auth_time: datetime | None = None,
    sid: str = "",
) -> MintedTokens:
    """Sign the tokens for `client_id`. Cross-client audiences are checked again here, as Dex does:
    a peer may have stopped trusting the client since /auth. Every access token carries a jti under
    `grant_id` (a fresh one when the grant has none), which is what revocation keys on."""
    for scope in scopes:
        peer = sc.cross_client_peer(scope)
        if peer is not None and not await peer_trusts(deps, snap, client_id, peer):
            raise OAuthError("invalid_scope", f"Client can't request scope {scope!r}.")
    audience, _ = sc.audience(client_id, scopes)
    # Signing is CPU work of about a millisecond (RS256) with no I/O: it stays on the loop, where a
    # thread hop would cost about as much as it saves.
    return mint_tokens(
        deps.keys,
        issuer=snap.issuer.url,
        subject_claims=claims,
        connector_id=connector_id,
        scopes=scopes,
        audience=audience,
        azp=client_id,
        nonce=nonce,
        now=deps.clock.now(),
        lifetime=snap.config.expiry.id_tokens,
        want_id_token=sc.OPENID in scopes,
        code=code,
        grant_id=grant_id or new_id(),
        auth_time=auth_time,
        sid=sid,
    )


def token_response(minted: MintedTokens, refresh_token: str | None) -> dict[str, object]:
    """The token endpoint's JSON body (RFC 6749 5.1), in Dex's member order."""
    body: dict[str, object] = {
        "access_token": minted.access_token,
        "token_type": "bearer",
        "expires_in": minted.expires_in,
    }
    if refresh_token:
        body["refresh_token"] = refresh_token
    if minted.id_token:
        body["id_token"] = minted.id_token
    return body
