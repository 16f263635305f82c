"""The client_credentials grant (RFC 6749 4.4): a confidential client acting for itself, as Dex's main."""

from __future__ import annotations

from appliance.errors import OAuthError
from appliance.ids import new_id
from appliance.oidc import scopes as sc
from appliance.oidc.authorize import peer_trusts
from appliance.oidc.discovery import GRANT_CLIENT_CREDENTIALS
from appliance.oidc.grant import TokenContext
from appliance.oidc.issue import mint, token_response
from appliance.store.models import Claims

# What a client acting for itself may ask for: no offline_access (there is nobody to refresh).
_ALLOWED = frozenset({sc.OPENID, sc.EMAIL, sc.PROFILE, sc.GROUPS})


class ClientCredentialsGrant:
    grant_type = GRANT_CLIENT_CREDENTIALS

    async def exchange(self, ctx: TokenContext) -> dict[str, object]:
        client = ctx.client
        if client.public or not client.secret:
            # A public client proves nothing about itself (RFC 6749 4.4: confidential clients only).
            raise OAuthError("unauthorized_client", "Public clients cannot use the client_credentials grant.")
        scopes = sc.split_scopes(ctx.get("scope"))
        bad: list[str] = []
        for scope in scopes:
            peer = sc.cross_client_peer(scope)
            if scope in _ALLOWED:
                continue
            if peer is None or not await peer_trusts(ctx.deps, ctx.snap, client.id, peer):
                bad.append(scope)
        if bad:
            raise OAuthError("invalid_scope", f"Scope(s) not allowed for client_credentials: {' '.join(bad)}")
        # sub encodes (client id, ""): no connector vouched for this identity.
        claims = Claims(
            user_id=client.id, username=client.name, preferred_username=client.name,
            groups=tuple(client.client_credentials_groups),
        )
        minted = await mint(
            ctx.deps, ctx.snap, client_id=client.id, claims=claims, connector_id="", scopes=scopes, nonce="",
            grant_id=new_id(),
        )
        return token_response(minted, None)
