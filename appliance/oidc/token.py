"""The token endpoint (RFC 6749 3.2): the shared steps, then dispatch to the grant's hook."""

from __future__ import annotations

from collections.abc import Mapping

from appliance.errors import OAuthError
from appliance.oidc.authcode import AuthorizationCodeGrant
from appliance.oidc.clientauth import authenticate_client, parse_client_credentials
from appliance.oidc.clientcreds import ClientCredentialsGrant
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.device import DeviceCodeGrant
from appliance.oidc.exchange import TokenExchangeGrant
from appliance.oidc.grant import Grant, TokenContext
from appliance.oidc.password import PasswordGrant
from appliance.oidc.refresh import RefreshTokenGrant


def default_grants() -> dict[str, Grant]:
    grants: list[Grant] = [
        AuthorizationCodeGrant(), RefreshTokenGrant(), DeviceCodeGrant(), TokenExchangeGrant(),
        ClientCredentialsGrant(), PasswordGrant(),
    ]
    return {grant.grant_type: grant for grant in grants}


class TokenEndpoint:
    """Dispatches by grant_type after the shared steps: grant enabled, client authenticated."""

    def __init__(self, grants: Mapping[str, Grant] | None = None) -> None:
        self._grants = dict(grants) if grants is not None else default_grants()

    def with_grant(self, grant: Grant) -> TokenEndpoint:
        """A copy that also serves `grant` (the device and token-exchange grants of later issues)."""
        return TokenEndpoint({**self._grants, grant.grant_type: grant})

    async def handle(
        self, deps: Deps, snap: Snapshot, form: Mapping[str, str], authorization: str = "",
        client_ip: str = "",
    ) -> dict[str, object]:
        """`client_ip`: the client's address as the front derived it (appliance.security.clientip)."""
        deps.protection.rate_limit(snap.config.security, "token", client_ip)
        grant_type = form.get("grant_type", "")
        grant = self._grants.get(grant_type)
        if grant is None or grant_type not in snap.grant_types:
            raise OAuthError("unsupported_grant_type", f"Unsupported grant type {grant_type!r}." if grant_type
                             else "Missing grant_type.")
        creds = parse_client_credentials(form, authorization)
        client = await authenticate_client(deps, snap, creds)
        deps.protection.rate_limit(snap.config.security, "token_client", client.id)
        return await grant.exchange(TokenContext(deps, snap, client, form, client_ip))
