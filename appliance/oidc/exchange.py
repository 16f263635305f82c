"""The token exchange grant (RFC 8693) with Dex's parameters: an upstream token in, a Portico token out."""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from appliance.connectors.base import Identity
from appliance.errors import ConnectorError, OAuthError
from appliance.ids import new_id
from appliance.oidc import scopes as sc
from appliance.oidc.authorize import connector_allowed, peer_trusts
from appliance.oidc.discovery import GRANT_TOKEN_EXCHANGE
from appliance.oidc.grant import TokenContext
from appliance.oidc.issue import mint
from appliance.oidc.login import claims_of, upstream

log = logging.getLogger("portico.oidc.exchange")

TOKEN_TYPE_ID = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 (a URN, not a secret)
TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
_SUBJECT_TYPES = (TOKEN_TYPE_ID, TOKEN_TYPE_ACCESS)


@runtime_checkable
class TokenIdentityConnector(Protocol):
    """A connector that can verify a token its upstream issued (Dex's TokenIdentityConnector)."""

    async def token_identity(self, subject_token_type: str, subject_token: str) -> Identity:
        """The identity the token vouches for; ConnectorError when it does not verify."""
        ...


class TokenExchangeGrant:
    """Dex's handleTokenExchange: `connector_id` is required and names the verifying connector."""

    grant_type = GRANT_TOKEN_EXCHANGE

    async def exchange(self, ctx: TokenContext) -> dict[str, object]:
        requested = ctx.get("requested_token_type") or TOKEN_TYPE_ACCESS
        subject_type, subject_token = ctx.get("subject_token_type"), ctx.get("subject_token")
        if subject_type not in _SUBJECT_TYPES:
            raise OAuthError("request_not_supported", "Invalid subject_token_type.")
        if not subject_token:
            raise OAuthError("request_not_supported", "Missing subject_token")
        if requested not in _SUBJECT_TYPES:
            raise OAuthError("request_not_supported", "Invalid requested_token_type.")
        connector_id = ctx.get("connector_id")
        conn = ctx.snap.connectors.get(connector_id)
        if conn is None or not isinstance(conn.instance, TokenIdentityConnector):
            raise OAuthError("invalid_request", "Requested connector does not exist.")
        if not connector_allowed(ctx.client, connector_id):
            raise OAuthError("invalid_request", "Connector not allowed for this client.")
        scopes = sc.split_scopes(ctx.get("scope"))
        for scope in scopes:
            peer = sc.cross_client_peer(scope)
            if scope in sc.STANDARD_SCOPES and scope != sc.OFFLINE_ACCESS:
                continue
            if peer is None or not await peer_trusts(ctx.deps, ctx.snap, ctx.client.id, peer):
                raise OAuthError("invalid_scope", f"Scope {scope!r} is not allowed for token exchange.")
        try:
            identity = await upstream(conn.instance.token_identity(subject_type, subject_token))
        except (ConnectorError, ValueError) as exc:
            log.info("token exchange through %s refused: %s", connector_id, exc)
            raise OAuthError("access_denied", "", 401) from None
        # An ID token is only minted for openid; asking for one implies it.
        if requested == TOKEN_TYPE_ID and sc.OPENID not in scopes:
            scopes = (sc.OPENID, *scopes)
        minted = await mint(
            ctx.deps, ctx.snap, client_id=ctx.client.id, claims=claims_of(identity),
            connector_id=connector_id, scopes=scopes, nonce="", grant_id=new_id(),
        )
        token = minted.id_token if requested == TOKEN_TYPE_ID else minted.access_token
        assert token is not None
        return {
            "access_token": token,
            "issued_token_type": requested,
            "token_type": "bearer",
            "expires_in": minted.expires_in,
        }
