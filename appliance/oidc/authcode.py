"""The authorization_code grant (RFC 6749 4.1.3, with the PKCE check of RFC 7636 4.6)."""

from __future__ import annotations

import logging
from collections.abc import Callable
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

    def __init__(self, code: AuthCode) -> None:
        super().__init__("authorization code redeemed twice")
        self.code = code


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
    found = await deps.storage.run(deps.storage.auth_codes.steps.find(code_id))
    try:
        return _usable(deps, found, client).value
    except _Replayed as replayed:
        await _on_replay(deps, snap, replayed.code)
        raise OAuthError("invalid_grant", _INVALID) from None


def _usable(deps: Deps, found: Versioned[AuthCode] | None, client: Client) -> Versioned[AuthCode]:
    """`found` if it is an unexpired, unredeemed code of `client`; _Replayed for a redeemed one."""
    if found is None:
        raise OAuthError("invalid_grant", _INVALID)
    code = found.value
    if deps.clock.now() >= code.expiry or code.client_id != client.id:
        raise OAuthError("invalid_grant", _INVALID)
    if code.redeemed:
        raise _Replayed(code)
    return found


async def redeem_code(deps: Deps, snap: Snapshot, client: Client, code: AuthCode) -> dict[str, object]:
    """Spend `code`, read before by load_code, and issue its tokens (the device flow's callback)."""
    return await _redeem(deps, snap, client, code.id, None)


async def _redeem(deps: Deps, snap: Snapshot, client: Client, code_id: str,
                  check: Callable[[AuthCode], None] | None) -> dict[str, object]:
    """Read, check and spend the code `code_id` in one transaction (one trip), then sign its tokens.
    `check` raises the OAuthError of a code that does not fit the request (PKCE, redirect URI): nothing
    is written then."""

    def steps() -> Steps[tuple[AuthCode, tuple[RefreshToken, str] | None]]:
        # The code read under the write lock (PostgreSQL: its row) is the single-use gate: of two
        # concurrent redemptions the second finds it spent. The refresh token is stored in the same
        # transaction, and its id on the code, so that a replay finds it. The code stays stored, marked,
        # until it expires, so that a replay is recognised.
        found = _usable(deps, (yield from deps.storage.auth_codes.steps.find(code_id, lock=True)), client)
        code = found.value
        if check is not None:
            check(code)
        refresh = _new_refresh(deps, snap, client, code)
        spent = replace(code, redeemed=True,
                        refresh_token_id=refresh[0].id if refresh is not None else code.refresh_token_id)
        yield from deps.storage.auth_codes.steps.update(code.id, _spend(spent), known=found)
        if refresh is not None:
            yield from create_steps(deps.storage, refresh[0], code.connector_data)
        return code, refresh

    try:
        code, refresh = await deps.storage.run(steps(), write=True)
    except NotFound:
        raise OAuthError("invalid_grant", _INVALID) from None
    except _Replayed as replayed:
        await _on_replay(deps, snap, replayed.code)  # as stored by the redemption that won
        raise OAuthError("invalid_grant", _INVALID) from None
    conn = snap.connectors.get(code.connector_id)
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


def _new_refresh(deps: Deps, snap: Snapshot, client: Client,
                 code: AuthCode) -> tuple[RefreshToken, str] | None:
    conn = snap.connectors.get(code.connector_id)
    if conn is None or not may_issue_refresh(snap, conn.instance, code.scopes):
        return None
    return new_refresh_token(
        deps, client_id=client.id, connector_id=code.connector_id, claims=code.claims, scopes=code.scopes,
        nonce=code.nonce, grant_id=code.id, auth_time=code.auth_time, session_id=code.session_id, snap=snap,
    )


def _spend(spent: AuthCode) -> Callable[[AuthCode], AuthCode]:
    def spend(old: AuthCode) -> AuthCode:
        # Only reached again when the version read has changed since (another writer): then it must
        # still be unspent.
        if old.redeemed:
            raise _Replayed(old)
        return spent

    return spend


class AuthorizationCodeGrant:
    """RFC 6749 4.1.3 with RFC 7636 4.6."""

    grant_type = GRANT_AUTHORIZATION_CODE

    async def exchange(self, ctx: TokenContext) -> dict[str, object]:
        code_id = ctx.get("code")
        if not code_id:
            raise OAuthError("invalid_request", "Required param: code.")
        verifier, redirect_uri = ctx.get("code_verifier"), ctx.get("redirect_uri")

        def check(code: AuthCode) -> None:
            verify_pkce(verifier, code.pkce)
            if code.redirect_uri != redirect_uri:
                raise OAuthError("invalid_grant", "redirect_uri did not match URI from initial request.")

        return await _redeem(ctx.deps, ctx.snap, ctx.client, code_id, check)
