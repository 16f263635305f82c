"""The resource owner password credentials grant (RFC 6749 4.3) through oauth2.passwordConnector."""

from __future__ import annotations

import logging

from appliance.connectors.base import PasswordConnector
from appliance.errors import OAuthError
from appliance.ids import new_id
from appliance.mfa.flow import password_grant_allowed
from appliance.oidc import scopes as sc
from appliance.oidc.authorize import connector_allowed, validate_scopes
from appliance.oidc.discovery import GRANT_PASSWORD
from appliance.oidc.grant import TokenContext, may_issue_refresh
from appliance.oidc.issue import mint, token_response
from appliance.oidc.login import claims_of, remember_connector_data, upstream
from appliance.oidc.refreshstore import create_refresh_token

log = logging.getLogger("portico.oidc.password")


class PasswordGrant:
    """Dex's handlePasswordGrant: only the configured password connector, only with openid."""

    grant_type = GRANT_PASSWORD

    async def exchange(self, ctx: TokenContext) -> dict[str, object]:
        username, password = ctx.get("username"), ctx.get("password")
        if not username or not password:
            raise OAuthError("invalid_request", "Required params: username and password.")
        scopes = sc.split_scopes(ctx.get("scope"))
        await validate_scopes(ctx.deps, ctx.snap, ctx.client, scopes)
        connector_id = ctx.snap.config.oauth2.password_connector
        conn = ctx.snap.connectors.get(connector_id)
        if conn is None or not isinstance(conn.instance, PasswordConnector):
            log.error("oauth2.passwordConnector %r is not a configured password connector", connector_id)
            raise OAuthError("server_error", status=500)
        if not connector_allowed(ctx.client, connector_id):
            raise OAuthError("unauthorized_client", "The password connector is not allowed for this client.")
        instance = conn.instance
        identity = await ctx.deps.protection.check_password(  # a locked account answers as a wrong password
            ctx.snap.config.security.brute_force, connector_id, username, ctx.client_ip,
            lambda: upstream(instance.login(sc.connector_scopes(scopes), username, password)),
        )
        if identity is None:
            log.info("password grant: invalid credentials (client %s)", ctx.client.id)
            raise OAuthError("access_denied", "Invalid username or password.", 401)
        if not await password_grant_allowed(ctx.deps, ctx.snap, ctx.client, connector_id, identity.user_id):
            log.info("password grant: refused, user %s must pass a second factor (client %s)",
                     identity.user_id, ctx.client.id)
            raise OAuthError("invalid_grant", "This user must give a second factor, which the password grant "
                             "cannot carry: log in through the browser (authorization code flow) instead.")
        claims = claims_of(identity)
        now = ctx.deps.clock.now()
        grant_id = new_id()
        minted = await mint(
            ctx.deps, ctx.snap, client_id=ctx.client.id, claims=claims, connector_id=connector_id,
            scopes=scopes, nonce=ctx.get("nonce"), grant_id=grant_id, auth_time=now,
        )
        refresh = None
        if may_issue_refresh(ctx.snap, conn.instance, scopes):
            await remember_connector_data(ctx.deps, identity, connector_id)
            refresh = await create_refresh_token(
                ctx.deps, client_id=ctx.client.id, connector_id=connector_id, claims=claims, scopes=scopes,
                nonce=ctx.get("nonce"), connector_data=identity.connector_data, grant_id=grant_id,
                auth_time=now, snap=ctx.snap,
            )
        return token_response(minted, refresh)
