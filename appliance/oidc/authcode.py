"""The authorization_code grant (RFC 6749 4.1.3, with the PKCE check of RFC 7636 4.6)."""

from __future__ import annotations

import logging
from dataclasses import replace

from appliance.errors import NotFound, OAuthError
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.discovery import GRANT_AUTHORIZATION_CODE
from appliance.oidc.grant import TokenContext, may_issue_refresh
from appliance.oidc.issue import mint, token_response
from appliance.oidc.pkce import verify_pkce
from appliance.oidc.refreshstore import create_steps, new_refresh_token, revoke_refresh_token
from appliance.oidc.revocation import revoke_grant
from appliance.store.base import Steps, Versioned
from appliance.store.models import AuthCode, Client, RefreshToken

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
    return (await read_code(deps, snap, code_id, client)).value


async def read_code(deps: Deps, snap: Snapshot, code_id: str, client: Client) -> Versioned[AuthCode]:
    """load_code, with the version that redeem_code's compare-and-swap then expects."""
    found = await deps.storage.run(deps.storage.auth_codes.steps.find(code_id))
    if found is None:
        raise OAuthError("invalid_grant", _INVALID)
    code = found.value
    if deps.clock.now() >= code.expiry or code.client_id != client.id:
        raise OAuthError("invalid_grant", _INVALID)
    if code.redeemed:
        await _on_replay(deps, snap, code)
        raise OAuthError("invalid_grant", _INVALID)
    return found


async def redeem_code(deps: Deps, snap: Snapshot, client: Client, code: AuthCode, *,
                      known: Versioned[AuthCode] | None = None) -> dict[str, object]:
    """Spend `code` and issue its tokens (the code grant, and the device flow's callback). `known`: the
    code as read_code found it, so that spending it reads nothing more."""
    conn = snap.connectors.get(code.connector_id)
    refresh: tuple[RefreshToken, str] | None = None
    if conn is not None and may_issue_refresh(snap, conn.instance, code.scopes):
        refresh = new_refresh_token(
            deps, client_id=client.id, connector_id=code.connector_id, claims=code.claims,
            scopes=code.scopes, nonce=code.nonce, grant_id=code.id, auth_time=code.auth_time,
            session_id=code.session_id, snap=snap,
        )
    refresh_id = refresh[0].id if refresh is not None else ""
    seen = [code]

    def spend(old: AuthCode) -> AuthCode:
        seen[0] = old
        if old.redeemed:
            raise _Replayed
        return replace(old, redeemed=True, refresh_token_id=refresh_id or old.refresh_token_id)

    def steps() -> Steps[None]:
        # The compare-and-swap is the single-use gate: of two concurrent redemptions only one marks the
        # code. The refresh token is stored in the same transaction, and its id on the code, so that a
        # replay finds it. The code stays stored, marked, until it expires, so that a replay is recognised.
        yield from deps.storage.auth_codes.steps.update(code.id, spend, known=known)
        if refresh is not None:
            yield from create_steps(deps.storage, refresh[0], code.connector_data)

    try:
        await deps.storage.run(steps(), write=True)
    except NotFound:
        raise OAuthError("invalid_grant", _INVALID) from None
    except _Replayed:
        await _on_replay(deps, snap, seen[0])  # as stored by the redemption that won
        raise OAuthError("invalid_grant", _INVALID) from None
    if conn is None:
        log.error("an auth code names connector %r, which is no longer configured", code.connector_id)
        raise OAuthError("invalid_grant", _INVALID)
    try:
        minted = await mint(
            deps, snap, client_id=client.id, claims=code.claims, connector_id=code.connector_id,
            scopes=code.scopes, nonce=code.nonce, code=code.id, grant_id=code.id, auth_time=code.auth_time,
            sid=code.session_id,
        )
    except Exception:
        # Spent all the same (replay safety first); the refresh token nobody received goes.
        if refresh is not None:
            await revoke_refresh_token(deps, refresh[0])
        raise
    return token_response(minted, refresh[1] if refresh else None)


class AuthorizationCodeGrant:
    """RFC 6749 4.1.3 with RFC 7636 4.6."""

    grant_type = GRANT_AUTHORIZATION_CODE

    async def exchange(self, ctx: TokenContext) -> dict[str, object]:
        code_id = ctx.get("code")
        if not code_id:
            raise OAuthError("invalid_request", "Required param: code.")
        found = await read_code(ctx.deps, ctx.snap, code_id, ctx.client)
        code = found.value
        verify_pkce(ctx.get("code_verifier"), code.pkce)
        if code.redirect_uri != ctx.get("redirect_uri"):
            raise OAuthError("invalid_grant", "redirect_uri did not match URI from initial request.")
        return await redeem_code(ctx.deps, ctx.snap, ctx.client, code, known=found)
