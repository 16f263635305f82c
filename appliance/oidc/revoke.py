"""Token revocation (RFC 7009) at /token/revoke: refresh tokens (with their family) and access tokens."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from appliance.oidc.clientauth import authenticate_client, parse_client_credentials
from appliance.oidc.deps import Deps, Snapshot
from appliance.oidc.introspect import live_access_token, live_refresh_token
from appliance.oidc.refreshstore import revoke_refresh_token
from appliance.oidc.revocation import revoke_grant, revoke_id
from appliance.oidc.sessions import audiences

log = logging.getLogger("portico.oidc.revoke")


async def revoke(deps: Deps, snap: Snapshot, form: Mapping[str, str], authorization: str = "") -> None:
    """POST /token/revoke. The client authenticates (a public one by its id); it may revoke only its
    own tokens. An unknown, invalid or foreign token changes nothing and is not an error (RFC 7009 2.2):
    the answer must not tell a prober which tokens exist."""
    client = await authenticate_client(deps, snap, parse_client_credentials(form, authorization))
    raw = form.get("token", "")
    if not raw:
        return
    if "." not in raw:
        token = await live_refresh_token(deps, snap, raw)
        if token is None or token.client_id != client.id:
            return
        # The refresh token, every rotation of it (one stored row) and the access tokens of its grant;
        # the offline session ends with its last token.
        await revoke_refresh_token(deps, token)
        await revoke_grant(deps, snap, token.grant_id or token.id)
        log.info("client %s revoked a refresh token of user %s", client.id, token.claims.user_id)
        return
    claims = await live_access_token(deps, snap, raw)
    if claims is None or client.id not in [*audiences(claims), str(claims.get("azp", ""))]:
        return
    exp = claims.get("exp")
    until = datetime.fromtimestamp(float(exp), UTC) if isinstance(exp, int | float) else deps.clock.now()
    await revoke_id(deps, str(claims.get("jti", "")), until)
