"""The authorization_code grant (RFC 6749 4.1.3, with the PKCE check of RFC 7636 4.6)."""

from __future__ import annotations

import logging

from appliance.errors import NotFound, OAuthError
from appliance.oidc.discovery import GRANT_AUTHORIZATION_CODE
from appliance.oidc.grant import TokenContext, may_issue_refresh
from appliance.oidc.issue import mint, token_response
from appliance.oidc.pkce import verify_pkce
from appliance.oidc.refreshstore import create_refresh_token

log = logging.getLogger("portico.oidc.token")


class AuthorizationCodeGrant:
    """RFC 6749 4.1.3 with RFC 7636 4.6."""

    grant_type = GRANT_AUTHORIZATION_CODE

    async def exchange(self, ctx: TokenContext) -> dict[str, object]:
        code_id = ctx.get("code")
        if not code_id:
            raise OAuthError("invalid_request", "Required param: code.")
        storage = ctx.deps.storage
        try:
            code = await storage.auth_codes.get(code_id)
        except NotFound:
            code = None
        if code is None or ctx.deps.clock.now() >= code.expiry or code.client_id != ctx.client.id:
            raise OAuthError("invalid_grant", "Invalid or expired code parameter.")
        verify_pkce(ctx.get("code_verifier"), code.pkce)
        if code.redirect_uri != ctx.get("redirect_uri"):
            raise OAuthError("invalid_grant", "redirect_uri did not match URI from initial request.")
        # The delete is the single-use gate: of two concurrent redemptions only one deletes the code.
        # It happens before minting, so a failure afterwards leaves the code spent (replay safety first).
        try:
            await storage.auth_codes.delete(code.id)
        except NotFound:
            raise OAuthError("invalid_grant", "Invalid or expired code parameter.") from None
        conn = ctx.snap.connectors.get(code.connector_id)
        if conn is None:
            log.error("an auth code names connector %r, which is no longer configured", code.connector_id)
            raise OAuthError("invalid_grant", "Invalid or expired code parameter.")
        minted = await mint(
            ctx.deps, ctx.snap, client_id=ctx.client.id, claims=code.claims, connector_id=code.connector_id,
            scopes=code.scopes, nonce=code.nonce, code=code.id,
        )
        refresh = None
        if may_issue_refresh(ctx.snap, conn.instance, code.scopes):
            refresh = await create_refresh_token(
                ctx.deps, client_id=ctx.client.id, connector_id=code.connector_id, claims=code.claims,
                scopes=code.scopes, nonce=code.nonce, connector_data=code.connector_data,
            )
        return token_response(minted, refresh)
