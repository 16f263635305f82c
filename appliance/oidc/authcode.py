"""The authorization_code grant (RFC 6749 4.1.3, with the PKCE check of RFC 7636 4.6)."""

from __future__ import annotations

import logging
from dataclasses import replace

from appliance.errors import NotFound, OAuthError
from appliance.ids import new_id
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.discovery import GRANT_AUTHORIZATION_CODE
from appliance.oidc.grant import TokenContext, may_issue_refresh
from appliance.oidc.issue import mint, token_response
from appliance.oidc.pkce import verify_pkce
from appliance.oidc.refreshstore import create_refresh_token, revoke_refresh_token
from appliance.oidc.revocation import revoke_grant
from appliance.store.models import AuthCode, Client

log = logging.getLogger("portico.oidc.token")

_INVALID = "Invalid or expired code parameter."


class _Replayed(Exception):
    """The code was redeemed before."""


async def _on_replay(deps: Deps, snap: Snapshot, code: AuthCode) -> None:
    """RFC 6749 4.1.2: a code used twice revokes what it issued (the refresh token and, through the
    grant id in their jti, the access tokens)."""
    log.warning("authorization code for client %s redeemed twice; revoking its tokens", code.client_id)
    await revoke_grant(deps, snap, code.id)
    if code.refresh_token_id:
        try:
            token = await deps.storage.refresh_tokens.get(code.refresh_token_id)
        except NotFound:
            return
        await revoke_refresh_token(deps, token)


async def load_code(deps: Deps, snap: Snapshot, code_id: str, client: Client) -> AuthCode:
    """An unexpired code of `client`; a redeemed one is a replay (its tokens are revoked)."""
    try:
        code = await deps.storage.auth_codes.get(code_id)
    except NotFound:
        raise OAuthError("invalid_grant", _INVALID) from None
    if deps.clock.now() >= code.expiry or code.client_id != client.id:
        raise OAuthError("invalid_grant", _INVALID)
    if code.redeemed:
        await _on_replay(deps, snap, code)
        raise OAuthError("invalid_grant", _INVALID)
    return code


async def redeem_code(deps: Deps, snap: Snapshot, client: Client, code: AuthCode) -> dict[str, object]:
    """Spend `code` and issue its tokens (the code grant, and the device flow's callback)."""
    conn = snap.connectors.get(code.connector_id)
    # The refresh token's id is chosen now and written with the spending, in the same compare-and-swap:
    # a replay finds it there (a token that was never made after all is simply not found then).
    refresh_id = new_id() if conn is not None and may_issue_refresh(snap, conn.instance, code.scopes) else ""

    def spend(old: AuthCode) -> AuthCode:
        if old.redeemed:
            raise _Replayed
        return replace(old, redeemed=True, refresh_token_id=refresh_id or old.refresh_token_id)

    # The compare-and-swap is the single-use gate: of two concurrent redemptions only one marks the
    # code. It happens before minting, so a failure afterwards leaves the code spent (replay safety
    # first). The code stays stored, marked, until it expires, so that a replay can be recognised.
    try:
        await deps.storage.auth_codes.update(code.id, spend)
    except NotFound:
        raise OAuthError("invalid_grant", _INVALID) from None
    except _Replayed:
        await _on_replay(deps, snap, code)
        raise OAuthError("invalid_grant", _INVALID) from None
    if conn is None:
        log.error("an auth code names connector %r, which is no longer configured", code.connector_id)
        raise OAuthError("invalid_grant", _INVALID)
    minted = await mint(
        deps, snap, client_id=client.id, claims=code.claims, connector_id=code.connector_id,
        scopes=code.scopes, nonce=code.nonce, code=code.id, grant_id=code.id, auth_time=code.auth_time,
        sid=code.session_id,
    )
    refresh = None
    if refresh_id:
        refresh = await create_refresh_token(
            deps, client_id=client.id, connector_id=code.connector_id, claims=code.claims,
            scopes=code.scopes, nonce=code.nonce, connector_data=code.connector_data, grant_id=code.id,
            auth_time=code.auth_time, session_id=code.session_id, snap=snap, token_id=refresh_id,
        )
    return token_response(minted, refresh)


class AuthorizationCodeGrant:
    """RFC 6749 4.1.3 with RFC 7636 4.6."""

    grant_type = GRANT_AUTHORIZATION_CODE

    async def exchange(self, ctx: TokenContext) -> dict[str, object]:
        code_id = ctx.get("code")
        if not code_id:
            raise OAuthError("invalid_request", "Required param: code.")
        code = await load_code(ctx.deps, ctx.snap, code_id, ctx.client)
        verify_pkce(ctx.get("code_verifier"), code.pkce)
        if code.redirect_uri != ctx.get("redirect_uri"):
            raise OAuthError("invalid_grant", "redirect_uri did not match URI from initial request.")
        return await redeem_code(ctx.deps, ctx.snap, ctx.client, code)
